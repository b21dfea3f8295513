"""Customer snapshots (`CUST#<id>`): AlfaCRM events and re-reads folded into what one customer's deals are
derived from. Pure functions, no I/O (shared/design/architecture.md, "Deal rules").

`observe_customer` / `observe_pay` fold one event (and the entity re-read for it) into the snapshot.
Stage-relevant fields (`is_study`, `lead_status_id`, `removed`, `lead_reject_id`) are kept as *facts* with
AlfaCRM's own times, so the history does not depend on the order webhooks arrive in: facts are a set, the
same delivery twice adds nothing, and any delivery order yields the same set.

Decisions where AlfaCRM leaves room (documented, tested):
- a payment is a deal only when its income is positive: AlfaCRM records refunds and expenses as payments
  with a negative (or zero) amount, and the meaning of `pay_type_id` differs per account, so it is not used;
- an empty re-read is not a deletion (another branch, a read that raced AlfaCRM's save): only a delete
  event (a webhook, or the reconciler's log entry) ends a deal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

from connector.alfacrm.models import Customer, Pay, WebhookEvent, to_bool, to_date, to_decimal, to_int
from connector.models.deals import CustomerSnapshot, Fact, PayInfo, TrackedValue
from connector.models.raw import JsonValue
from connector.timeutil import from_iso, local_to_utc, to_iso

# tracked customer field → the names AlfaCRM may use for it in webhooks and records
TRACKED: dict[str, tuple[str, ...]] = {
    "is_study": ("is_study",),
    "lead_status_id": ("lead_status_id",),
    "removed": ("removed", "is_removed", "is_archived"),
    # a lead's refusal reason: how real accounts show an archived lead (KO_alfacrm_data's change log has
    # `lead_reject_id` in fields_new, no archive flag anywhere); cleared when the lead is restored
    "lead_reject_id": ("lead_reject_id",),
}
_CONFIRMED_KEYS = ("is_confirmed", "confirmed")

MAX_FACTS = 100  # per field; older facts are not needed once UIS has the rows they produced
MAX_SEEN = 100


def event_time(event: WebhookEvent, received_at: str | None, tz: str) -> str:
    """The AlfaCRM-reported time of the change (zone-less local) in UTC; the intake time if it is missing."""
    if event.datetime is not None:
        return to_iso(local_to_utc(event.datetime, tz))
    if received_at:
        return to_iso(from_iso(received_at))
    raise ValueError("the event has no datetime and no received_at")


def event_key(event: WebhookEvent) -> str:
    """Names one AlfaCRM change the same way whether it came as a webhook or from `log/index`."""
    stamp = event.datetime.isoformat() if event.datetime else ""
    raw = json.dumps([event.entity, event.entity_id, event.event, stamp, event.fields_new], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _coerce_tracked(name: str, value: JsonValue) -> TrackedValue:
    if name in ("lead_status_id", "lead_reject_id"):
        return to_int(value)
    return bool(to_bool(value))


def _pick(fields: Mapping[str, JsonValue], names: Iterable[str]) -> tuple[bool, JsonValue]:
    for name in names:
        if name in fields:
            return True, fields[name]
    return False, None


def _add_fact(facts: list[Fact], fact: Fact) -> list[Fact]:
    if any(f.at == fact.at and f.kind == fact.kind and f.value == fact.value for f in facts):
        return facts
    out = sorted([*facts, fact], key=lambda f: (f.at, f.kind, json.dumps(f.value)))
    return out[-MAX_FACTS:]


def _remember(seen: list[str], key: str) -> list[str]:
    return seen if key in seen else [*seen, key][-MAX_SEEN:]


def min_time(*values: str | None) -> str | None:
    present = [v for v in values if v]
    return min(present) if present else None


def new_snapshot(customer_id: int, at: str) -> CustomerSnapshot:
    return CustomerSnapshot(customer_id=customer_id, first_seen_at=at)


def observe_customer(
    snapshot: CustomerSnapshot,
    event: WebhookEvent,
    customer: Customer | None,
    *,
    at: str,
    read_at: str,
    tz: str,
) -> CustomerSnapshot:
    """Fold a Customer event and its re-read (None: a delete event, or not re-read) into the snapshot."""
    snap = snapshot.model_copy(deep=True)
    snap.seen = _remember(snap.seen, event_key(event))
    snap.first_seen_at = min(snap.first_seen_at, at)
    if event.event == "delete":
        _fold_delete(snap, event, at)
    else:
        _fold_tracked(snap, event, at)
    if customer is not None and (snap.read_at is None or read_at >= snap.read_at):
        _take_reread(snap, customer, read_at, tz)
    # no re-read (None) tells nothing: an empty read is not a deletion (another branch, a read that raced
    # AlfaCRM's save); only a delete event (a webhook, or the reconciler's log entry) ends the deal
    return snap


def _fold_delete(snap: CustomerSnapshot, event: WebhookEvent, at: str) -> None:
    """Deletion ends the deal like archiving; just before it the customer was as fields_old says."""
    found, raw = _pick(event.fields_old, TRACKED["removed"])
    try:
        before = bool(to_bool(raw)) if found else False
    except ValueError:
        before = False
    facts = _add_fact(snap.facts.get("removed", []), Fact(at=at, value=before, kind="old"))
    snap.facts["removed"] = _add_fact(facts, Fact(at=at, value=True, kind="new"))
    snap.deleted_at = min_time(snap.deleted_at, at)


def _fold_tracked(snap: CustomerSnapshot, event: WebhookEvent, at: str) -> None:
    """The tracked fields' values the event reported, as facts (new after it, old just before it)."""
    for name, aliases in TRACKED.items():
        for kind, source in (("new", event.fields_new), ("old", event.fields_old)):
            found, raw = _pick(source, aliases)
            if not found:
                continue
            try:
                value = _coerce_tracked(name, raw)
            except ValueError:
                continue  # a value we cannot read tells us nothing
            fact = Fact(at=at, value=value, kind="new" if kind == "new" else "old")
            snap.facts[name] = _add_fact(snap.facts.get(name, []), fact)


def _take_reread(snap: CustomerSnapshot, customer: Customer, read_at: str, tz: str) -> None:
    """The customer as a re-read newer than the snapshot's last one found it."""
    snap.current = {"is_study": bool(customer.is_study), "lead_status_id": customer.lead_status_id}
    if customer.lead_reject_id is not None:
        # DynamoDB drops None map values: a stored snapshot must read back equal (`current_keys` tells the None)
        snap.current["lead_reject_id"] = customer.lead_reject_id
    snap.current_keys = ["is_study", "lead_reject_id", "lead_status_id"]
    if customer.removed is not None:
        # the archive flag's name in a record is not documented: a record without one tells nothing
        snap.current["removed"] = bool(customer.removed)
        snap.current_keys = sorted(TRACKED)
    snap.read_at = read_at
    snap.name = customer.name
    snap.phones = list(customer.phone)
    snap.emails = list(customer.email)
    snap.teacher_ids = list(customer.teacher_ids)
    snap.branch_ids = list(customer.branch_ids)
    snap.assigned_id = customer.assigned_id
    snap.lead_source_id = customer.lead_source_id
    if customer.created_at is not None:
        snap.created_at = to_iso(local_to_utc(customer.created_at, tz))


def is_deal_payment(pay: PayInfo) -> bool:
    """Refunds and expenses arrive as payments with a negative (or zero) amount: not deals."""
    amount = to_decimal(pay.income) or Decimal(0)
    return pay.customer_id is not None and amount > 0


def observe_pay(
    snapshot: CustomerSnapshot,
    event: WebhookEvent,
    pay: Pay | None,
    *,
    at: str,
    read_at: str,
) -> CustomerSnapshot:
    """Fold a Pay event (and its re-read: None when deleted) into the owning customer's snapshot.

    Without a re-read (deleted payment) the event's own fields fill in what is unknown, so a payment whose
    create webhook is processed after its deletion still becomes the (cancelled) deal it was.
    """
    snap = snapshot.model_copy(deep=True)
    key = str(event.entity_id)
    info = snap.pays.get(key) or PayInfo(id=event.entity_id, created_at=at)
    info = info.model_copy(deep=True)
    info.seen = _remember(info.seen, event_key(event))
    info.created_at = min(info.created_at, at)
    if event.event == "delete":
        info.deleted_at = min_time(info.deleted_at, at)
        # AlfaCRM sends the whole record as it was in the delete's fields_old
        _fill_from_fields(info, event.fields_old, at)
    else:
        found, raw = _pick(event.fields_new, _CONFIRMED_KEYS)
        if found and to_bool(raw):
            info.confirmed_at = min_time(info.confirmed_at, at)
        if "income" in event.fields_new:
            info.income_at = max(info.income_at or at, at)
        fresh = info.read_at is None or read_at >= info.read_at
        if pay is not None and fresh:
            info.customer_id = pay.customer_id
            info.income = str(pay.income)
            info.document_date = pay.document_date.isoformat() if pay.document_date else None
            info.teacher_id = pay.teacher_id
            info.branch_id = pay.branch_id
            info.pay_item_id = pay.pay_item_id
            info.confirmed = pay.is_confirmed
            info.read_at = read_at
            info.fields_at = dict.fromkeys(_PAY_FILL, read_at)
            info.gone_at = None  # found by the latest read (clears what older versions inferred)
        elif pay is None:
            # not re-read: an empty read is not a deletion (only a delete event is), the fields fill in
            _fill_from_fields(info, event.fields_new, at)
    if info.confirmed is None and info.confirmed_at is not None:
        info.confirmed = True
    snap.pays[key] = info
    return snap


_PAY_FILL: dict[str, Callable[[JsonValue], str | int | None]] = {
    "customer_id": to_int,
    "income": lambda v: None if to_decimal(v) is None else str(to_decimal(v)),
    "document_date": lambda v: None if to_date(v) is None else to_date(v).isoformat(),  # type: ignore[union-attr]
    "teacher_id": to_int,
    "branch_id": to_int,
    "pay_item_id": to_int,
}


def _fill_from_fields(info: PayInfo, fields: Mapping[str, JsonValue], at: str) -> None:
    """Use an event's own field values for a payment that can no longer be re-read.

    Each field keeps the time of the value it holds, so an older event never overwrites a newer value
    whatever order the events are processed in (a re-read counts as of its own time).
    """
    for name, parse in _PAY_FILL.items():
        if name not in fields or at < info.fields_at.get(name, ""):
            continue
        try:
            value = parse(fields[name])
        except ValueError:
            continue
        if value is not None:
            setattr(info, name, value)
            info.fields_at[name] = at


def detach_pay(snapshot: CustomerSnapshot, pay_id: int) -> CustomerSnapshot:
    """The payment moved to another customer: it no longer counts for this one."""
    snap = snapshot.model_copy(deep=True)
    snap.pays.pop(str(pay_id), None)
    return snap
