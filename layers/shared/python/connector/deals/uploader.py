"""The deal uploader's use case: flush each integration's pending deals to UIS in as few calls as possible.

Per integration with pending deals:
1. `ensure_funnels` (a DynamoDB read when nothing changed); a deal naming a stage UIS does not know forces
   one real sync (a status added in AlfaCRM a minute ago), and is parked if the stage is still unknown;
2. contacts: ONE `create.deal_contacts` for new ones and ONE `update.deal_contacts` for changed ones
   (a hash per contact in `UIS#contact#<ext_id>` tells which);
3. ONE `upload.deals_history` per ≤1000 rows, carrying per deal only the transitions UIS lacks (or the
   current stage again, same stage time, for a change that does not move the stage).
UIS takes a call all or nothing: a validation error parks only the offending deal (the row the error
names, or found by bisection) and the rest is sent again. An error about what the *account* lacks — a row's
user field, stage or funnel "not found" (or refused) in UIS, e.g. deleted in the cabinet — is not the
deal's fault and would park deal after deal: it forces one `ensure_funnels` sync (re-creating missing
stages and fields) and the batch is sent again; if UIS still refuses it, the flush is deferred with every
pending mark kept (and no forced sync again for `RESYNC_COOLDOWN`, so a problem only a person can fix does
not spend the day's points). `limit_exceeded` (beyond what the client waits
out) and transport errors stop the integration's flush and leave every pending mark for the next run.
After a successful call each deal records what UIS now has; its pending mark is cleared only if the deal
did not change meanwhile (conditional write), so a change made during the upload is uploaded next time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connector.deals import drafts
from connector.deals.funnels import ensure_funnels
from connector.errors import ConnectorError, UisError, UisValidationError
from connector.models.deals import FIRST_SALE, UPSELL, DealRecord, DealRef, Step, contact_ext_id
from connector.models.events import EventOutcome
from connector.models.parked import ParkedItem
from connector.models.raw import JsonObject
from connector.models.sync import ResyncMark
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.store.base import on_conflict
from connector.timeutil import from_iso, to_iso
from connector.uis import deal_rows
from connector.uis.client import MAX_CONTACTS, MAX_UPLOAD_ROWS, UisClient, failed_row_index
from connector.uis.points import UisPoints

WRITE_ATTEMPTS = 6
MAX_PENDING_PER_FLUSH = 5000  # bounds one invocation; the rest waits for the next minute
RESYNC_COOLDOWN = timedelta(minutes=15)  # after a forced sync that did not help, defer without forcing again
# a row field that names something of the account (UIS#funnel#…, UIS#field#…), with or without `deals[i].`
_SYNC_FIELD = re.compile(r"^(?:deals\[\d+\]\.)?(?:user_fields|stage_ext_id|sales_funnel_ext_id)\b")
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
    """One deal's part of a flush: the rows to send and what the deal records once UIS has them."""

    deal: DealRecord
    steps: list[Step]
    rows: list[JsonObject]
    merged: list[Step]
    sig: str
    contact_sig: str | None = None
    at: str = ""  # the flush's moment (UTC ISO)
    done: bool = False  # uploaded or parked by this flush


def flush_all(rt: Runtime, *, integration_id: str | None = None) -> list[FlushReport]:
    """Flush every active integration with deals enabled (or just `integration_id`, on demand)."""
    if integration_id:
        found = rt.store.integrations.get(integration_id, fresh=True)
        integrations = [found] if found else []
    else:
        integrations = rt.store.integrations.list_active()
    reports = []
    for integration in integrations:
        if not integration.active or not integration.settings.deals.enabled:
            continue
        try:
            reports.append(flush_integration(rt, integration))
        except ConnectorError as exc:
            # one integration's broken credentials or UIS outage must not hold up the others
            logger.warning("deal flush failed", extra={"integration_id": integration.id, "code": exc.code})
            reports.append(FlushReport(integration.id, state="deferred", error=exc.message))
    return reports


def flush_integration(rt: Runtime, integration: Integration) -> FlushReport:
    """prepare → sync contacts → send chunks (one forced funnel sync on a sync problem) → report."""
    report = FlushReport(integration.id)
    deals = _pending(rt, integration)
    owed = integration.funnel_sync is not None and integration.funnel_sync.due(rt.now())
    if not deals and not owed:
        return report
    with rt.uis_points(integration, "deals") as uis:
        flush = _Flush(rt, integration, uis, rt.now(), report)
        try:
            if owed:
                flush.retry_funnel_sync()
            if not deals:
                return report
            ready = flush.prepare(deals)
            items = flush.plan(ready, without_contact=flush.sync_contacts(ready))
            flush.send_chunks(items)
            report.state = "uploaded" if not report.parked else "partial"
        except _SyncProblem as problem:
            flush.defer_out_of_sync(problem.error)
        except UisError as exc:
            # limit_exceeded after the client's own waiting, transport, auth: keep every pending mark
            flush.defer(exc)
            rt.events.failed(integration.id, exc)
        except ConnectorError as exc:
            rt.events.failed(integration.id, exc)
            _record(rt, report, "failed", exc.message)
            raise
        finally:
            report.points = uis.spent
    _record_flush(rt, report)
    return report


def _record_flush(rt: Runtime, report: FlushReport) -> None:
    """The flush in the school's execution log (an idle one is not: it runs every minute)."""
    if report.state == "deferred":
        _record(rt, report, "failed", report.error or "deferred")
    elif report.state in ("uploaded", "partial"):
        reason = f"{report.uploaded} of {report.deals} deals uploaded ({report.rows} rows, {report.points} UIS points)"
        _record(rt, report, "done", reason + (f"; {len(report.parked)} parked" if report.parked else ""))
        rt.events.seen(report.integration_id, "upload_at")
        rt.events.credential(report.integration_id, "uis", ok=True)


def _record(rt: Runtime, report: FlushReport, outcome: EventOutcome, reason: str) -> None:
    rt.events.record(
        report.integration_id,
        source="uploader",
        kind="upload",
        key=f"{report.deals} deals",
        outcome=outcome,
        reason=reason,
    )


def _pending(rt: Runtime, integration: Integration) -> list[DealRecord]:
    keys = rt.store.deals.pending_keys(integration.id, limit=MAX_PENDING_PER_FLUSH)
    if not keys:
        return []
    # the GSI is eventually consistent: read the deals themselves before deciding what UIS lacks
    return [d for d in rt.store.deals.get_deals(integration.id, keys).values() if d.upload_state == "pending"]


class _SyncProblem(Exception):
    """UIS refused a row for something the account lacks (a stage, funnel or user field), not for the deal."""

    def __init__(self, error: UisValidationError) -> None:
        super().__init__(error.message)
        self.error = error


def is_sync_problem(error: UisError) -> bool:
    """A refusal naming a row's user field, stage or funnel: what `ensure_funnels` creates, so no deal's fault."""
    return error.mnemonic in _SYNC_MNEMONICS and bool(_SYNC_FIELD.match(error.field or ""))


class _Flush:
    """One integration's flush: the runtime, metered UIS access, the flush's moment and its report."""

    def __init__(
        self, rt: Runtime, integration: Integration, uis: UisPoints, moment: datetime, report: FlushReport
    ) -> None:
        self.rt = rt
        self.integration = integration
        self.uis = uis
        self.moment = moment
        self.report = report
        self.resynced = False

    def retry_funnel_sync(self) -> None:
        """The funnel sync a settings save owes UIS (`integration.funnel_sync`): forced, as the save's was; a
        failure backs the next try off and stops this flush (its deals wait with their pending marks)."""
        pending = self.integration.funnel_sync
        assert pending is not None
        try:
            ensure_funnels(self.rt, self.integration, force=True, points=self.uis)
        except ConnectorError as exc:
            again = pending.failed_again(self.moment, exc.message)
            self.rt.store.integrations.set_funnel_sync(self.integration.id, again)
            raise

    # --- prepare ------------------------------------------------------------------------------------
    def prepare(self, deals: list[DealRecord]) -> list[DealRecord]:
        """Funnels in sync (one forced sync when a deal names a stage UIS lacks: a status added a minute ago);
        deals whose stage is still unknown are parked; late communication links are attached."""
        sync = ensure_funnels(self.rt, self.integration, points=self.uis)
        if any(_unknown_stages(d, sync.known) for d in deals):
            sync = ensure_funnels(self.rt, self.integration, force=True, points=self.uis)
        ready: list[DealRecord] = []
        for deal in deals:
            unknown = _unknown_stages(deal, sync.known)
            if unknown:
                self._park(deal, f"stage {unknown[0]} is not in UIS funnel {deal.funnel}", "unknown_stage")
            else:
                ready.append(deal)
        return self._attach_communications(ready)

    def _attach_communications(self, deals: list[DealRecord]) -> list[DealRecord]:
        """Give first-sale deals the UIS communication their lead came from, when it was linked after they
        were built.

        The text worker links a lead it created only once AlfaCRM has answered the create, but AlfaCRM fires
        the Customer webhook during that call: the deal worker may build the deal before the link exists.
        One batch read per flush closes that gap before UIS first sees the deal (the saved deal keeps it).
        """
        lacking = {d.key: d.customer_id for d in deals if d.funnel == FIRST_SALE and d.communication_id is None}
        if not lacking:
            return deals
        links = self.rt.store.texts.customer_links(self.integration.id, list(lacking.values()))
        out = []
        for deal in deals:
            link = links.get(deal.customer_id) if deal.key in lacking else None
            out.append(deal.model_copy(update=link.model_dump()) if link else deal)
        return out

    # --- contacts ---------------------------------------------------------------------------------------
    def sync_contacts(self, deals: list[DealRecord]) -> set[str]:
        """Create new and update changed contacts; → contact ext_ids UIS refused (their deals go without one)."""
        return _sync_contacts(self.rt, self.integration, deals, uis=self.uis.client, now=self.moment)

    # --- plan and send -----------------------------------------------------------------------------------
    def plan(self, deals: list[DealRecord], *, without_contact: set[str]) -> list[_Item]:
        items = [
            _plan(self.integration, d, now=self.moment, with_contact=d.contact_ext_id not in without_contact)
            for d in deals
        ]
        for item in items:
            if not item.rows:
                # only the contact changed (phones, e-mails): synced above, the deal's rows are as UIS has them
                self._mark_uploaded(item)
        items = [i for i in items if i.rows]
        self.report.deals = len(items)
        self.report.rows = sum(len(i.rows) for i in items)
        return items

    def send_chunks(self, items: list[_Item]) -> None:
        for chunk in _chunks(items):
            while True:
                try:
                    self._send([i for i in chunk if not i.done])
                    break
                except _SyncProblem:
                    if self.resynced or not self._may_resync():
                        raise
                    # UIS lacks a stage, funnel or user field a row names (deleted in the cabinet?): sync, resend
                    self.resynced = True
                    ensure_funnels(self.rt, self.integration, force=True, points=self.uis)

    def _may_resync(self) -> bool:
        """No forced sync within `RESYNC_COOLDOWN` of one that did not cure a sync problem."""
        last = self.rt.store.deals.resync_mark(self.integration.id)
        return last is None or not last.at or self.moment - from_iso(last.at) >= RESYNC_COOLDOWN

    def _send(self, items: list[_Item]) -> None:
        """Upload these deals' rows in one call; on a validation error park the culprit and send the rest."""
        while items:
            try:
                self.uis.client.upload_deals_history([row for item in items for row in item.rows])
            except UisValidationError as exc:
                if is_sync_problem(exc):
                    raise _SyncProblem(exc) from exc
                index = failed_row_index(exc)
                culprit = _owner(items, index) if index is not None else None
                if culprit is None and len(items) == 1:
                    culprit = items[0]
                if culprit is None:
                    # UIS did not say which row: halve until the bad deal is alone
                    middle = len(items) // 2
                    self._send(items[:middle])
                    self._send(items[middle:])
                    return
                self._park(culprit.deal, exc.message, exc.mnemonic or exc.code)
                culprit.done = True
                items = [i for i in items if i is not culprit]
                continue
            for item in items:
                self._mark_uploaded(item)
                item.done = True
            self.report.uploaded += len(items)
            return

    # --- report --------------------------------------------------------------------------------------------
    def defer_out_of_sync(self, exc: UisValidationError) -> None:
        """Still refused after a sync: an account-wide problem, not one deal's; every pending mark is kept."""
        self.report.state = "deferred"
        self.report.error = f"UIS refuses what the deals name ({exc.field}): {exc.message}"
        if self.resynced:
            mark = ResyncMark(at=to_iso(self.moment), error=self.report.error)
            self.rt.store.deals.put_resync_mark(self.integration.id, mark)
        logger.warning(
            "deal upload deferred: uis out of sync",
            extra={"integration_id": self.integration.id, "code": exc.mnemonic, "field": exc.field},
        )

    def defer(self, exc: UisError) -> None:
        self.report.state = "deferred"
        self.report.error = exc.message
        logger.warning("deal upload deferred", extra={"integration_id": self.integration.id, "code": exc.code})

    def _mark_uploaded(self, item: _Item) -> None:
        _mark_uploaded(self.rt, self.integration, item)

    def _park(self, deal: DealRecord, error: str, code: str) -> None:
        _park(self.rt, self.integration, deal, error, code)
        self.report.parked.append(f"{deal.funnel}#{deal.ext_id}")


# --- planning ---------------------------------------------------------------------------------------------
def _unknown_stages(deal: DealRecord, known: dict[str, set[str]]) -> list[str]:
    stages = known.get(deal.funnel, set())
    return [s.stage for s in drafts.rows_to_send(deal, force=True) if s.stage not in stages]


def _plan(integration: Integration, deal: DealRecord, *, now: datetime, with_contact: bool) -> _Item:
    # an admin replay marks a fully uploaded deal pending: send its current row again
    force = not drafts.needs_upload(deal)
    steps = drafts.rows_to_send(deal, force=force)
    rows = deal_rows.upload_rows(deal, steps, tz=integration.timezone, now=now, with_contact=with_contact)
    return _Item(
        deal=deal,
        steps=steps,
        rows=rows,
        merged=drafts.history(deal),
        sig=drafts.signature(deal),
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


def _owner(items: list[_Item], row_index: int) -> _Item | None:
    seen = 0
    for item in items:
        seen += len(item.rows)
        if row_index < seen:
            return item
    return None


# --- contacts --------------------------------------------------------------------------------------------
def _sync_contacts(
    rt: Runtime, integration: Integration, deals: list[DealRecord], *, uis: UisClient, now: datetime
) -> set[str]:
    """Create new and update changed contacts; → contact ext_ids UIS refused (their deals go without one)."""
    customer_ids = sorted({d.customer_id for d in deals})
    if not customer_ids:
        return set()
    snaps = rt.store.deals.get_customers(integration.id, customer_ids)
    contacts = {
        contact_ext_id(cid): deal_rows.contact_payload(
            snap, region=integration.phone_region, tz=integration.timezone, now=now
        )
        for cid, snap in snaps.items()
    }
    missing = {contact_ext_id(c) for c in customer_ids if c not in snaps}
    known = rt.store.deals.contact_hashes(integration.id, contacts)
    new = [c for e, c in contacts.items() if e not in known]
    changed = [c for e, c in contacts.items() if e in known and known[e] != deal_rows.contact_hash(c)]
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
                synced.update({str(c["ext_id"]): deal_rows.contact_hash(c) for c in done})
                refused |= bad
                # created earlier (sync state lost) → update them; gone from UIS on update → create them again;
                # once only, so a contact UIS bounces between the two calls ends refused, not in a loop
                for contact in moved:
                    ext_id = str(contact["ext_id"])
                    if ext_id in moved_once:
                        refused.add(ext_id)
                    else:
                        moved_once.add(ext_id)
                        queued[not create].append(contact)
    if synced:
        rt.store.deals.put_contact_hashes(integration.id, synced)
    if refused - missing:
        logger.warning("uis refused contacts", extra={"integration_id": integration.id, "count": len(refused)})
    return refused


def _contacts_call(
    uis: UisClient, contacts: list[JsonObject], *, create: bool
) -> tuple[list[JsonObject], list[JsonObject], set[str]]:
    """One create/update call, dropping what UIS names as bad and retrying the rest.

    → (sent successfully, to move to the other call, refused ext_ids).
    """
    moved: list[JsonObject] = []
    refused: set[str] = set()
    remaining = list(contacts)
    while remaining:
        try:
            if create:
                uis.create_deal_contacts(remaining)
            else:
                uis.update_deal_contacts(remaining)
            return remaining, moved, refused
        except UisValidationError as exc:
            index = _contact_index(exc)
            if index is None or index >= len(remaining):
                # no contact named: send none of them rather than guess; their deals go without a contact
                return [], moved, refused | {str(c["ext_id"]) for c in remaining}
            bad = remaining.pop(index)
            wrong_call = exc.mnemonic == ("duplicate_entity" if create else "entity_not_found")
            if wrong_call and str(exc.field or "").endswith(".ext_id"):
                moved.append(bad)
            else:
                refused.add(str(bad["ext_id"]))
    return [], moved, refused


def _contact_index(exc: UisError) -> int | None:
    text = exc.field or ""
    if not text.startswith("contacts["):
        return None
    try:
        return int(text[len("contacts[") : text.index("]")])
    except ValueError:
        return None


# --- recording what UIS has ----------------------------------------------------------------------------
def _mark_uploaded(rt: Runtime, integration: Integration, item: _Item) -> None:
    """Record what UIS now has; stay pending if the deal changed since it was read (conditional write).

    The worker deletes an upsell deal UIS never received when its payment stops being an upsell; if that
    happened while this upload carried the deal, UIS has it now: it is kept and taken to "cancelled".
    """

    def step(attempt: int) -> bool:
        deal, gone = item.deal, False
        if attempt:
            fresh = rt.store.deals.get_deal(integration.id, item.deal.funnel, item.deal.ext_id)
            if fresh is None and item.deal.funnel != UPSELL:
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
        updated.upload_state = "pending" if drafts.needs_upload(updated) else "uploaded"
        if gone:
            _, updated = drafts.orphan(updated, at=item.at or updated.modified_at)
            updated.version = 0  # re-created: only if the worker has not written it again meanwhile
        rt.store.deals.save_deal(integration.id, updated)
        return True

    key = f"{item.deal.funnel}#{item.deal.ext_id}"
    if not on_conflict(step, attempts=WRITE_ATTEMPTS, what=f"deal {key} (marked uploaded)"):
        return
    if item.deal.upload_error is not None:
        rt.store.integrations.unpark(integration.id, "deal", key)


def _park(rt: Runtime, integration: Integration, deal: DealRecord, error: str, code: str) -> None:
    """The deal leaves the upload queue with UIS's message, visible and replayable (`mark_pending`)."""

    def step(attempt: int) -> bool:
        read = rt.store.deals.get_deal(integration.id, deal.funnel, deal.ext_id) if attempt else deal
        if read is None:
            return False
        parked = read.model_copy(update={"upload_state": "parked", "upload_error": error})
        rt.store.deals.save_deal(integration.id, parked)
        return True

    if not on_conflict(step, attempts=WRITE_ATTEMPTS, what=f"deal {deal.funnel}#{deal.ext_id} (parked)"):
        return
    key = f"{deal.funnel}#{deal.ext_id}"
    payload = DealRef(funnel=deal.funnel, ext_id=deal.ext_id).model_dump(mode="json")
    rt.store.integrations.park(
        integration.id, ParkedItem(kind="deal", key=key, payload=payload, error=error, code=code)
    )
    logger.warning("deal parked", extra={"integration_id": integration.id, "deal": key, "code": code})
    rt.events.record(integration.id, source="uploader", kind="deal", key=key, outcome="parked", reason=error)
