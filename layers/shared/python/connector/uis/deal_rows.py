"""What UIS receives of a deal (`upload.deals_history` rows) and of its customer (`create|update.deal_contacts`).

The format is UIS's (shared/reference/uis-api.md): zone-less account-local date-times, never in the future;
money as a number; the closing stages carry `closed_date_time`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime

from connector.alfacrm.models import to_decimal
from connector.models.deals import CLOSING, CustomerSnapshot, DealRecord, Step, contact_ext_id
from connector.models.raw import JsonObject, JsonValue
from connector.phones import normalise_all
from connector.timeutil import format_local, from_iso


def money(value: str | None) -> float | int | None:
    """A decimal string as the number UIS and the admin API show (4500, 4500.5)."""
    number = to_decimal(value)
    if number is None:
        return None
    return int(number) if number == number.to_integral_value() else float(number)


def _local(at: str, tz: str, now: datetime | None) -> str:
    moment = from_iso(at)
    if now is not None and moment > now:
        moment = now  # UIS refuses times in the future (a wrong zone setting, or clock skew)
    return format_local(moment, tz)


def upload_rows(
    deal: DealRecord,
    steps: list[Step],
    *,
    tz: str,
    now: datetime | None = None,
    with_contact: bool = True,
    with_employee: bool = True,
) -> list[JsonObject]:
    """`upload.deals_history` rows for these steps of the deal, in order (the employee only once UIS has it:
    `with_employee`)."""
    base: JsonObject = {
        "ext_id": deal.ext_id,
        "name": deal.name,
        "created_date_time": _local(deal.created_at, tz, now),
        "sales_funnel_ext_id": deal.funnel,
    }
    if with_contact:
        base["contact_ext_ids"] = [deal.contact_ext_id]
        base["main_contact_ext_id"] = deal.contact_ext_id
    if with_employee and deal.employee_ext_id:
        base["employee_ext_id"] = deal.employee_ext_id
    if deal.source:
        base["source"] = deal.source
    revenue = money(deal.revenue)
    if revenue is not None:
        base["revenue"] = revenue
    if deal.communication_id is not None and deal.communication_type:
        base["communication_id"] = deal.communication_id
        base["communication_type"] = deal.communication_type
    if deal.user_fields:
        fields: list[JsonValue] = [{"ext_id": k, "value": v} for k, v in sorted(deal.user_fields.items())]
        base["user_fields"] = fields
    closing = CLOSING[deal.funnel]
    rows: list[JsonObject] = []
    for index, step in enumerate(steps):
        modified = max(step.at, deal.modified_at) if index == len(steps) - 1 else step.at
        row: JsonObject = {
            **base,
            "stage_ext_id": step.stage,
            "modified_stage_date_time": _local(step.at, tz, now),
            "modified_date_time": _local(modified, tz, now),
        }
        if step.stage in closing:
            row["closed_date_time"] = _local(step.at, tz, now)
        rows.append(row)
    return rows


def contact_payload(snap: CustomerSnapshot, *, region: str, tz: str, now: datetime | None = None) -> JsonObject:
    """The customer as a UIS deal contact: E.164 phones (unparsable ones are left out), e-mails."""
    phones: list[JsonValue] = list(normalise_all(snap.phones, region))
    emails: list[JsonValue] = [e.strip() for e in snap.emails if "@" in e]
    created = snap.created_at or snap.first_seen_at
    return {
        "ext_id": contact_ext_id(snap.customer_id),
        "name": snap.display_name,
        "phone_numbers": phones,
        "emails": emails,
        "created_date_time": _local(created, tz, now),
    }


def contact_hash(contact: Mapping[str, JsonValue]) -> str:
    raw = json.dumps({k: contact.get(k) for k in ("name", "phone_numbers", "emails")}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]
