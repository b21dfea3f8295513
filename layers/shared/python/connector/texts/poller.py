"""The chat poller: chat starts (UIS sends no notification for them) and lost chats whose notification
never came, read from `get.chats_report` on a schedule (ScheduleV2 `ChatPollSchedule`, every minute).

`ChatPoller.poll(integration)` is the per-school unit of work of the fan-out's `poll` job (`connector.fanout`:
a tick every minute sends one work item per integration whose next poll is due; the poller function runs
them in parallel, one at a time per integration). Per ACTIVE integration that needs it — chats on AND
(lost-chat task on OR leads created on chat start); the others have no entry in the work index and cost
nothing — and only when its interval (`texts.chats.poll_interval_minutes`, stretched when the UIS day budget
runs low) has passed since its last poll:

1. read `get.chats_report` for [watermark − overlap, now] (overlap: a chat read as `new` that turned
   `lost` afterwards is read again), capped at the API's 3-month interval, paging with limit/offset;
2. put on the text queue, as the intake would have (source `poller`, the report row as payload):
   `lost_chat` for each lost chat not yet announced — the text worker then does what the missing
   notification would have done (lead per `create_lead.on`, transcript, and the task through
   `connector.texts.lost_chats.handle_lost_chat`, whose claim keeps it to one task whoever reports
   first); `chat_started` for each other chat not yet announced, when leads are created on chat start
   (finished chats too: a chat that started and ended between two polls still started);
3. move the watermark (a conditional write on `WM#chats`): to the end of the window, but never past the
   start of a chat still `new`/`active` (its later `lost` is caught without a wide overlap); a run that
   fails leaves it where it was.

Why enqueue rather than create tasks here: the worker's `lost_chat` path already knows the order of
lead → transcript → task (so the task links the lead it just created) and has SQS retries, the DLQ and
parking; the poller stays a cheap reader that finishes within its timeout even after an outage.

UIS points (each successful call costs one; `metadata.limits` reports the budget):
- at the default interval (5 minutes) an integration is polled 288 times a day, one
  call each (a page holds 1000 chats): 288 points. The poller's own day allowance is
  max(300, 1440 / interval + 12) points — 300 at the defaults — and a poll never spends past it
  (its pages are capped by what is left); past it, polling waits for the next day (the watermark
  stays, so nothing is missed, only delayed).
- the account's day budget is shared with the deal uploads: below `stretch_ratio` of the day limit
  the interval doubles, below half of that it is ×4, and at or below the reserve (20 % of the day
  limit, at least `reserve_points`) the poller makes no call at all until the budget resets.
Points spent are recorded per integration per day (`BUDGET#<day>`, purpose `poller`), the day being the
account's (the integration's timezone): UIS's day budget resets at its midnight, and the deals record theirs
under the same day.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from connector.errors import ConcurrentUpdate, ConnectorError
from connector.fanout import BUDGET_WAIT, POLL_SLACK, Next, RemainingMs
from connector.models.events import EventOutcome
from connector.models.messages import TextEventMessage
from connector.models.raw import JsonObject
from connector.models.sync import PollerState, SeenLimits, UisLimits
from connector.models.texts import ChatFacts
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration, needs_polling
from connector.texts.facts import chat_fields, report_chat_facts
from connector.texts.visitors import Visitors
from connector.timeutil import from_iso, to_iso, utc_to_local
from connector.uis.client import UisClient
from connector.uis.points import UisPoints

WATERMARK = "chats"
OPEN_STATUSES = frozenset({"new", "active"})
DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class PollPolicy:
    overlap: timedelta = timedelta(minutes=10)  # re-read this much before the watermark (late statuses)
    first_lookback: timedelta = timedelta(hours=1)  # the first poll of an integration does not backfill history
    # UIS refuses report intervals over 3 months; 89 days is under every "3 months"
    max_window: timedelta = timedelta(days=89)
    min_window: timedelta = timedelta(minutes=15)  # a window too big for the page cap halves down to this
    open_chat_horizon: timedelta = timedelta(hours=6)  # an open chat holds the watermark back at most this much
    page_size: int = 1000  # UIS's default `limit` (max 10000)
    max_pages: int = 10  # per poll, also bounded by the day allowance
    day_points_floor: int = 300  # the poller's own allowance per integration per day, at least
    reserve_ratio: float = 0.2  # of the account's day limit, kept for the deal uploads
    reserve_points: int = 150
    stretch_ratio: float = 0.5  # below this share of the day limit the interval doubles (×4 below half of it)
    schedule_slack: timedelta = timedelta(seconds=45)  # EventBridge fires a little early or late


def day_allowance(interval_minutes: int, policy: PollPolicy) -> int:
    """The poller's points per integration per day: one call per poll at the interval, plus a little."""
    return max(policy.day_points_floor, DAY_MINUTES // max(interval_minutes, 1) + 12)


@dataclass(frozen=True)
class Budget:
    """What the account's day budget allows now: poll at all, and at what stretch of the interval."""

    allowed: bool
    stretch: int
    reason: str


def budget_from_limits(limits: UisLimits | None, policy: PollPolicy) -> Budget:
    """`limits` as UIS reported them (`day_limit`, `day_remaining`), or None when unknown."""
    if limits is None or limits.day_limit is None or limits.day_remaining is None:
        return Budget(True, 1, "budget unknown")
    day_limit, remaining = limits.day_limit, limits.day_remaining
    if day_limit <= 0:
        return Budget(True, 1, "budget unknown")
    reserve = max(policy.reserve_ratio * day_limit, float(policy.reserve_points))
    if remaining <= reserve:
        return Budget(
            False, 0, f"UIS day budget low ({int(remaining)} of {int(day_limit)} left, reserve {int(reserve)})"
        )
    share = remaining / day_limit
    if share < policy.stretch_ratio / 2:
        return Budget(True, 4, f"UIS day budget at {share:.0%}: interval ×4")
    if share < policy.stretch_ratio:
        return Budget(True, 2, f"UIS day budget at {share:.0%}: interval ×2")
    return Budget(True, 1, "budget ok")


def stored_limits(state: PollerState, now: datetime) -> UisLimits | None:
    """The last limits this poller saw, while they still describe today's budget (until `day_reset`)."""
    limits = state.limits
    if limits is None or limits.seen_at is None:
        return None
    try:
        reset_at = from_iso(limits.seen_at) + timedelta(seconds=limits.day_reset or 0)
    except ValueError:
        return None
    return limits if now < reset_at else None


def live_limits(uis: UisClient) -> UisLimits | None:
    """What this container's client of the account last heard from UIS (other calls of it count too)."""
    limits = uis.current_limits()
    return UisLimits.model_validate(limits) if limits else None


@dataclass
class PollResult:
    integration_id: str
    status: str  # polled | not_needed | not_due | budget | allowance | failed | conflict
    reason: str = ""
    points: int = 0
    chats: int = 0
    lost_events: int = 0
    started_events: int = 0
    window: tuple[str, str] | None = None
    truncated: bool = False


class ChatPoller:
    def __init__(self, rt: Runtime, *, policy: PollPolicy | None = None) -> None:
        self.rt = rt
        self.texts = rt.store.texts
        self.clock = rt.now
        self.policy = policy or PollPolicy()

    def record(self, result: PollResult) -> None:
        """A poll that ran (or was held back by the budget or the clock) in the school's execution log."""
        if result.status in {"not_needed", "not_due"}:
            return
        outcome: EventOutcome = "skipped"
        reason = result.reason
        if result.status == "polled":
            outcome = "done"
            reason = f"{result.chats} chats read, {result.lost_events} lost, {result.started_events} started"
            self.rt.events.credential(result.integration_id, "uis", ok=True)
        elif result.status == "failed":
            outcome = "failed"
        window = "…".join(result.window) if result.window else result.status
        self.rt.events.record(
            result.integration_id, source="poller", kind="poll", key=window, outcome=outcome, reason=reason
        )

    # --- one integration --------------------------------------------------------------------------
    def poll(self, integration: Integration, state: PollerState | None = None) -> PollResult:
        """Poll one integration if it needs it, is due and the budget allows; never raises for one integration."""
        if not needs_polling(integration):
            return PollResult(integration.id, "not_needed")
        if state is None:
            state = self.texts.get_watermark(integration.id, WATERMARK) or PollerState()
        now = self.clock()
        interval = integration.settings.texts.chats.poll_interval_minutes
        budget = budget_from_limits(stored_limits(state, now), self.policy)
        if not budget.allowed:
            return PollResult(integration.id, "budget", budget.reason)
        if not self._due(state, now, interval * budget.stretch):
            return PollResult(integration.id, "not_due")
        # the account's day (UIS's budget resets at its midnight; the deals record points by it too)
        day = utc_to_local(now, integration.timezone).date().isoformat()
        spent = self.rt.store.integrations.points(integration.id, day).get("poller", 0)
        allowance = day_allowance(interval, self.policy)
        if spent >= allowance:
            return PollResult(integration.id, "allowance", f"poller spent {spent} of {allowance} points today")
        with self.rt.uis_points(integration, "poller") as points:
            # this container's client may have seen fresher limits (another call of this account)
            live = budget_from_limits(live_limits(points.client), self.policy)
            if not live.allowed:
                self._save_limits(integration, state, points.client, now)
                return PollResult(integration.id, "budget", live.reason)
            if live.stretch > budget.stretch and not self._due(state, now, interval * live.stretch):
                return PollResult(integration.id, "not_due", live.reason)
            result = PollResult(integration.id, "polled")
            try:
                self._poll(integration, state, points, now, min(self.policy.max_pages, allowance - spent), result)
            except ConcurrentUpdate:
                result.status, result.reason = "conflict", "another run moved the watermark first"
            except ConnectorError as exc:
                result.status, result.reason = "failed", exc.message
                self.rt.events.failed(integration.id, exc)
                logger.warning(
                    "chat poll failed; watermark kept",
                    extra={"integration_id": integration.id, "error": exc.message, "code": exc.code},
                )
                self._save_limits(integration, state, points.client, now, error=exc.message)
            result.points = points.spent
        return result

    def _due(self, state: PollerState, now: datetime, minutes: int) -> bool:
        if not state.last_poll_at:
            return True
        return now - from_iso(state.last_poll_at) >= timedelta(minutes=minutes) - self.policy.schedule_slack

    def _poll(
        self,
        integration: Integration,
        state: PollerState,
        points: UisPoints,
        now: datetime,
        max_pages: int,
        result: PollResult,
    ) -> None:
        """Read the window's chats, announce the new ones, move the watermark (a conditional write)."""
        p = self.policy
        tz = integration.timezone
        watermark = from_iso(state.watermark) if state.watermark else now - p.first_lookback
        start = watermark - p.overlap
        span = timedelta(seconds=float(state.span_seconds or p.max_window.total_seconds()))
        till = min(now, start + min(span, p.max_window))
        result.window = (to_iso(start), to_iso(till))
        rows, complete = self._read(points.client, integration, (start, till), max_pages)
        result.chats = len(rows)
        result.truncated = not complete
        chats = self._facts(rows, tz)
        self._announce(integration, chats, rows, now, result)
        if complete:
            new_mark = max(min([till, *self._open_starts(chats, now)]), watermark)
            next_span = min(span * 2, p.max_window)
        else:
            # more chats than this poll may read: keep the watermark and try a shorter window next time
            new_mark = watermark
            next_span = max((till - start) / 2, p.min_window)
        moved = PollerState(
            watermark=to_iso(new_mark),
            last_poll_at=to_iso(now),
            span_seconds=int(next_span.total_seconds()),
            limits=self._limits_snapshot(points.client, now),
            last_window=list(result.window),
            last_error=None,
        )
        self.texts.put_watermark(integration.id, WATERMARK, moved, expected_version=state.version)
        logger.info(
            "chat poll",
            extra={
                "integration_id": integration.id,
                "window": list(result.window),
                "chats": result.chats,
                "lost_events": result.lost_events,
                "started_events": result.started_events,
                "complete": complete,
                "watermark": to_iso(new_mark),
            },
        )

    def _open_starts(self, chats: dict[int, ChatFacts], now: datetime) -> list[datetime]:
        """An open chat may still turn lost: the watermark stays at its start (within the horizon)."""
        horizon = now - self.policy.open_chat_horizon
        return [
            c.started_at
            for c in chats.values()
            if c.status in OPEN_STATUSES and c.started_at and c.started_at >= horizon
        ]

    def _read(
        self, uis: UisClient, integration: Integration, window: tuple[datetime, datetime], max_pages: int
    ) -> tuple[list[JsonObject], bool]:
        """Page through the report (naming its columns: those the facts and the extra-field mappings need);
        → (rows, whether the window was read to its end)."""
        date_from, date_till = (utc_to_local(at, integration.timezone) for at in window)
        fields = chat_fields(integration.settings.texts.chats.extra_fields)
        rows: list[JsonObject] = []
        size = self.policy.page_size
        for page in range(max(max_pages, 0)):
            chunk = uis.get_chats_report(date_from, date_till, fields=fields, limit=size, offset=page * size)
            rows.extend(chunk)
            if len(chunk) < size:
                return rows, True
        return rows, False

    @staticmethod
    def _facts(rows: list[JsonObject], tz: str | None) -> dict[int, ChatFacts]:
        out: dict[int, ChatFacts] = {}
        for row in rows:
            try:
                facts = report_chat_facts(row, tz)
            except (KeyError, TypeError, ValueError):
                logger.warning("chat poll: unreadable report row skipped", extra={"row_id": row.get("id")})
                continue
            out[facts.chat_id] = facts
        return out

    def _announce(
        self,
        integration: Integration,
        chats: dict[int, ChatFacts],
        rows: list[JsonObject],
        now: datetime,
        result: PollResult,
    ) -> None:
        """Send `lost_chat` / `chat_started` for chats not announced before; mark them after sending.

        Marked only after the queue took them: a crash in between re-sends next poll, and the text
        worker is idempotent per chat; the other order could lose an event for good.
        """
        settings = integration.settings.texts.chats
        lead_on_start = settings.create_lead.enabled and settings.create_lead.on == "chat_started"
        lost_ids = [cid for cid, c in chats.items() if c.status == "lost" and settings.lost_chat_task.enabled]
        start_ids = [cid for cid in chats if cid not in set(lost_ids)] if lead_on_start else []
        if lost_ids:
            already = self.texts.polled_chats(integration.id, "lost", lost_ids)
            already |= self.texts.lost_tasks_done(integration.id, [c for c in lost_ids if c not in already])
            lost_ids = [c for c in lost_ids if c not in already]
        if start_ids:
            already = self.texts.polled_chats(integration.id, "started", start_ids)
            start_ids = [c for c in start_ids if c not in already]
        by_id = {int(str(r["id"])): r for r in rows if str(r.get("id") or "").isdigit()}
        self._visitor_cards(integration, [by_id[c] for c in [*lost_ids, *start_ids] if c in by_id])
        received = to_iso(now)
        for kind, event, ids in (("lost", "lost_chat", lost_ids), ("started", "chat_started", start_ids)):
            if not ids:
                continue
            messages = [
                TextEventMessage(
                    integration_id=integration.id,
                    received_at=received,
                    source="poller",
                    event="lost_chat" if event == "lost_chat" else "chat_started",
                    method="POST",
                    payload=by_id[cid],
                )
                for cid in ids
            ]
            self.rt.queues.send_text_events(messages)
            self.texts.mark_polled(integration.id, kind, ids, at=now.timestamp())
            if kind == "lost":
                result.lost_events = len(ids)
            else:
                result.started_events = len(ids)

    def _visitor_cards(self, integration: Integration, rows: list[JsonObject]) -> None:
        """The visitors of the chats announced: the report has no name or e-mail, get.visitors does — one call
        for all of them. Its point serves the text events, so it is charged as theirs (`texts`), not to the
        poller's allowance (which paces the report reads); like every poller call, never into the reserve the
        deal uploads keep (the budget as the report read left it)."""
        if not rows:
            return
        with self.rt.uis_points(integration, "texts") as points:
            if budget_from_limits(live_limits(points.client), self.policy).allowed:
                Visitors(self.rt, integration, points).complete_rows(rows)

    # --- limits ------------------------------------------------------------------------------------
    @staticmethod
    def _limits_snapshot(uis: UisClient, now: datetime) -> SeenLimits | None:
        limits = live_limits(uis)
        if limits is None:
            return None
        return SeenLimits(**limits.model_dump(), seen_at=to_iso(now))

    def _save_limits(
        self,
        integration: Integration,
        state: PollerState,
        uis: UisClient,
        now: datetime,
        *,
        error: str | None = None,
    ) -> None:
        """Keep what UIS said about the budget (and the error) without moving the watermark."""
        snapshot = self._limits_snapshot(uis, now)
        if snapshot is None and error is None:
            return
        value = state.model_copy(update={"limits": snapshot or state.limits, "last_error": error})
        # on ConcurrentUpdate another run wrote a newer state: its limits are at least as fresh
        with contextlib.suppress(ConcurrentUpdate):
            self.texts.put_watermark(integration.id, WATERMARK, value, expected_version=state.version)


# --- the fan-out's poll job -------------------------------------------------------------------------------
def poll_job(rt: Runtime, integration: Integration, remaining_ms: RemainingMs) -> Next:
    """The `poll` job's run for one school (`connector.fanout`): a poll, recorded, then when the next is due."""
    poller = ChatPoller(rt)
    try:
        result = poller.poll(integration)
    except Exception as exc:  # recorded in the school's execution log as the scheduled run recorded it
        poller.record(PollResult(integration.id, "failed", type(exc).__name__))
        raise
    poller.record(result)
    if result.status == "not_needed":
        return Next(None)
    detail: JsonObject = {
        "status": result.status,
        "reason": result.reason,
        "points": result.points,
        "chats": result.chats,
        "lost_events": result.lost_events,
        "started_events": result.started_events,
    }
    now = rt.now()
    if result.status == "failed":
        return Next(None, detail, failed=result.reason or "poll failed")
    if result.status in ("budget", "allowance"):
        return Next(now + BUDGET_WAIT, detail)
    interval = timedelta(minutes=integration.settings.texts.chats.poll_interval_minutes)
    return Next(now + interval - POLL_SLACK, detail)
