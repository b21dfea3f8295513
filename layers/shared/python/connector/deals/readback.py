"""After an upload whose answer was lost: what UIS holds, read back before anything is sent again.

`upload.deals_history` is all or nothing and may have been applied when its answer was lost (a 5xx, a read
timeout): sending its rows again would be refused as older than the deal's last stage and park the deal. The
flush marked those deals `in_doubt` with the last row each carried; the next flush reads them back with one
`get.deals_history` per ≤100 deals (ca_deal/get_deals_history) and, per deal, records the upload as done when
UIS holds that row (a stage row UIS did not generate, at the time sent), or forgets it otherwise — then only
what UIS lacks is sent.
"""

from __future__ import annotations

from connector.deals import marks
from connector.models.deals import DealRecord
from connector.models.raw import JsonValue
from connector.runtime import Runtime
from connector.settings import Integration
from connector.uis.client import UisClient


def settle_doubts(rt: Runtime, integration: Integration, deals: list[DealRecord], uis: UisClient) -> list[DealRecord]:
    """These pending deals, those in doubt settled against what UIS holds (→ as stored now, still pending)."""
    doubtful = [d for d in deals if d.in_doubt is not None]
    if not doubtful:
        return deals
    held: dict[str, set[tuple[str, str]]] = {}
    for row in uis.deals_history_of([d.ext_id for d in doubtful]):
        if not row.get("is_generated"):
            held.setdefault(str(row.get("ext_id")), set()).add(
                _stage_row(row.get("stage_ext_id"), row.get("modified_stage_date_time"))
            )
    for deal in doubtful:
        sent = deal.in_doubt
        if sent is not None and _stage_row(sent.stage, sent.stage_time) in held.get(deal.ext_id, set()):
            marks.mark_uploaded(rt, integration, deal, sent)
        else:
            marks.mark_not_held(rt, integration, deal)
    fresh = rt.store.deals.get_deals(integration.id, [d.key for d in doubtful])
    settled = [d for d in fresh.values() if d.upload_state == "pending"]
    return [d for d in deals if d.in_doubt is None] + settled


def _stage_row(stage: JsonValue, at: JsonValue) -> tuple[str, str]:
    # get.deals_history types the time `iso8601`; the rows were sent as `YYYY-MM-DD hh:mm:ss`: compare both so
    return str(stage), str(at or "").replace("T", " ")[:19]
