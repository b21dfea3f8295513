"""Deal rules (shared/design/architecture.md, "Deal rules"): pure functions, no I/O.

From AlfaCRM events and re-reads to deals:
1. `observe_customer` / `observe_pay` fold one event (and the entity re-read for it) into the customer
   snapshot. Stage-relevant fields (`is_study`, `lead_status_id`, `removed`) are kept as *facts* with
   AlfaCRM's own times, so the history does not depend on the order webhooks arrive in.
2. `derive_deals` turns a snapshot into deal drafts: the first-sale deal of the customer and one upsell
   deal per later payment, each with its computed stage path.
3. `apply_draft` merges a draft into the stored deal: rows UIS already has are frozen (`merge_history`),
   times never go backwards, and a deal is pending when UIS lacks a transition or a changed value.
4. `upload_rows` / `contact_payload` build what UIS receives.

Decisions where AlfaCRM leaves room (documented, tested):
- a payment is a deal only when its income is positive: AlfaCRM records refunds and expenses as payments
  with a negative (or zero) amount, and the meaning of `pay_type_id` differs per account, so it is not used;
- a re-read value that no event explains (a lost or still-travelling webhook) is applied at the time of the
  re-read; once the event arrives its own time replaces that guess (facts win over inferences);
- the first payment (earliest `document_date`, then lowest id, among non-deleted payments) is the first
  sale's revenue; every payment ordered after it is an upsell deal — deleted ones end "cancelled";
- a client (`is_study` 1) is a won first sale whatever its status; an archived or deleted *lead* is failed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from connector.alfacrm.models import Customer, Pay, WebhookEvent, to_bool, to_date, to_decimal, to_int
from connector.models.deals import (
    CLOSING,
    FAILED,
    FIELD_BRANCH,
    FIELD_TEACHER,
    FIRST_SALE,
    NO_STATUS,
    SUCCESS,
    UPSELL,
    UPSELL_CANCELLED,
    UPSELL_NEW,
    UPSELL_PAID,
    CustomerSnapshot,
    DealDraft,
    DealRecord,
    Fact,
    PayInfo,
    Step,
    contact_ext_id,
    first_sale_ext_id,
    upsell_ext_id,
)
from connector.models.texts import CustomerLink
from connector.phones import normalise_all
from connector.settings import DealsSettings
from connector.timeutil import format_local, from_iso, local_to_utc, to_iso

# tracked customer field → the names AlfaCRM may use for it in webhooks and records
TRACKED: dict[str, tuple[str, ...]] = {
    "is_study": ("is_study",),
    "lead_status_id": ("lead_status_id",),
    "removed": ("removed", "is_removed", "is_archived"),
}
_CONFIRMED_KEYS = ("is_confirmed", "confirmed")

MAX_FACTS = 100  # per field; older facts are not needed once UIS has the rows they produced
MAX_SEEN = 100
_FAR_FUTURE = "9999-12-31T23:59:59Z"


# --- events -----------------------------------------------------------------------------------------
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


def _coerce_tracked(name: str, value: Any) -> Any:
    if name == "lead_status_id":
        return to_int(value)
    return bool(to_bool(value))


def _pick(fields: Mapping[str, Any], names: Iterable[str]) -> tuple[bool, Any]:
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


def _min_time(*values: str | None) -> str | None:
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
        # deletion ends the deal like archiving; just before it the customer was as fields_old says
        found, raw = _pick(event.fields_old, TRACKED["removed"])
        try:
            before = bool(to_bool(raw)) if found else False
        except ValueError:
            before = False
        facts = _add_fact(snap.facts.get("removed", []), Fact(at=at, value=before, kind="old"))
        snap.facts["removed"] = _add_fact(facts, Fact(at=at, value=True, kind="new"))
        snap.deleted_at = _min_time(snap.deleted_at, at)
    else:
        for name, aliases in TRACKED.items():
            for kind, source in (("new", event.fields_new), ("old", event.fields_old)):
                found, raw = _pick(source, aliases)
                if not found:
                    continue
                try:
                    value = _coerce_tracked(name, raw)
                except ValueError:
                    continue  # a value we cannot read tells us nothing
                snap.facts[name] = _add_fact(snap.facts.get(name, []), Fact(at=at, value=value, kind=kind))
    fresh = snap.read_at is None or read_at >= snap.read_at
    if customer is not None and fresh:
        snap.current = {"is_study": bool(customer.is_study), "lead_status_id": customer.lead_status_id}
        snap.current_keys = ["is_study", "lead_status_id"]
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
        if customer.created_at is not None:
            snap.created_at = to_iso(local_to_utc(customer.created_at, tz))
    # no re-read (None) tells nothing: an empty read is not a deletion (another branch, a read that raced
    # AlfaCRM's save); only a delete event (a webhook, or the reconciler's log entry) ends the deal
    return snap


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
        info.deleted_at = _min_time(info.deleted_at, at)
        # AlfaCRM sends the whole record as it was in the delete's fields_old
        _fill_from_fields(info, event.fields_old, at)
    else:
        found, raw = _pick(event.fields_new, _CONFIRMED_KEYS)
        if found and to_bool(raw):
            info.confirmed_at = _min_time(info.confirmed_at, at)
        if "income" in event.fields_new:
            info.income_at = max(info.income_at or at, at)
        fresh = info.read_at is None or read_at >= info.read_at
        if pay is not None and fresh:
            info.customer_id = pay.customer_id
            info.income = str(pay.income)
            info.document_date = pay.document_date.isoformat() if pay.document_date else None
            info.teacher_id = pay.teacher_id
            info.branch_id = pay.branch_id
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


_PAY_FILL: dict[str, Callable[[Any], Any]] = {
    "customer_id": to_int,
    "income": lambda v: None if to_decimal(v) is None else str(to_decimal(v)),
    "document_date": lambda v: None if to_date(v) is None else to_date(v).isoformat(),  # type: ignore[union-attr]
    "teacher_id": to_int,
    "branch_id": to_int,
}


def _fill_from_fields(info: PayInfo, fields: Mapping[str, Any], at: str) -> None:
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


# --- the first-sale stage ------------------------------------------------------------------------------
def stage_of(is_study: Any, removed: Any, status_id: Any, settings: DealsSettings) -> str:
    """Where a customer stands in "Первая продажа"."""
    if is_study:
        return SUCCESS  # a client: converted (or created as a client) = a won first sale
    if status_id is not None and status_id in settings.first_sale.success_status_ids:
        return SUCCESS
    if status_id is not None and status_id in settings.first_sale.failure_status_ids:
        return FAILED
    if removed:
        return FAILED  # a lead archived (or deleted) while in progress
    return NO_STATUS if status_id is None else str(status_id)


_DEFAULTS = {"is_study": False, "lead_status_id": None, "removed": False}


def _value_at(facts: list[Fact], x: str, current: Any, has_current: bool, name: str) -> Any:
    """The field's value at time `x` as the facts tell it.

    The latest `new` fact at or before `x`; else the value just before the first later change (its `old`
    fact, or its `new` value when nothing older is known); else the last re-read value.
    """
    before = [f for f in facts if f.kind == "new" and f.at <= x]
    if before:
        last_at = before[-1].at
        same_time = [f.value for f in before if f.at == last_at]
        # two changes within one second: prefer the one the re-read confirms, else a stable choice
        if has_current and current in same_time:
            return current
        return same_time[-1]
    later = [f for f in facts if f.at > x]
    if later:
        first_at = later[0].at
        olds = [f.value for f in later if f.at == first_at and f.kind == "old"]
        return olds[0] if olds else later[0].value
    return current if has_current else _DEFAULTS[name]


def customer_path(snap: CustomerSnapshot, settings: DealsSettings) -> list[Step]:
    """The first-sale deal's stage path: a step wherever the merged stage changes."""
    fact_times = [f.at for facts in snap.facts.values() for f in facts]
    created = _min_time(snap.created_at, snap.first_seen_at, *fact_times) or snap.first_seen_at
    points = sorted({created, *fact_times})
    steps: list[Step] = []

    def values_at(x: str) -> dict[str, Any]:
        return {
            name: _value_at(snap.facts.get(name, []), x, snap.current.get(name), name in snap.current_keys, name)
            for name in TRACKED
        }

    last: dict[str, Any] = {}
    for x in points:
        last = values_at(x)
        stage = stage_of(last["is_study"], last["removed"], last["lead_status_id"], settings)
        if not steps or steps[-1].stage != stage:
            steps.append(Step(stage=stage, at=x))
    # A re-read newer than a field's last fact shows a change no event has explained (yet: a webhook lost or
    # still travelling): apply it at the re-read's time. When that event arrives, its fact explains the value
    # with AlfaCRM's own time and this inferred step disappears.
    if snap.read_at:
        final = dict(last)
        for name in TRACKED:
            facts = snap.facts.get(name, [])
            if name in snap.current_keys and (not facts or snap.read_at > facts[-1].at):
                final[name] = snap.current.get(name)
        stage = stage_of(final["is_study"], final["removed"], final["lead_status_id"], settings)
        if stage != steps[-1].stage:
            steps.append(Step(stage=stage, at=max(snap.read_at, points[-1])))
    return steps


def pay_path(pay: PayInfo) -> list[Step]:
    """An upsell deal: new at creation, paid when confirmed (at once, normally), cancelled when deleted."""
    steps = [Step(stage=UPSELL_NEW, at=pay.created_at)]
    if pay.confirmed is not False:
        steps.append(Step(stage=UPSELL_PAID, at=max(pay.confirmed_at or pay.created_at, pay.created_at)))
    removed = pay.removed_at
    if removed:
        steps.append(Step(stage=UPSELL_CANCELLED, at=max(removed, steps[-1].at)))
    return steps


# --- history merging ------------------------------------------------------------------------------------
def merge_history(uploaded: list[Step], path: list[Step]) -> list[Step]:
    """The deal's history: what UIS already has (frozen) followed by the path's later transitions.

    UIS rejects a row older than the deal's last uploaded stage, so transitions the path places at or before
    that moment are not sent; if the path ends elsewhere, the deal moves there at the last uploaded time.
    """
    if not path:
        return list(uploaded)
    if not uploaded:
        out: list[Step] = []
        for step in path:
            if not out or out[-1].stage != step.stage:
                out.append(step)
        return out
    out = list(uploaded)
    frozen_at = uploaded[-1].at
    for step in path:
        if step.at > frozen_at and step.stage != out[-1].stage:
            out.append(step)
    if out[-1].stage != path[-1].stage:
        out.append(Step(stage=path[-1].stage, at=out[-1].at))
    return out


# --- drafts -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Directory:
    """Names for ids, from the cached AlfaCRM look-ups."""

    teachers: Mapping[int, str] = field(default_factory=dict)
    branches: Mapping[int, str] = field(default_factory=dict)

    def teacher_names(self, ids: Iterable[int]) -> str:
        return ", ".join(self.teachers.get(i, f"#{i}") for i in ids)

    def branch_names(self, ids: Iterable[int]) -> str:
        return ", ".join(self.branches.get(i, f"#{i}") for i in ids)


def _pay_order(pay: PayInfo) -> tuple[str, int]:
    return pay.document_date or "9999-12-31", pay.id


def first_payment(snap: CustomerSnapshot) -> PayInfo | None:
    live = [p for p in deal_payments(snap) if not p.removed_at]
    return min(live, key=_pay_order) if live else None


def deal_payments(snap: CustomerSnapshot) -> list[PayInfo]:
    return [p for p in snap.pays.values() if p.customer_id == snap.customer_id and is_deal_payment(p)]


def customer_name(snap: CustomerSnapshot) -> str:
    return (snap.name or "").strip() or f"Клиент {snap.customer_id}"


def contact_sig(snap: CustomerSnapshot) -> str:
    """The customer's phones and e-mails as AlfaCRM holds them: when they change, the first-sale deal becomes
    pending so the uploader replaces the UIS contact's lists (the name is the deal's name already)."""
    raw = json.dumps([list(snap.phones), list(snap.emails)], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _fields(teacher: str, branch: str) -> dict[str, str]:
    return {name: value for name, value in ((FIELD_TEACHER, teacher), (FIELD_BRANCH, branch)) if value}


def derive_deals(
    snap: CustomerSnapshot,
    settings: DealsSettings,
    directory: Directory,
    link: CustomerLink | None = None,
) -> list[DealDraft]:
    """The customer's first-sale deal and (when enabled) one upsell deal per payment after the first."""
    contact = contact_ext_id(snap.customer_id)
    first = first_payment(snap)
    teachers = directory.teacher_names(snap.teacher_ids)
    branches = directory.branch_names(snap.branch_ids)
    path = customer_path(snap, settings)
    drafts = [
        DealDraft(
            funnel=FIRST_SALE,
            ext_id=first_sale_ext_id(snap.customer_id),
            customer_id=snap.customer_id,
            pay_id=None,
            name=customer_name(snap),
            created_at=path[0].at,
            path=path,
            revenue=first.income if first else None,
            contact_ext_id=contact,
            communication_id=link.communication_id if link else None,
            communication_type=link.communication_type if link else None,
            user_fields=_fields(teachers, branches),
            contact_sig=contact_sig(snap),
        )
    ]
    if not settings.upsell.enabled or first is None:
        return drafts
    for pay in sorted(deal_payments(snap), key=_pay_order):
        if _pay_order(pay) <= _pay_order(first):
            continue  # the first payment itself, and deleted ones that came before it
        steps = pay_path(pay)
        teacher = directory.teacher_names([pay.teacher_id]) if pay.teacher_id else teachers
        branch = directory.branch_names([pay.branch_id]) if pay.branch_id else branches
        drafts.append(
            DealDraft(
                funnel=UPSELL,
                ext_id=upsell_ext_id(pay.id),
                customer_id=snap.customer_id,
                pay_id=pay.id,
                name=f"Оплата №{pay.id} — {customer_name(snap)}",
                created_at=steps[0].at,
                path=steps,
                revenue=pay.income,
                contact_ext_id=contact,
                communication_id=None,
                communication_type=None,
                user_fields=_fields(teacher, branch),
            )
        )
    return drafts


# --- deal records -------------------------------------------------------------------------------------
def signature(deal: DealRecord) -> str:
    """What UIS shows besides the stage: a change here re-sends the current stage's row."""
    raw = json.dumps(
        [
            deal.name,
            deal.created_at,
            money(deal.revenue),
            deal.contact_ext_id,
            deal.communication_id,
            deal.communication_type,
            sorted(deal.user_fields.items()),
        ],
        default=str,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def history(deal: DealRecord) -> list[Step]:
    return merge_history(deal.uploaded, deal.path)


def needs_upload(deal: DealRecord) -> bool:
    return needs_rows(deal) or contact_changed(deal)


def needs_rows(deal: DealRecord) -> bool:
    """UIS lacks a transition or a value its rows carry."""
    return len(history(deal)) > len(deal.uploaded) or signature(deal) != deal.uploaded_sig


def contact_changed(deal: DealRecord) -> bool:
    """The customer's phones or e-mails changed since the last upload: the contact (not the deal's rows) is due."""
    return deal.contact_sig is not None and deal.contact_sig != deal.uploaded_contact_sig


def _content(deal: DealRecord) -> tuple[Any, ...]:
    return (
        [s.model_dump() for s in deal.path],
        deal.name,
        deal.created_at,
        money(deal.revenue),
        deal.contact_ext_id,
        deal.communication_id,
        deal.communication_type,
        sorted(deal.user_fields.items()),
        deal.customer_id,
        deal.contact_sig,
    )


def apply_draft(existing: DealRecord | None, draft: DealDraft, *, at: str, source_version: int) -> DealRecord | None:
    """The stored deal updated by a draft, or None when nothing changes (a repeated delivery)."""
    created = draft.created_at
    if existing is not None and existing.uploaded:
        # UIS knows the deal's creation time already; never move it after its first row
        created = min(existing.created_at, existing.uploaded[0].at)
    updated = DealRecord(
        funnel=draft.funnel,
        ext_id=draft.ext_id,
        customer_id=draft.customer_id,
        pay_id=draft.pay_id,
        name=draft.name,
        created_at=created,
        path=draft.path,
        uploaded=list(existing.uploaded) if existing else [],
        revenue=draft.revenue,
        contact_ext_id=draft.contact_ext_id,
        communication_id=draft.communication_id,
        communication_type=draft.communication_type,
        user_fields=dict(draft.user_fields),
        contact_sig=draft.contact_sig,
        modified_at=existing.modified_at if existing else max(at, draft.path[-1].at),
        uploaded_sig=existing.uploaded_sig if existing else None,
        uploaded_contact_sig=existing.uploaded_contact_sig if existing else None,
        upload_state=existing.upload_state if existing else "pending",
        upload_error=existing.upload_error if existing else None,
        source_version=max(source_version, existing.source_version if existing else 0),
        version=existing.version if existing else 0,
    )
    if existing is not None:
        if _content(existing) == _content(updated):
            return None
        if signature(existing) != signature(updated):
            # modified_date_time moves forward only
            updated.modified_at = max(existing.modified_at, at, updated.path[-1].at)
    updated.modified_at = max(updated.modified_at, history(updated)[-1].at)
    if needs_upload(updated):
        updated.upload_state = "pending"
    return updated


def orphan(deal: DealRecord, *, at: str) -> tuple[str, DealRecord]:
    """An upsell deal whose payment is no longer an upsell (it became the first, or stopped being a deal).

    → ("delete", deal) when UIS never received it; ("keep", deal) when it already ends cancelled;
    ("update", deal ending cancelled) otherwise.
    """
    if not deal.uploaded:
        return "delete", deal
    if deal.path and deal.path[-1].stage == UPSELL_CANCELLED:
        return "keep", deal
    updated = deal.model_copy(deep=True)
    updated.path = [*deal.path, Step(stage=UPSELL_CANCELLED, at=max(at, deal.path[-1].at if deal.path else at))]
    updated.modified_at = max(deal.modified_at, updated.path[-1].at)
    updated.upload_state = "pending"
    return "update", updated


# --- what UIS receives -----------------------------------------------------------------------------------
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


def rows_to_send(deal: DealRecord, *, force: bool = False) -> list[Step]:
    """The transitions UIS has not received; or, for a change that does not move the stage (or a forced
    re-send), the current stage again with its original time."""
    steps = history(deal)
    new = steps[len(deal.uploaded) :]
    if not new and (force or signature(deal) != deal.uploaded_sig):
        new = steps[-1:]
    return new


def upload_rows(
    deal: DealRecord,
    steps: list[Step],
    *,
    tz: str,
    now: datetime | None = None,
    with_contact: bool = True,
) -> list[dict[str, Any]]:
    """`upload.deals_history` rows for these steps of the deal, in order."""
    base: dict[str, Any] = {
        "ext_id": deal.ext_id,
        "name": deal.name,
        "created_date_time": _local(deal.created_at, tz, now),
        "sales_funnel_ext_id": deal.funnel,
    }
    if with_contact:
        base["contact_ext_ids"] = [deal.contact_ext_id]
        base["main_contact_ext_id"] = deal.contact_ext_id
    revenue = money(deal.revenue)
    if revenue is not None:
        base["revenue"] = revenue
    if deal.communication_id is not None and deal.communication_type:
        base["communication_id"] = deal.communication_id
        base["communication_type"] = deal.communication_type
    if deal.user_fields:
        base["user_fields"] = [{"ext_id": k, "value": v} for k, v in sorted(deal.user_fields.items())]
    closing = CLOSING[deal.funnel]
    rows = []
    for index, step in enumerate(steps):
        modified = max(step.at, deal.modified_at) if index == len(steps) - 1 else step.at
        row = {
            **base,
            "stage_ext_id": step.stage,
            "modified_stage_date_time": _local(step.at, tz, now),
            "modified_date_time": _local(modified, tz, now),
        }
        if step.stage in closing:
            row["closed_date_time"] = _local(step.at, tz, now)
        rows.append(row)
    return rows


def contact_payload(snap: CustomerSnapshot, *, region: str, tz: str, now: datetime | None = None) -> dict[str, Any]:
    """The customer as a UIS deal contact: E.164 phones (unparsable ones are left out), e-mails."""
    contact: dict[str, Any] = {
        "ext_id": contact_ext_id(snap.customer_id),
        "name": customer_name(snap),
        "phone_numbers": normalise_all(snap.phones, region),
        "emails": [e.strip() for e in snap.emails if "@" in e],
    }
    created = snap.created_at or snap.first_seen_at
    contact["created_date_time"] = _local(created, tz, now)
    return contact


def contact_hash(contact: Mapping[str, Any]) -> str:
    raw = json.dumps({k: contact.get(k) for k in ("name", "phone_numbers", "emails")}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


# --- funnels --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageSpec:
    ext_id: str
    name: str
    status: str  # in_process | success | failed
    order: int | None = None


MAX_IN_PROCESS = 100


def funnel_specs(statuses: Iterable[Mapping[str, Any]], settings: DealsSettings) -> dict[str, list[StageSpec]]:
    """The two funnels' stages. First sale: "Без статуса" first, then every AlfaCRM lead status that is
    neither success nor failure in AlfaCRM's order (weight), orders 10, 20, 30… (gaps for later inserts)."""
    chosen = set(settings.first_sale.success_status_ids) | set(settings.first_sale.failure_status_ids)
    ordered = sorted(
        (s for s in statuses if to_int(s.get("id")) not in chosen),
        key=lambda s: (to_int(s.get("weight")) or 0, to_int(s.get("id")) or 0),
    )
    in_process = [StageSpec(NO_STATUS, "Без статуса", "in_process", 10)]
    for status in ordered[: MAX_IN_PROCESS - 1]:
        order = 10 * (len(in_process) + 1)
        in_process.append(
            StageSpec(str(to_int(status["id"])), str(status.get("name") or status["id"]), "in_process", order)
        )
    return {
        FIRST_SALE: [
            *in_process,
            StageSpec(SUCCESS, "Успешная продажа", "success"),
            StageSpec(FAILED, "Отказ", "failed"),
        ],
        UPSELL: [
            StageSpec(UPSELL_NEW, "Новая оплата", "in_process", 10),
            StageSpec(UPSELL_PAID, "Оплачено", "success"),
            StageSpec(UPSELL_CANCELLED, "Отменено", "failed"),
        ],
    }


def specs_hash(specs: Mapping[str, list[StageSpec]]) -> str:
    raw = json.dumps({k: [s.__dict__ for s in v] for k, v in sorted(specs.items())}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]
