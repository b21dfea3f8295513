"""Deals as the admin API shows them (`GET /integrations/{id}/deals`, contract.md)."""

from __future__ import annotations

from connector.deals import drafts
from connector.errors import ValidationFailed
from connector.models.deals import FUNNELS, DealRecord
from connector.models.raw import JsonObject
from connector.store import Store
from connector.uis import deal_rows


def deal_view(deal: DealRecord) -> JsonObject:
    """One deal: its stage path (what UIS has, then what is still to send), revenue and upload state."""
    steps = drafts.history(deal)
    revenue = deal_rows.money(deal.revenue)
    return {
        "ext_id": deal.ext_id,
        "funnel": deal.funnel,
        "stage": steps[-1].stage if steps else None,
        "revenue": revenue,
        "contact_ext_id": deal.contact_ext_id,
        "communication_id": deal.communication_id,
        "history": [{"stage": s.stage, "at": s.at} for s in steps],
        "upload": {"state": deal.upload_state, "error": deal.upload_error},
    }


def deals_view(store: Store, integration_id: str, funnel: str | None = None) -> list[JsonObject]:
    """Every deal of the integration (optionally of one funnel), first-sale deals first, then by ext_id."""
    if funnel is not None and funnel not in FUNNELS:
        raise ValidationFailed(f"funnel: unknown funnel '{funnel}'; known: {', '.join(FUNNELS)}", field="funnel")
    deals = store.deals.list_deals(integration_id, funnel)
    order = {name: i for i, name in enumerate(FUNNELS)}
    deals.sort(key=lambda d: (order.get(d.funnel, 99), _natural(d.ext_id)))
    return [deal_view(d) for d in deals]


def _natural(ext_id: str) -> tuple[str, int]:
    prefix, _, number = ext_id.rpartition("-")
    return (prefix, int(number)) if number.isdigit() else (ext_id, 0)
