"""Builders for the deals tests: AlfaCRM webhooks shaped like the real ones, queue messages, snapshots.

Real AlfaCRM webhooks (shared/reference/samples/alfacrm): `fields_new` values are form strings, `fields_old`
database values, empty maps arrive as `[]`, an update carries only the changed fields, and old captures
have no top-level `branch_id` (only `fields_new.branch_id`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connector.alfacrm.models import Customer, Pay, WebhookEvent
from connector.deals import snapshots
from connector.models.deals import CustomerSnapshot
from connector.models.messages import DealEventMessage
from connector.settings import DealsSettings
from connector.timeutil import local_to_utc, to_iso

TZ = "Europe/Moscow"
INTEGRATION_ID = "0a1b2c3d"


def form(value: Any) -> Any:
    """A value as AlfaCRM's form submission writes it into `fields_new`."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return [form(v) for v in value]
    return "" if value is None else str(value)


def webhook(
    entity: str,
    entity_id: int,
    event: str = "update",
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    at: str = "2025-03-03 10:00:00",
    branch_id: int | None = 1,
    user_id: int = 2,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": event,
        "entity": entity,
        "entity_id": entity_id,
        "fields_old": dict(old or {}) or [],
        "fields_new": {k: form(v) for k, v in (new or {}).items()} or [],
        "fields_rel": [],
        "user_id": user_id,
        "datetime": at,
    }
    if branch_id is not None:
        body = {"branch_id": branch_id, **body}
    return body


def message(
    body: dict[str, Any], integration_id: str = INTEGRATION_ID, received_at: str | None = None
) -> DealEventMessage:
    return DealEventMessage(
        integration_id=integration_id, received_at=received_at or "2025-03-03T07:00:05Z", event=body
    )


def customer(customer_id: int = 7, **fields: Any) -> Customer:
    record = {
        "id": customer_id,
        "name": "Петров Илья",
        "is_study": 0,
        "lead_status_id": 1,
        "removed": 0,
        "branch_ids": [1],
        "teacher_ids": [],
        "phone": ["8 (916) 123-45-67"],
        "email": ["ilya@example.ru"],
        "created_at": "2025-03-03 10:00:00",
    }
    record.update(fields)
    return Customer.model_validate(record)


def pay(pay_id: int, customer_id: int = 7, **fields: Any) -> Pay:
    record = {
        "id": pay_id,
        "customer_id": str(customer_id),
        "income": "4500.00",
        "document_date": "03.03.2025",
        "branch_id": 1,
        "is_confirmed": 1,
        "pay_type_id": "1",
    }
    record.update(fields)
    return Pay.model_validate(record)


def settings(success: list[int] | None = None, failure: list[int] | None = None, upsell: bool = True) -> DealsSettings:
    return DealsSettings.model_validate(
        {
            "enabled": True,
            "first_sale": {"success_status_ids": success or [4], "failure_status_ids": failure or [5, 6]},
            "upsell": {"enabled": upsell},
        }
    )


def utc(local: str) -> str:
    """AlfaCRM's Moscow local time → the stored UTC ISO string (Moscow is UTC+3 all year)."""
    moment = datetime.strptime(local, "%Y-%m-%d %H:%M:%S")
    return to_iso(local_to_utc(moment, TZ))


class Timeline:
    """Folds webhooks (with the re-read each one triggers) into a snapshot, as the worker does, but pure."""

    def __init__(self, customer_id: int = 7) -> None:
        self.snap: CustomerSnapshot | None = None
        self.customer_id = customer_id

    def customer_event(self, body: dict[str, Any], reread: Customer | None, read_at: str) -> CustomerSnapshot:
        event = WebhookEvent.model_validate(body)
        at = snapshots.event_time(event, None, TZ)
        base = self.snap or snapshots.new_snapshot(self.customer_id, at)
        self.snap = snapshots.observe_customer(base, event, reread, at=at, read_at=utc(read_at), tz=TZ)
        return self.snap

    def pay_event(self, body: dict[str, Any], reread: Pay | None, read_at: str) -> CustomerSnapshot:
        event = WebhookEvent.model_validate(body)
        at = snapshots.event_time(event, None, TZ)
        base = self.snap or snapshots.new_snapshot(self.customer_id, at)
        self.snap = snapshots.observe_pay(base, event, reread, at=at, read_at=utc(read_at))
        return self.snap
