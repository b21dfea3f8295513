"""The scheduled jobs, per school: a tick finds the schools with work, one work item per school, workers in
parallel (docs/internals.md, "Fan-out per school").

1. **Tick** (`tick`, the scheduler function, once per schedule): one query of the job's work index (the
   probe, `store.work.due` without a shard) reads the entries due now; up to `PAGE_SIZE` of them become one
   `SchoolWork` per school on the job's FIFO queue. When more are due, the tick hands every shard on at once
   (one `ShardPage` each, in its own message group) and the job's workers read the shards in parallel, each
   sending its page of schools and handing its own rest on (`dispatch`). A tick reads only due entries: an
   idle school, or one whose next run is later, costs nothing but its share of the one query.
2. **Worker** (`handle_work`, the job's function on its queue; the queue's message group is the school, so a
   school's job runs one at a time while schools run in parallel): the unit of work of the job for that one
   school — `flush_integration`, `ChatPoller.poll`, `reconcile_integration`, a backfill chunk, each run by the
   job's `Runner` beside its use case (`deals.uploader.upload_job`, `texts.poller.poll_job`,
   `deals.reconcile.reconcile_job`, `deals.backfill.backfill_job`), which the job's handler hands in, so a
   function loads only its own pipeline — then the entry's next due time: the job's own schedule, or, after a
   failure, a backoff that doubles with every consecutive failure (`backoff`), so a failing school waits on
   its own schedule and never crowds the others.
3. **Enrolment** (`enrol`, the admin's activate / settings writes): the poll and reconcile entries an
   integration needs; upload entries come with deals marked pending (`DealStore.save_deal`), backfill
   entries with `deals.backfill_state.start`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connector.models.raw import JsonObject
from connector.models.work import Job, SchoolWork, ShardPage, WorkEntry
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration, needs_polling
from connector.store.work import SHARDS
from connector.timeutil import from_iso, to_iso

PAGE_SIZE = 100  # schools the tick's probe sends itself (ten SendMessageBatch calls, sent at once)
SHARD_PAGE_SIZE = 200  # schools one shard page sends (~80 per shard at 10,000 due: one page each)
RECONCILE_EVERY = timedelta(hours=1)
BUDGET_WAIT = timedelta(minutes=15)  # the UIS day budget (or the poller's allowance) is spent for now
# a backfill chunk runs within the reconciler's timeout (300 s); a chain broken by a crash resumes after this
BACKFILL_LEASE = timedelta(minutes=10)
POLL_SLACK = timedelta(seconds=45)
# "at the next tick": past the tick's own second, so the shard pages this tick still reads do not take it again
NEXT_TICK = timedelta(seconds=1)  # EventBridge fires a little early or late (the poller's own slack)

# (first wait, longest wait) after consecutive failures: the first doubles per failure up to the longest
BACKOFF: dict[Job, tuple[timedelta, timedelta]] = {
    "upload": (timedelta(minutes=1), timedelta(hours=1)),
    "poll": (timedelta(minutes=5), timedelta(hours=1)),
    "reconcile": (timedelta(minutes=10), timedelta(hours=6)),
    "backfill": (timedelta(minutes=1), timedelta(hours=1)),
}

RemainingMs = Callable[[], int]


def backoff(job: Job, failures: int) -> timedelta:
    """How long a school waits after its `failures`-th consecutive failure of `job`."""
    first, longest = BACKOFF[job]
    return min(first * (2 ** max(failures - 1, 0)), longest)


# --- the tick ---------------------------------------------------------------------------------------------
@dataclass
class TickReport:
    job: Job
    until: str
    schools: int = 0  # work items sent by the tick itself
    handed_on: int = 0  # shards whose rest went on as a ShardPage


def tick(rt: Runtime, job: Job, *, at: datetime) -> TickReport:
    """One schedule's run: one probe of the due entries; its schools sent, or, when more are due than a page,
    every shard handed on at once (what the probe read is left to the shards, which read it again)."""
    report = TickReport(job, to_iso(at))
    entries, more = rt.store.work.due(job, None, until=report.until, limit=PAGE_SIZE)
    if more is None:
        report.schools = _send_schools(rt, job, entries, [])
        return report
    pages: list[SchoolWork | ShardPage] = [ShardPage(job=job, shard=s, until=report.until) for s in range(SHARDS)]
    rt.queues.send_work(job, pages)
    report.handed_on = len(pages)
    return report


def dispatch(rt: Runtime, page: ShardPage) -> tuple[int, bool]:
    """Send one page of a shard's due schools (and the shard's next page, if any); → (schools, handed on)."""
    entries, start = rt.store.work.due(page.job, page.shard, until=page.until, limit=SHARD_PAGE_SIZE, start=page.start)
    rest: list[SchoolWork | ShardPage] = [] if start is None else [page.model_copy(update={"start": start})]
    return _send_schools(rt, page.job, entries, rest), start is not None


def _send_schools(rt: Runtime, job: Job, entries: list[WorkEntry], rest: list[SchoolWork | ShardPage]) -> int:
    """One `SchoolWork` per due entry (and `rest`) on the job's queue; → the schools sent."""
    work: list[SchoolWork | ShardPage] = [
        SchoolWork(integration_id=e.integration_id, job=job, due=e.due, marked_at=e.marked_at) for e in entries if e.due
    ]
    if work or rest:
        rt.queues.send_work(job, work + rest)
    return len(work)


# --- one school's turn ------------------------------------------------------------------------------------
@dataclass
class Next:
    """What a job's run says about the school's next one."""

    due: datetime | None  # None: no more work (the entry goes, unless `kept`)
    detail: JsonObject = field(default_factory=dict)
    failed: str | None = None  # the run failed (reported, not raised): back off
    chain: bool = False  # send the next turn now (a backfill's next chunk)
    kept: bool = False  # the run settled the entry itself


@dataclass
class WorkOutcome:
    """The job worker's reply per message (and its log line)."""

    job: Job
    integration_id: str | None = None
    status: str = "done"  # done | removed | failed | dispatched
    due: str | None = None
    failures: int = 0
    detail: JsonObject = field(default_factory=dict)


Runner = Callable[[Runtime, Integration, RemainingMs], Next]  # one school's run of a job


def handle_work(
    rt: Runtime, message: SchoolWork | ShardPage, *, runners: Mapping[Job, Runner], remaining_ms: RemainingMs
) -> WorkOutcome:
    """A work queue's message: a shard page to dispatch, or one school's turn of the job (its runner)."""
    if isinstance(message, ShardPage):
        sent, more = dispatch(rt, message)
        return WorkOutcome(message.job, status="dispatched", detail={"schools": sent, "handed_on": more})
    if message.job not in runners:  # a queue carries its function's jobs only: a wiring error, not a school's
        raise LookupError(f"no runner for the {message.job} job here (has {sorted(runners)})")
    return run_school(rt, message, runners[message.job], remaining_ms=remaining_ms)


def run_school(rt: Runtime, work: SchoolWork, runner: Runner, *, remaining_ms: RemainingMs) -> WorkOutcome:
    """Run `work.job` for one school and decide its next due time; a failure backs off, never raises."""
    outcome = WorkOutcome(work.job, work.integration_id)
    integration = rt.store.integrations.get(work.integration_id, fresh=True)
    if integration is None:
        rt.store.work.remove(work.integration_id, work.job)
        outcome.status = "removed"
        return outcome
    entry = rt.store.work.get(integration.id, work.job)
    started = rt.now()
    try:
        nxt = runner(rt, integration, remaining_ms)
    except Exception as exc:  # one school's fault (credentials, its API, a bug on its data) stays its own
        logger.exception("school job failed", extra={"integration_id": integration.id, "job": work.job})
        nxt = Next(None, failed=f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}")
    outcome.detail = nxt.detail
    if nxt.failed is not None:
        outcome.failures = (entry.failures if entry else 0) + 1
        due = started + backoff(work.job, outcome.failures)
        rt.store.work.schedule(
            integration.id, work.job, due, failures=outcome.failures, error=nxt.failed[:500], ran_at=started
        )
        outcome.status, outcome.due = "failed", to_iso(due)
        logger.warning(
            "school job backs off",
            extra={"integration_id": integration.id, "job": work.job, "failures": outcome.failures, "due": outcome.due},
        )
        return outcome
    if nxt.due is None:
        if not nxt.kept:
            rt.store.work.remove(integration.id, work.job)
        outcome.status = "removed" if not nxt.kept else "done"
        return outcome
    scheduled = rt.store.work.schedule(integration.id, work.job, nxt.due, ran_at=started)
    outcome.due = scheduled.due
    if nxt.chain and scheduled.due:
        rt.queues.send_work(work.job, [SchoolWork(integration_id=integration.id, job=work.job, due=scheduled.due)])
    return outcome


# --- enrolment --------------------------------------------------------------------------------------------
def enrol(rt: Runtime, integration: Integration) -> dict[Job, bool]:
    """Index entries for the jobs this integration needs now (after activation or a settings change):
    missing ones are due at once, unwanted ones go. → job → whether it is enrolled."""
    wanted: dict[Job, bool] = {
        "poll": needs_polling(integration),
        "reconcile": integration.active and integration.settings.deals.enabled,
    }
    for job, wants in wanted.items():
        entry = rt.store.work.get(integration.id, job)
        if wants and (entry is None or entry.due is None):
            rt.store.work.schedule(integration.id, job, rt.now())
        elif wants and entry is not None and entry.due and job == "poll":
            # a shorter interval takes effect now, not after the old one
            interval = timedelta(minutes=integration.settings.texts.chats.poll_interval_minutes)
            if from_iso(entry.due) > rt.now() + interval and not entry.failures:
                rt.store.work.schedule(integration.id, job, rt.now())
        elif not wants and entry is not None:
            rt.store.work.remove(integration.id, job)
    return wanted
