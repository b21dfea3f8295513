"""The deal worker's use case: one AlfaCRM Customer or Pay event → customer snapshot → deals marked pending.

Per event: the entity is re-read once from AlfaCRM through the branch the event names (deleted entities
are not re-read). An empty re-read of a created/updated entity is not a deletion (the record may be listed
only in another branch, or the read raced AlfaCRM's save): it is read once more through the integration's
branch and, still not found, the event is parked untouched (replayable) — unless the entity's delete event
was processed already, which explains the empty read. Only a delete event (a webhook, or the reconciler's
log entry) ends a deal as deleted. The event's facts and the re-read are folded into the customer snapshot with a
conditional write (re-read and retried on a lost race), the customer's deals are recomputed and the
changed ones written (also conditionally) with their pending mark. Look-ups come from the cache.

Idempotent by construction: facts are a set and deals are a function of the snapshot, so a repeated
delivery changes nothing and shuffled deliveries end in the same state.

Loops: the deals side never writes to AlfaCRM, so no event can be an echo of our own write. Changes made
by the connector's API user (the texts side creating leads) are ordinary customer changes and become deals.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from connector.alfacrm.client import AlfaCrmClient
from connector.alfacrm.models import Customer, Pay, WebhookEvent, to_int
from connector.deals import drafts, snapshots
from connector.deals.lookups import Lookups
from connector.errors import AlfaCrmNotFound, AlfaCrmValidationError, ConnectorError
from connector.models.deals import UPSELL, CustomerSnapshot, DealDraft, DealRecord, upsell_ext_id
from connector.models.events import EventOutcome, EventSource
from connector.models.messages import DealEventMessage
from connector.models.parked import ParkedItem, fingerprint
from connector.models.raw import JsonObject
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.store import Store
from connector.store.base import on_conflict
from connector.store.unit import AlreadyProcessed, OnceRecord
from connector.timeutil import to_iso

ENTITIES = ("Customer", "Pay")
_T = TypeVar("_T")
WRITE_ATTEMPTS = 6
UNKNOWN_INTEGRATION = "integration missing"


@dataclass
class Outcome:
    """What one event did: `status` is done | skipped (integration off) | ignored | parked."""

    status: str
    reason: str = ""
    changed: list[str] = field(default_factory=list)  # "<funnel>#<ext_id>" of deals written


@dataclass
class _Reads:
    """The event's AlfaCRM reads, made once: a unit of work that lost a race runs again on them."""

    alfacrm: AlfaCrmClient
    memo: dict[tuple[str, int, int], object] = field(default_factory=dict)

    def customer(self, id: int, branch_id: int) -> Customer | None:
        found = self._once("customer", id, branch_id, self.alfacrm.get_customer)
        return found if isinstance(found, Customer) else None

    def pay(self, id: int, branch_id: int) -> Pay | None:
        found = self._once("pay", id, branch_id, self.alfacrm.get_pay)
        return found if isinstance(found, Pay) else None

    def _once(self, kind: str, id: int, branch_id: int, read: Callable[[int, int], object]) -> object:
        key = (kind, id, branch_id)
        if key not in self.memo:
            self.memo[key] = read(id, branch_id)
        return self.memo[key]


@dataclass
class _Context:
    rt: Runtime
    store: Store  # the event's unit of work (`Store.unit_of_work`)
    integration: Integration
    reads: _Reads
    lookups: Lookups


def deal_context(rt: Runtime, integration: Integration, alfacrm: AlfaCrmClient) -> _Context:
    """What `refresh_deals` needs, for a use case that reads AlfaCRM's lists itself (the backfill): the
    container's store, each write on its own (a chunk's pages are not one unit of work)."""
    return _Context(rt, rt.store, integration, _Reads(alfacrm), Lookups.of(rt, integration, lambda: alfacrm))


def handle_deal_event(rt: Runtime, message: DealEventMessage) -> Outcome:
    """Process one deal-events queue message (one AlfaCRM webhook).

    Raises retryable errors (AlfaCRM unavailable, a race lost too often) so SQS tries again; AlfaCRM
    refusing the read (validation, 404) or listing the entity in no branch tried parks the message instead.
    """
    return _handle(rt, message, once_id=None)


# The same webhook delivered twice (SQS at-least-once, an AlfaCRM re-send) is answered from the idempotency
# table without a second AlfaCRM read: the processing is idempotent anyway, but AlfaCRM's ~4 req/s per
# account is the scarce resource. `received_at` differs per delivery and is left out of the key; an admin
# replay adds a `replay` nonce so a parked event really runs again. The record is read with the event's state
# (one batch) and written in the transaction of its state (`connector.store.unit`): a delivery that dies before
# the commit left nothing, one whose commit answer was lost finds the record on its redelivery.
IDEMPOTENCY_SECONDS = 24 * 3600
ONCE_PREFIX = "deal_event#"


def handle_deal_event_once(rt: Runtime, message: DealEventMessage) -> Outcome:
    """`handle_deal_event` for a queue message, skipping a delivery already processed (idempotency table);
    the outcome (or the failure SQS will retry) goes to the school's execution log."""
    key = [message.integration_id, message.event, message.replay]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
    try:
        outcome = _handle(rt, message, once_id=ONCE_PREFIX + digest)
    except Exception as exc:
        reason = exc.message if isinstance(exc, ConnectorError) else f"unexpected {type(exc).__name__}"
        _record(rt, message, "failed", reason)
        rt.events.failed(message.integration_id, exc)
        raise
    if outcome.reason != UNKNOWN_INTEGRATION:  # a removed school gets no log back
        status: EventOutcome = (
            "done" if outcome.status == "done" else "parked" if outcome.status == "parked" else "skipped"
        )
        reason = outcome.reason or (f"{len(outcome.changed)} deals changed" if outcome.changed else "no deal changed")
        _record(rt, message, status, reason)
        if outcome.status == "done":
            rt.events.credential(message.integration_id, "alfacrm", ok=True)
    return outcome


def _handle(rt: Runtime, message: DealEventMessage, *, once_id: str | None) -> Outcome:
    integration = rt.store.integrations.get(message.integration_id) if message.integration_id else None
    if integration is None:
        return Outcome("skipped", UNKNOWN_INTEGRATION)
    if not integration.active or not integration.settings.deals.enabled:
        return Outcome("skipped", "integration inactive or deals off")
    try:
        event = WebhookEvent.model_validate(message.event)
    except ValidationError as exc:
        why = f"not an AlfaCRM webhook: {exc.errors()[0]['msg']}"
        _park(rt, message, why, "bad_event")
        return Outcome("parked", why)
    if event.entity not in ENTITIES:
        return Outcome("ignored", f"entity {event.entity}")
    alfacrm = rt.clients.alfacrm(integration)
    reads = _Reads(alfacrm)
    lookups = Lookups.of(rt, integration, lambda: alfacrm)
    # a delete's idempotency record waits for the parked events it re-runs (after its own commit)
    unit_once = once_id if event.event != "delete" else None

    answered: list[bool] = []  # the idempotency record answered: a delivery processed already

    def attempt(_: int) -> Outcome:
        store = rt.store.unit_of_work(rt.env.idempotency_table)
        customers, pays = _event_keys(event)
        done = store.deals.prefetch_event(integration.id, customer_ids=customers, pay_ids=pays, once_id=once_id)
        if done is not None:
            answered.append(True)
            return _outcome_of(done)
        outcome = _apply(_Context(rt, store, integration, reads, lookups), message, event)
        store.commit(_once_record(unit_once, outcome) if unit_once else None)
        return outcome

    try:
        outcome = on_conflict(attempt, attempts=WRITE_ATTEMPTS, what=f"{event.entity} {event.entity_id} event")
    except AlreadyProcessed:
        return Outcome("done", "processed by a concurrent delivery")
    if answered:
        return outcome
    if event.event == "delete" and outcome.status == "done":
        outcome.changed += _revisit_not_listed(rt, integration.id, event)
    if once_id and event.event == "delete":
        with contextlib.suppress(AlreadyProcessed):  # a concurrent delivery recorded it: the same outcome
            rt.store.unit_of_work(rt.env.idempotency_table).commit(_once_record(once_id, outcome))
    return outcome


def _event_keys(event: WebhookEvent) -> tuple[list[int], list[int]]:
    """The customers and payments whose state the event touches, as far as the webhook tells."""
    if event.entity == "Customer":
        return [event.entity_id], []
    customer = _pay_customer_id(event)
    return ([customer] if customer else []), [event.entity_id]


def _apply(ctx: _Context, message: DealEventMessage, event: WebhookEvent) -> Outcome:
    rt, integration = ctx.rt, ctx.integration
    at = snapshots.event_time(event, message.received_at, integration.timezone)
    try:
        snaps = [_customer_event(ctx, event, at)] if event.entity == "Customer" else _pay_event(ctx, event, at)
    except (AlfaCrmValidationError, AlfaCrmNotFound) as exc:
        _park(rt, message, exc.message, exc.code)
        return Outcome("parked", f"{exc.message} ({exc.code})")
    except _NotListed as exc:
        # not a deletion (only a delete event says that): parked untouched, a replay reads it again
        _park(rt, message, exc.message, "not_listed")
        return Outcome("parked", f"{exc.message} (not_listed)")
    if not snaps:
        return Outcome("ignored", "payment without a customer")
    changed: list[str] = []
    for snap in snaps:
        changed += refresh_deals(ctx, snap, at, branch_hint=event.branch_for(integration.alfacrm.branch_id))
    return Outcome("done", changed=changed)


def _once_record(once_id: str, outcome: Outcome) -> OnceRecord:
    data = json.dumps({"status": outcome.status, "reason": outcome.reason, "changed": outcome.changed})
    # DynamoDB's TTL runs on the real clock, whatever clock the runtime's `now` is
    return OnceRecord(once_id, data, int(time.time()) + IDEMPOTENCY_SECONDS)


def _outcome_of(record: JsonObject) -> Outcome:
    """A processed delivery's outcome, as its idempotency record keeps it."""
    try:
        data = json.loads(str(record.get("data") or "{}"))
    except ValueError:
        data = {}
    changed = data.get("changed") if isinstance(data, dict) else None
    return Outcome(
        str(data.get("status") or "done") if isinstance(data, dict) else "done",
        str(data.get("reason") or "") if isinstance(data, dict) else "",
        changed=[str(c) for c in changed] if isinstance(changed, list) else [],
    )


def _revisit_not_listed(rt: Runtime, integration_id: str, event: WebhookEvent) -> list[str]:
    """A create/update parked because AlfaCRM listed the entity nowhere is explained by its deletion: now that
    the delete is known, run those events again (they fold in with their own times) and clear them from
    the parked list. Deletes are rare, so the parked-list read stays off the ordinary path."""
    prefix = f"{event.entity}#{event.entity_id}#"
    changed: list[str] = []
    for item in rt.store.integrations.parked(integration_id):
        if item.kind != "deal_event" or item.code != "not_listed" or not item.key.startswith(prefix):
            continue
        outcome = handle_deal_event(rt, DealEventMessage.model_validate(item.payload))
        if outcome.status != "parked":
            rt.store.integrations.unpark(integration_id, "deal_event", item.key)
            changed += outcome.changed
    return changed


def _record(rt: Runtime, message: DealEventMessage, outcome: EventOutcome, reason: str) -> None:
    key = _event_key(message)  # the parked item's key too: the log's key is what a replay takes
    source: EventSource = "alfacrm" if message.source == "webhook" else "reconciler"
    rt.events.record(message.integration_id, source=source, kind="deal_event", key=key, outcome=outcome, reason=reason)
    if message.source == "webhook":
        rt.events.seen(message.integration_id, "alfacrm_webhook_at", message.received_at)


def _event_key(message: DealEventMessage) -> str:
    event = message.event
    # the entity, the change and its time identify a webhook; without a time, what it says does
    when = event.get("datetime") or fingerprint(event)
    return f"{event.get('entity')}#{event.get('entity_id')}#{event.get('event')}#{when}"


def _park(rt: Runtime, message: DealEventMessage, error: str, code: str) -> None:
    key = _event_key(message)
    payload = message.model_dump(mode="json", exclude_none=True)
    rt.store.integrations.park(
        message.integration_id, ParkedItem(kind="deal_event", key=key, payload=payload, error=error, code=code)
    )
    logger.warning("deal event parked", extra={"integration_id": message.integration_id, "key": key, "code": code})


# --- entities ------------------------------------------------------------------------------------------
class _NotListed(Exception):
    """A create/update event's entity is listed in none of the branches tried (see `_reread`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _branches(ctx: _Context, event: WebhookEvent) -> list[int]:
    """Where to re-read an entity: the branch the event names, then the integration's branch."""
    own = ctx.integration.alfacrm.branch_id
    return list(dict.fromkeys([event.branch_for(own), own]))


def _reread(ctx: _Context, event: WebhookEvent, read: Callable[[int, int], _T | None]) -> tuple[_T, int]:
    """Re-read a created/updated entity (→ it and the branch that listed it); `_NotListed` if none did.

    An empty read is not a deletion: the record may be listed only in another branch, or the read may have
    raced AlfaCRM's save. One read normally; one more, through the integration's branch, when the event's
    branch does not list the entity.
    """
    branches = _branches(ctx, event)
    for branch in branches:
        found = read(event.entity_id, branch)
        if found is not None:
            return found, branch
    tried = ", ".join(str(b) for b in branches)
    raise _NotListed(f"AlfaCRM lists no {event.entity} {event.entity_id} in branch {tried} ({event.event} event)")


def _customer_event(ctx: _Context, event: WebhookEvent, at: str) -> CustomerSnapshot:
    integration = ctx.integration
    customer = None
    if event.event != "delete":
        try:
            customer, _ = _reread(ctx, event, ctx.reads.customer)
        except _NotListed:
            known = ctx.store.deals.get_customer(integration.id, event.entity_id)
            if known is None or known.deleted_at is None:
                raise
            # its delete event came first: that explains the empty read, the event's own facts still count
    read_at = to_iso(ctx.rt.now())

    def change(current: CustomerSnapshot | None) -> CustomerSnapshot:
        base = current or snapshots.new_snapshot(event.entity_id, at)
        return snapshots.observe_customer(base, event, customer, at=at, read_at=read_at, tz=integration.timezone)

    snap, _ = ctx.store.deals.update_customer(integration.id, event.entity_id, change)
    return snap


def _pay_customer_id(event: WebhookEvent) -> int | None:
    for fields in (event.fields_new, event.fields_old):
        try:
            found = to_int(fields.get("customer_id"))
        except ValueError:
            continue
        if found:
            return found
    return None


def _pay_event(ctx: _Context, event: WebhookEvent, at: str) -> list[CustomerSnapshot]:
    integration = ctx.integration
    branch = event.branch_for(integration.alfacrm.branch_id)
    pay = None
    owner = ctx.store.deals.pay_owner(integration.id, event.entity_id)
    if event.event != "delete":
        try:
            pay, branch = _reread(ctx, event, ctx.reads.pay)
        except _NotListed:
            if not _pay_deleted(ctx, event.entity_id, owner):
                raise
            # its delete event came first: that explains the empty read, the event's own fields still count
    read_at = to_iso(ctx.rt.now())
    customer_id = (pay.customer_id if pay is not None else None) or _pay_customer_id(event) or owner
    if not customer_id:
        return []  # a payment without a customer is not a deal
    snaps: list[CustomerSnapshot] = []
    if owner is not None and owner != customer_id:
        # the payment was moved to another customer: it stops counting for the old one
        old, _ = ctx.store.deals.update_customer(
            integration.id,
            owner,
            lambda current: snapshots.detach_pay(current or snapshots.new_snapshot(owner, at), event.entity_id),
        )
        snaps.append(old)
    if owner != customer_id:
        ctx.store.deals.set_pay_owner(integration.id, event.entity_id, customer_id)

    known = ctx.store.deals.get_customer(integration.id, customer_id)
    first_sight: Customer | None = None
    if known is None:
        # the first event about this customer is a payment: read the customer once (contact, stage, name)
        first_sight = ctx.reads.customer(customer_id, branch)

    def change(current: CustomerSnapshot | None) -> CustomerSnapshot:
        base = current or _first_snapshot(ctx, customer_id, first_sight, at=at, read_at=read_at)
        return snapshots.observe_pay(base, event, pay, at=at, read_at=read_at)

    snap, _ = ctx.store.deals.update_customer(integration.id, customer_id, change, current=known)
    snaps.append(snap)
    return snaps


def _pay_deleted(ctx: _Context, pay_id: int, owner: int | None) -> bool:
    """Whether the payment's delete event has been processed already (its snapshot says so)."""
    snap = ctx.store.deals.get_customer(ctx.integration.id, owner) if owner is not None else None
    info = snap.pays.get(str(pay_id)) if snap is not None else None
    return info is not None and info.deleted_at is not None


def _first_snapshot(
    ctx: _Context, customer_id: int, customer: Customer | None, *, at: str, read_at: str
) -> CustomerSnapshot:
    """A snapshot for a customer known only through a payment: its state as read now."""
    base = snapshots.new_snapshot(customer_id, at)
    if customer is None:
        return base
    baseline = WebhookEvent(event="update", entity="Customer", entity_id=customer_id)
    return snapshots.observe_customer(base, baseline, customer, at=at, read_at=read_at, tz=ctx.integration.timezone)


# --- deals ---------------------------------------------------------------------------------------------
def refresh_deals(ctx: _Context, snap: CustomerSnapshot, at: str, *, branch_hint: int | None = None) -> list[str]:
    """Recompute the customer's deals from the snapshot and write the changed ones (→ their keys)."""
    integration = ctx.integration
    settings = integration.settings.deals
    link = ctx.store.texts.customer_link(integration.id, snap.customer_id)
    pays = list(snap.pays.values())
    directory = ctx.lookups.directory(
        teacher_ids=[*snap.teacher_ids, *(p.teacher_id for p in pays if p.teacher_id)],
        branch_ids=[*snap.branch_ids, *(p.branch_id for p in pays if p.branch_id)],
        user_ids=[snap.assigned_id],
        source_ids=[snap.lead_source_id],
        branch_hint=branch_hint,
    )
    wanted = {(d.funnel, d.ext_id): d for d in drafts.derive_deals(snap, settings, directory, link)}
    keys = set(wanted)
    if settings.upsell.enabled:
        keys |= {(UPSELL, upsell_ext_id(int(p))) for p in snap.pays}
    existing = ctx.store.deals.get_deals(integration.id, keys)
    changed: list[str] = []
    for key, draft in wanted.items():

        def apply(current: DealRecord | None, draft: DealDraft = draft) -> DealRecord | None:
            return drafts.apply_draft(current, draft, at=at, source_version=snap.version)

        if _write(ctx, key, existing.get(key), apply, snap.version):
            changed.append(f"{key[0]}#{key[1]}")
    deleted = False
    for key, deal in existing.items():
        if key in wanted or key[0] != UPSELL:
            continue
        action = _withdraw(ctx, key, deal, at, snap.version)
        if action:
            changed.append(f"{key[0]}#{key[1]}")
            deleted = deleted or action == "delete"
    if deleted:
        # A worker on a newer snapshot may have read the deal just before it went, found it right and written
        # nothing: if the snapshot moved on, recompute from it (a deal that is wanted again is written anew).
        fresh = ctx.store.deals.get_customer(integration.id, snap.customer_id)
        if fresh is not None and fresh.version > snap.version:
            changed += [c for c in refresh_deals(ctx, fresh, at, branch_hint=branch_hint) if c not in changed]
    return changed


def _withdraw(ctx: _Context, key: tuple[str, str], current: DealRecord | None, at: str, source_version: int) -> str:
    """An upsell deal whose payment stopped being an upsell: deleted if UIS never received it, else taken to
    "cancelled". Conditional on the version read; on a lost race re-read and decide again (→ what was done:
    "delete", "update" or "")."""

    def step(attempt: int) -> str:
        read = ctx.store.deals.get_deal(ctx.integration.id, *key) if attempt else current
        if read is None or read.source_version > source_version:
            return ""  # gone already, or written meanwhile from a newer snapshot: that one decides
        action, updated = drafts.orphan(read, at=at)
        if action == "delete":
            ctx.store.deals.delete_deal(ctx.integration.id, *key, expected_version=read.version)
        elif action == "update":
            ctx.store.deals.save_deal(ctx.integration.id, updated.model_copy(update={"version": read.version}))
        else:
            return ""
        return action

    return on_conflict(step, attempts=WRITE_ATTEMPTS, what=f"deal {key[0]}#{key[1]}")


def _write(
    ctx: _Context,
    key: tuple[str, str],
    current: DealRecord | None,
    compute: Callable[[DealRecord | None], DealRecord | None],
    source_version: int,
) -> bool:
    """Write the recomputed deal conditionally; on a lost race re-read and recompute (→ whether written)."""

    def step(attempt: int) -> bool:
        read = ctx.store.deals.get_deal(ctx.integration.id, *key) if attempt else current
        if read is not None and read.source_version > source_version:
            return False  # another worker already wrote this deal from a newer snapshot
        updated = compute(read)
        if updated is None:
            return False
        if read is not None:
            updated = updated.model_copy(update={"version": read.version})
        ctx.store.deals.save_deal(ctx.integration.id, updated)
        return True

    return on_conflict(step, attempts=WRITE_ATTEMPTS, what=f"deal {key[0]}#{key[1]}")
