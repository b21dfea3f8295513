"""The deal uploader's use case: flush each integration's pending deals to UIS in as few calls as possible.

Per integration with pending deals:
1. `ensure_funnels` (a DynamoDB read when nothing changed); a deal naming a stage UIS does not know forces
   one real sync (a status added in AlfaCRM a minute ago), and is parked if the stage is still unknown;
2. contacts: ONE `create.deal_contacts` for new ones and one `update.deal_contacts` per changed one (UIS
   updates one contact per call; a hash per contact in `UIS#contact#<ext_id>` tells which);
3. ONE `upload.deals_history` per ≤1000 rows, carrying per deal only the transitions UIS lacks (or the
   current stage again, same stage time, for a change that does not move the stage).
UIS takes a call all or nothing and its error names a field, never a row or contact (`deals.stage_ext_id`):
a validation error parks only the offending deal, found by bisection (refused calls cost no points), and the
rest is sent again; a refused contact create is narrowed down the same way. An error about what the
*account* lacks — a row's user field, stage or funnel "not found" (or refused) in UIS, e.g. deleted in the
cabinet — is not the deal's fault and would park deal after deal: it forces one `ensure_funnels` sync
(re-creating missing stages and fields) and the batch is sent again; if UIS still refuses it, the flush is
deferred with every pending mark kept (and no forced sync again for `RESYNC_COOLDOWN`, so a problem only a
person can fix does not spend the day's points). `limit_exceeded` (beyond what the client waits out) and
transport errors stop the integration's flush and leave every pending mark for the next run.
After a successful call each deal records what UIS now has; its pending mark is cleared only if the deal
did not change meanwhile (conditional write), so a change made during the upload is uploaded next time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connector.deals import rules
from connector.deals.funnels import ensure_funnels
from connector.deals.state import DealRecord, Step
from connector.errors import ConnectorError, UisError, UisValidationError
from connector.observability import logger
from connector.store.base import on_conflict
from connector.timeutil import from_iso, to_iso, utc_to_local, utcnow
from connector.uis.client import MAX_CONTACTS, MAX_UPLOAD_ROWS

if TYPE_CHECKING:
    from connector.ports import ClientFactory
    from connector.settings import Integration
    from connector.store import Store
    from connector.uis.client import UisClient

WRITE_ATTEMPTS = 6
MAX_PENDING_PER_FLUSH = 5000  # bounds one invocation; the rest waits for the next minute
RESYNC_COOLDOWN = timedelta(minutes=15)  # after a forced sync that did not help, defer without forcing again
# a row field that names something of the account (UIS#funnel#…, UIS#field#…), with or without `deals[i].`
# UIS names nested parameters with dots and no index (`deals.user_fields.ext_id`); older forms kept
_SYNC_FIELD = re.compile(r"^(?:deals(?:\[\d+\])?\.)?(?:user_fields|stage_ext_id|sales_funnel_ext_id)\b")
_SYNC_MNEMONICS = ("entity_not_found", "invalid_parameter_value")


@dataclass
class FlushReport:
    """What one integration's flush did (also the uploader handler's reply, per integration)."""

    integration_id: str
    state: str = "idle"  # idle | uploaded | partial | deferred
    deals: int = 0
    rows: int = 0
    uploaded: int = 0
    parked: list[str] = field(default_factory=list)
    points: int = 0  # UIS points spent (funnel sync included)
    error: str | None = None


@dataclass
class _Item:
    deal: DealRecord
    steps: list[Step]
    rows: list[dict[str, Any]]
    merged: list[Step]
    sig: str
    contact_sig: str | None = None
    at: str = ""  # the flush's moment (UTC ISO)
    done: bool = False  # uploaded or parked by this flush


def flush_all(
    *,
    store: Store | None = None,
    clients: ClientFactory | None = None,
    integration_id: str | None = None,
    now: Callable[[], datetime] = utcnow,
) -> list[FlushReport]:
    """Flush every active integration with deals enabled (or just `integration_id`, on demand)."""
    from connector.ports import default_clients
    from connector.store import default_store

    store = store or default_store()
    clients = clients or default_clients
    if integration_id:
        found = store.integrations.get(integration_id, fresh=True)
        integrations = [found] if found else []
    else:
        integrations = store.integrations.list_active()
    reports = []
    for integration in integrations:
        if not integration.active or not integration.settings.deals.enabled:
            continue
        try:
            reports.append(flush_integration(integration, store=store, clients=clients, now=now))
        except ConnectorError as exc:
            # one integration's broken credentials or UIS outage must not hold up the others
            logger.warning("deal flush failed", extra={"integration_id": integration.id, "code": exc.code})
            reports.append(FlushReport(integration.id, state="deferred", error=exc.message))
    return reports


def flush_integration(
    integration: Integration,
    *,
    store: Store,
    clients: ClientFactory,
    now: Callable[[], datetime] = utcnow,
) -> FlushReport:
    report = FlushReport(integration.id)
    keys = store.deals.pending_keys(integration.id, limit=MAX_PENDING_PER_FLUSH)
    if not keys:
        return report
    # the GSI is eventually consistent: read the deals themselves before deciding what UIS lacks
    deals = [d for d in store.deals.get_deals(integration.id, keys).values() if d.upload_state == "pending"]
    if not deals:
        return report
    uis = clients.uis(integration)
    moment = now()
    spent_before: int | None = None
    resynced = False
    try:
        sync = ensure_funnels(integration, store=store, clients=clients, now=now)
        report.points += sync.points
        if any(_unknown_stages(d, sync.known) for d in deals):
            sync = ensure_funnels(integration, store=store, clients=clients, force=True, now=now)
            report.points += sync.points
        spent_before = uis.calls  # ensure_funnels counted its own points
        ready: list[DealRecord] = []
        for deal in deals:
            unknown = _unknown_stages(deal, sync.known)
            if unknown:
                _park(
                    store, integration, deal, f"stage {unknown[0]} is not in UIS funnel {deal.funnel}", "unknown_stage"
                )
                report.parked.append(f"{deal.funnel}#{deal.ext_id}")
            else:
                ready.append(deal)
        ready = _attach_communications(integration, ready, store=store)
        without_contact = _sync_contacts(integration, ready, store=store, uis=uis, now=moment, report=report)
        items = [_plan(integration, d, now=moment, with_contact=d.contact_ext_id not in without_contact) for d in ready]
        for item in items:
            if not item.rows:
                # only the contact changed (phones, e-mails): synced above, the deal's rows are as UIS has them
                _mark_uploaded(store, integration, item)
        items = [i for i in items if i.rows]
        report.deals = len(items)
        report.rows = sum(len(i.rows) for i in items)
        for chunk in _chunks(items):
            while True:
                try:
                    _send(integration, [i for i in chunk if not i.done], store=store, uis=uis, report=report)
                    break
                except _SyncProblem:
                    if resynced or not _may_resync(store, integration, moment):
                        raise
                    # UIS lacks a stage, funnel or user field a row names (deleted in the cabinet?): sync, resend
                    resynced = True
                    calls_before = uis.calls
                    sync = ensure_funnels(integration, store=store, clients=clients, force=True, now=now)
                    spent_before += uis.calls - calls_before  # ensure_funnels counted its own points
                    report.points += sync.points
        report.state = "uploaded" if not report.parked else "partial"
    except _SyncProblem as problem:
        # still refused after a sync: an account-wide problem, not one deal's; keep every pending mark
        exc = problem.error
        report.state = "deferred"
        report.error = f"UIS refuses what the deals name ({exc.field}): {exc.message}"
        if resynced:
            store.deals.put_sync(integration.id, "resync", {"at": to_iso(moment), "error": report.error})
        logger.warning(
            "deal upload deferred: uis out of sync",
            extra={"integration_id": integration.id, "code": exc.mnemonic, "field": exc.field},
        )
    except UisError as exc:
        # limit_exceeded after the client's own waiting, transport, auth: keep every pending mark
        report.state = "deferred"
        report.error = exc.message
        logger.warning("deal upload deferred", extra={"integration_id": integration.id, "code": exc.code})
    finally:
        spent = uis.calls - spent_before if spent_before is not None else 0
        if spent:
            day = utc_to_local(moment, integration.timezone).date().isoformat()
            store.integrations.add_points(integration.id, day, spent, purpose="deals")
        report.points += spent
    return report


class _SyncProblem(Exception):
    """UIS refused a row for something the account lacks (a stage, funnel or user field), not for the deal."""

    def __init__(self, error: UisValidationError) -> None:
        super().__init__(error.message)
        self.error = error


def is_sync_problem(error: UisError) -> bool:
    """A refusal naming a row's user field, stage or funnel: what `ensure_funnels` creates, so no deal's fault."""
    return error.mnemonic in _SYNC_MNEMONICS and bool(_SYNC_FIELD.match(error.field or ""))


def _may_resync(store: Store, integration: Integration, moment: datetime) -> bool:
    """No forced sync within `RESYNC_COOLDOWN` of one that did not cure a sync problem."""
    last = store.deals.sync_items(integration.id, ["resync"]).get("resync")
    at = str(last.get("at") or "") if last else ""
    return not at or moment - from_iso(at) >= RESYNC_COOLDOWN


# --- planning ---------------------------------------------------------------------------------------------
def _attach_communications(integration: Integration, deals: list[DealRecord], *, store: Store) -> list[DealRecord]:
    """Give first-sale deals the UIS communication their lead came from, when it was linked after they were built.

    The text worker links a lead it created only once AlfaCRM has answered the create, but AlfaCRM fires the
    Customer webhook during that call: the deal worker may build the deal before the link exists. One batch
    read per flush closes that gap before UIS first sees the deal (the saved deal keeps the link).
    """
    lacking = [d for d in deals if d.funnel == rules.FIRST_SALE and d.communication_id is None]
    if not lacking:
        return deals
    links = store.texts.customer_links(integration.id, [d.customer_id for d in lacking])
    if not links:
        return deals
    lacking_keys = {d.key for d in lacking}
    out = []
    for deal in deals:
        link = links.get(deal.customer_id) if deal.key in lacking_keys else None
        out.append(deal.model_copy(update=link) if link else deal)
    return out


def _unknown_stages(deal: DealRecord, known: dict[str, set[str]]) -> list[str]:
    stages = known.get(deal.funnel, set())
    return [s.stage for s in rules.rows_to_send(deal, force=True) if s.stage not in stages]


def _plan(integration: Integration, deal: DealRecord, *, now: datetime, with_contact: bool) -> _Item:
    # an admin replay marks a fully uploaded deal pending: send its current row again
    force = not rules.needs_upload(deal)
    steps = rules.rows_to_send(deal, force=force)
    rows = rules.upload_rows(deal, steps, tz=integration.timezone, now=now, with_contact=with_contact)
    return _Item(
        deal=deal,
        steps=steps,
        rows=rows,
        merged=rules.history(deal),
        sig=rules.signature(deal),
        contact_sig=deal.contact_sig,
        at=to_iso(now),
    )


def _chunks(items: list[_Item]) -> list[list[_Item]]:
    """≤1000 rows per call; a deal's rows never straddle two calls (they must arrive in order)."""
    chunks: list[list[_Item]] = []
    current: list[_Item] = []
    size = 0
    for item in items:
        rows = item.rows[-MAX_UPLOAD_ROWS:]  # a deal with >1000 new transitions: the latest ones
        item.rows = rows
        if current and size + len(rows) > MAX_UPLOAD_ROWS:
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += len(rows)
    if current:
        chunks.append(current)
    return chunks


# --- contacts --------------------------------------------------------------------------------------------
def _sync_contacts(
    integration: Integration,
    deals: list[DealRecord],
    *,
    store: Store,
    uis: UisClient,
    now: datetime,
    report: FlushReport,
) -> set[str]:
    """Create new and update changed contacts; → contact ext_ids UIS refused (their deals go without one)."""
    customer_ids = sorted({d.customer_id for d in deals})
    if not customer_ids:
        return set()
    snaps = store.deals.get_customers(integration.id, customer_ids)
    contacts = {
        rules.contact_ext_id(cid): rules.contact_payload(
            snap, region=integration.phone_region, tz=integration.timezone, now=now
        )
        for cid, snap in snaps.items()
    }
    missing = {rules.contact_ext_id(c) for c in customer_ids if c not in snaps}
    known = store.deals.contact_hashes(integration.id, contacts)
    new = [c for e, c in contacts.items() if e not in known]
    changed = [c for e, c in contacts.items() if e in known and known[e] != rules.contact_hash(c)]
    refused: set[str] = set(missing)
    synced: dict[str, str] = {}
    queued = {True: new, False: changed}
    moved_once: set[str] = set()
    while queued[True] or queued[False]:
        for create in (True, False):
            pending, queued[create] = queued[create], []
            while pending:
                chunk, pending = pending[:MAX_CONTACTS], pending[MAX_CONTACTS:]
                done, moved, bad = _contacts_call(uis, chunk, create=create)
                synced.update({c["ext_id"]: rules.contact_hash(c) for c in done})
                refused |= bad
                # created earlier (sync state lost) → update them; gone from UIS on update → create them again;
                # once only, so a contact UIS bounces between the two calls ends refused, not in a loop
                for contact in moved:
                    if contact["ext_id"] in moved_once:
                        refused.add(contact["ext_id"])
                    else:
                        moved_once.add(contact["ext_id"])
                        queued[not create].append(contact)
    if synced:
        store.deals.put_contact_hashes(integration.id, synced)
    if refused - missing:
        logger.warning("uis refused contacts", extra={"integration_id": integration.id, "count": len(refused)})
    return refused


def _contacts_call(
    uis: UisClient, contacts: list[dict[str, Any]], *, create: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """Create these contacts in one call (a refused batch is halved until the refused ones are alone: UIS's
    error never says which contact), or update them one call each (`update.deal_contacts` takes one).

    → (sent successfully, to move to the other call, refused ext_ids).
    """
    if not create:
        done, moved, refused = [], [], set()
        for contact in contacts:
            try:
                uis.update_deal_contact(contact)
                done.append(contact)
            except UisValidationError as exc:
                if exc.mnemonic == "entity_not_found" and str(exc.field or "") == "ext_id":
                    moved.append(contact)  # gone from UIS: create it again
                else:
                    refused.add(contact["ext_id"])
        return done, moved, refused
    try:
        uis.create_deal_contacts(contacts)
        return contacts, [], set()
    except UisValidationError as exc:
        if len(contacts) > 1:
            middle = len(contacts) // 2
            first, second = (
                _contacts_call(uis, contacts[:middle], create=True),
                _contacts_call(uis, contacts[middle:], create=True),
            )
            return first[0] + second[0], first[1] + second[1], first[2] | second[2]
        if exc.mnemonic == "duplicate_entity" and str(exc.field or "").endswith("ext_id"):
            return [], contacts, set()  # created earlier (sync state lost): update it
        return [], [], {contacts[0]["ext_id"]}


# --- upload ---------------------------------------------------------------------------------------------
def _send(integration: Integration, items: list[_Item], *, store: Store, uis: UisClient, report: FlushReport) -> None:
    """Upload these deals' rows in one call; on a validation error halve until the culprit is alone, park it,
    and send the rest."""
    if not items:
        return
    rows = [row for item in items for row in item.rows]
    try:
        uis.upload_deals_history(rows)
    except UisValidationError as exc:
        if is_sync_problem(exc):
            raise _SyncProblem(exc) from exc
        if len(items) > 1:
            # UIS never says which row: halve until the bad deal is alone
            middle = len(items) // 2
            _send(integration, items[:middle], store=store, uis=uis, report=report)
            _send(integration, items[middle:], store=store, uis=uis, report=report)
            return
        culprit = items[0]
        _park(store, integration, culprit.deal, exc.message, exc.mnemonic or exc.code)
        culprit.done = True
        report.parked.append(f"{culprit.deal.funnel}#{culprit.deal.ext_id}")
        return
    for item in items:
        _mark_uploaded(store, integration, item)
        item.done = True
    report.uploaded += len(items)


def _mark_uploaded(store: Store, integration: Integration, item: _Item) -> None:
    """Record what UIS now has; stay pending if the deal changed since it was read (conditional write).

    The worker deletes an upsell deal UIS never received when its payment stops being an upsell; if that
    happened while this upload carried the deal, UIS has it now: it is kept and taken to "cancelled".
    """

    def step(attempt: int) -> bool:
        deal, gone = item.deal, False
        if attempt:
            fresh = store.deals.get_deal(integration.id, item.deal.funnel, item.deal.ext_id)
            if fresh is None and item.deal.funnel != rules.UPSELL:
                return False
            gone, deal = fresh is None, fresh or item.deal
        updated = deal.model_copy(
            update={
                "uploaded": list(item.merged),
                "uploaded_sig": item.sig,
                "uploaded_contact_sig": item.contact_sig,
                "upload_error": None,
            }
        )
        updated.upload_state = "pending" if rules.needs_upload(updated) else "uploaded"
        if gone:
            _, updated = rules.orphan(updated, at=item.at or updated.modified_at)
            updated.version = 0  # re-created: only if the worker has not written it again meanwhile
        store.deals.save_deal(integration.id, updated)
        return True

    key = f"{item.deal.funnel}#{item.deal.ext_id}"
    if not on_conflict(step, attempts=WRITE_ATTEMPTS, what=f"deal {key} (marked uploaded)"):
        return
    if item.deal.upload_error is not None:
        store.integrations.unpark(integration.id, "deal", key)


def _park(store: Store, integration: Integration, deal: DealRecord, error: str, code: str) -> None:
    """The deal leaves the upload queue with UIS's message, visible and replayable (`mark_pending`)."""

    def step(attempt: int) -> bool:
        read = store.deals.get_deal(integration.id, deal.funnel, deal.ext_id) if attempt else deal
        if read is None:
            return False
        store.deals.save_deal(integration.id, read.model_copy(update={"upload_state": "parked", "upload_error": error}))
        return True

    if not on_conflict(step, attempts=WRITE_ATTEMPTS, what=f"deal {deal.funnel}#{deal.ext_id} (parked)"):
        return
    key = f"{deal.funnel}#{deal.ext_id}"
    store.integrations.park(
        integration.id, "deal", key, payload={"funnel": deal.funnel, "ext_id": deal.ext_id}, error=error, code=code
    )
    logger.warning("deal parked", extra={"integration_id": integration.id, "deal": key, "code": code})
