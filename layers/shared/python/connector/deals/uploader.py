"""The deal uploader's use case: flush one integration's pending deals to UIS in as few calls as possible.

`flush_integration` is the per-school unit of work of the fan-out's `upload` job (`connector.fanout`: a tick
sends one work item per integration with pending deals; the uploader function runs them in parallel, one at
a time per integration). Per integration with pending deals:
1. `ensure_funnels` (a DynamoDB read when nothing changed); a deal naming a stage UIS does not know forces
   one real sync (a status added in AlfaCRM a minute ago), and is parked if the stage is still unknown;
2. the contacts and managers the rows name (`connector.deals.people`): ONE `create.deal_contacts` for new
   contacts, one `update.deal_contacts` per changed one, one `create.deal_employees` per manager UIS lacks;
3. ONE `upload.deals_history` per ≤1000 rows, carrying per deal only the transitions UIS lacks (or the
   current stage again, same stage time, for a change that does not move the stage).
UIS takes a call all or nothing and its error names a field, never a row or contact (`deals.stage_ext_id`):
a validation error parks only the offending deal, found by bisection (refused calls cost no points), and the
rest is sent again. A contact UIS refuses keeps its deal pending with UIS's message (the deal's rows go
without it when UIS has none) and parks the deal after a few flushes (`connector.deals.marks`). A deal
refused as "created in the future" (UIS's clock or zone behind the school's) waits `RETRY_LATER` and is
sent again, not parked. An upload whose answer was lost (5xx, timeout) marks its deals in doubt: the next
flush reads back what UIS holds (`connector.deals.readback`) before sending anything. An error about what the
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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from connector.deals import drafts, marks, people
from connector.deals.funnels import ensure_funnels
from connector.deals.readback import settle_doubts
from connector.errors import ConnectorError, UisError, UisUnavailable, UisValidationError
from connector.fanout import NEXT_TICK, Next, RemainingMs
from connector.models.deals import FIRST_SALE, DealRecord, SentUpload, Step
from connector.models.events import EventOutcome
from connector.models.raw import JsonObject, JsonValue
from connector.models.sync import ResyncMark
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.timeutil import from_iso, to_iso
from connector.uis import deal_rows
from connector.uis.client import MAX_UPLOAD_ROWS
from connector.uis.points import UisPoints

MAX_PENDING_PER_FLUSH = 5000  # bounds one invocation; the rest waits for the next minute
RESYNC_COOLDOWN = timedelta(minutes=15)  # after a forced sync that did not help, defer without forcing again
# a deal UIS refuses as created "in the future" is sent again after this long; one created this long ago is
# parked instead (no zone or clock difference is that large: UIS refuses it for another reason)
RETRY_LATER = timedelta(minutes=10)
TOO_EARLY_FOR = timedelta(hours=26)
# a row field that names something of the account (UIS#funnel#…, UIS#field#…, UIS#employee#…), with or
# without `deals[i].`; UIS names nested parameters with dots and no index (`deals.user_fields.ext_id`)
_SYNC_FIELD = re.compile(r"^(?:deals(?:\[\d+\])?\.)?(?:user_fields|stage_ext_id|sales_funnel_ext_id|employee_ext_id)\b")
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
    sent: SentUpload
    done: bool = False  # uploaded, parked or postponed by this flush


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
            contacts = people.sync_contacts(rt, integration, ready, uis=uis.client, now=flush.moment)
            flush.employees = people.sync_employees(rt, integration, ready, uis=uis.client)
            flush.send_chunks(flush.plan(ready, contacts))
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
    now = rt.now()
    return [
        d
        for d in rt.store.deals.get_deals(integration.id, keys).values()
        if d.upload_state == "pending" and not (d.retry_at and from_iso(d.retry_at) > now)
    ]


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
        self.employees: set[str] = set()  # the deal employees UIS has (rows name only these)

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
        """Uploads in doubt settled (read back); funnels in sync (one forced sync when a deal names a stage UIS
        lacks: a status added a minute ago); deals whose stage is still unknown are parked; late communication
        links are attached."""
        deals = settle_doubts(self.rt, self.integration, deals, self.uis.client)
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

    # --- plan and send -----------------------------------------------------------------------------------
    def plan(self, deals: list[DealRecord], contacts: people.ContactSync) -> list[_Item]:
        employees = self.employees
        items = [_plan(self.integration, d, now=self.moment, contacts=contacts, employees=employees) for d in deals]
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
                except _SyncProblem as problem:
                    if self.resynced or not self._may_resync():
                        raise
                    # UIS lacks a stage, funnel, user field or employee a row names (deleted in the cabinet?):
                    # sync, resend
                    self.resynced = True
                    ensure_funnels(self.rt, self.integration, force=True, points=self.uis)
                    if "employee_ext_id" in (problem.error.field or ""):
                        deals = [i.deal for i in chunk]
                        people.sync_employees(self.rt, self.integration, deals, uis=self.uis.client, again=True)

    def _may_resync(self) -> bool:
        """No forced sync within `RESYNC_COOLDOWN` of one that did not cure a sync problem."""
        last = self.rt.store.deals.resync_mark(self.integration.id)
        return last is None or not last.at or self.moment - from_iso(last.at) >= RESYNC_COOLDOWN

    def _send(self, items: list[_Item]) -> None:
        """Upload these deals' rows in one call; on a validation error halve until the culprit is alone, park it,
        and send the rest."""
        if not items:
            return
        try:
            self.uis.client.upload_deals_history([row for item in items for row in item.rows])
        except UisUnavailable as exc:
            if exc.ambiguous:
                # sent, answer lost: UIS may hold these rows; the next flush reads back before sending again
                for item in items:
                    marks.mark_in_doubt(self.rt, self.integration, item.deal, item.sent)
            raise
        except UisValidationError as exc:
            if is_sync_problem(exc):
                raise _SyncProblem(exc) from exc
            if len(items) > 1:
                # UIS never says which row: halve until the bad deal is alone
                middle = len(items) // 2
                self._send(items[:middle])
                self._send(items[middle:])
                return
            culprit = items[0]
            culprit.done = True
            if _too_early(exc) and from_iso(culprit.deal.created_at) > self.moment - TOO_EARLY_FOR:
                until = to_iso(self.moment + RETRY_LATER)
                marks.retry_later(self.rt, self.integration, culprit.deal, exc.message, until)
            else:
                self._park(culprit.deal, exc.message, exc.mnemonic or exc.code)
            return
        for item in items:
            self._mark_uploaded(item)
            item.done = True
        self.report.uploaded += len(items)

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
        marks.mark_uploaded(self.rt, self.integration, item.deal, item.sent)

    def _park(self, deal: DealRecord, error: str, code: str) -> None:
        marks.park(self.rt, self.integration, deal, error, code)
        self.report.parked.append(f"{deal.funnel}#{deal.ext_id}")


# --- planning ---------------------------------------------------------------------------------------------
def _unknown_stages(deal: DealRecord, known: dict[str, set[str]]) -> list[str]:
    stages = known.get(deal.funnel, set())
    return [s.stage for s in drafts.rows_to_send(deal, force=True) if s.stage not in stages]


def _too_early(exc: UisValidationError) -> bool:
    """UIS refuses a deal whose creation time is "in the future" to its clock (upload_deals_history: not in the
    future, in UIS's undocumented zone): the school's zone or clock runs ahead of UIS's, not the deal's fault."""
    return exc.mnemonic == "invalid_parameter_value" and (exc.field or "").endswith("created_date_time")


def _plan(
    integration: Integration,
    deal: DealRecord,
    *,
    now: datetime,
    contacts: people.ContactSync,
    employees: set[str],
) -> _Item:
    # an admin replay marks a fully uploaded deal pending: send its current row again
    force = not drafts.needs_upload(deal)
    steps = drafts.rows_to_send(deal, force=force)
    with_contact = deal.contact_ext_id not in contacts.absent
    rows = deal_rows.upload_rows(
        deal,
        steps,
        tz=integration.uis_timezone,
        now=now,
        with_contact=with_contact,
        with_employee=deal.employee_ext_id in employees,
    )
    last: JsonObject = rows[-1] if rows else {}
    sent = SentUpload(
        uploaded=drafts.history(deal),
        sig=drafts.signature(deal, with_contact=with_contact),
        contact_sig=deal.contact_sig,
        contact_error=contacts.refused.get(deal.contact_ext_id),
        at=to_iso(now),
        stage=_text(last.get("stage_ext_id")),
        stage_time=_text(last.get("modified_stage_date_time")),
    )
    return _Item(deal=deal, steps=steps, rows=rows, sent=sent)


def _text(value: JsonValue) -> str | None:
    return None if value is None else str(value)


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


# --- the fan-out's upload job -----------------------------------------------------------------------------
def upload_job(rt: Runtime, integration: Integration, remaining_ms: RemainingMs) -> Next:
    """The `upload` job's run for one school (`connector.fanout`): a flush, then when to look again."""
    if not integration.active or not integration.settings.deals.enabled:
        return Next(None)
    owed = integration.funnel_sync  # a settings save's funnel sync UIS did not take: the uploader retries it
    owed_later = owed is not None and not owed.due(rt.now())
    report = flush_integration(rt, integration)
    detail: JsonObject = asdict(report)
    if report.state == "deferred":
        return Next(None, detail, failed=report.error or "upload deferred")
    if owed is not None and owed_later:
        return Next(max(owed.retry_at, rt.now() + NEXT_TICK), detail)  # not retried yet: its own time is next
    checked_at = rt.store.work.clock()
    if rt.store.deals.pending_keys(integration.id, limit=1):
        return Next(rt.now() + NEXT_TICK, detail)  # more than a flush takes, or changed meanwhile: the next tick
    if rt.store.work.settle(integration.id, "upload", checked_at=checked_at):
        return Next(None, detail, kept=True)
    # a deal was marked pending just now (maybe not in the GSI yet): the next tick looks again (a real due
    # time, not the mark's "at once": a new due time is a new deduplication id, so SQS does not drop it)
    return Next(rt.now() + NEXT_TICK, detail)
