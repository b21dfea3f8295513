"""A whole day of chat polling on the fake clock: what it costs in UIS points and what it catches.

The scheduler fires every minute (or every 5, the template's rate) from the account's midnight to
the next, 0–59 s into its minute (EventBridge Scheduler's documented 60-second precision), against the
UIS sandbox with a seeded trickle of chats: most answered, some lost — some of those with a `lost_chat`
notification (delivered before or after the next poll, one of them twice), the others with none.
No real sleep: the clock jumps.

"A day" is the UIS account's day (its budget resets at the account's midnight, Europe/Moscow here), so
the sandbox's charge log, its day budget and the connector's record `points(<day>)["poller"]` are all
compared on that day.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from connector.models.sync import PollerState
from connector.settings import Integration
from connector.store import Store
from connector.texts.poller import DAY_MINUTES, ChatPoller, PollPolicy, PollResult
from connector.timeutil import local_to_utc, to_iso
from connector.uis.client import UisClient

from tests.conftest import runtime
from tests.lostchats.conftest import TZ, World, settings_doc
from tools.sandboxes.uis import DEFAULT_TOKEN

DAY = datetime(2025, 3, 15)  # the account's midnight (Europe/Moscow): 2025-03-14 21:00 UTC
DAY_KEY = DAY.date().isoformat()
CHANNELS = (301, 302)  # seeded chat channels of the UIS sandbox


# --- the day's script ------------------------------------------------------------------------------
@dataclass
class ScriptedChat:
    start: int  # minute of the day the visitor opens the chat
    close: int  # minute it is answered and finished, or lost
    lost: bool
    notify: bool = False  # UIS sends `lost_chat` (else the notification is lost on the way)
    deliver: int = 0  # minute the notification reaches the worker
    repeat: bool = False  # …and is delivered a second time
    chat_id: int = 0


def trickle(seed: int = 5, *, count: int = 60) -> list[ScriptedChat]:
    """`count` chats over the day, most in working hours; a third lost, half of those without a notification.

    Some stay open 30–60 minutes before they are lost (longer than the poller's 10-minute overlap), some
    notifications arrive up to 20 minutes late (after the poller already announced the chat), one twice.
    All close by 22:00 so the day's own polls can still see them.
    """
    rnd = random.Random(seed)
    chats = []
    for i in range(count):
        start = rnd.randint(8 * 60, 21 * 60) if i % 6 else rnd.randint(0, 7 * 60)  # a few at night
        lost = i % 3 == 0
        open_for = rnd.choice((1, 2, 3, 7, 12)) if not (lost and i % 4 == 0) else rnd.randint(30, 60)
        notify = lost and i % 2 == 0
        chats.append(
            ScriptedChat(
                start=start,
                close=start + open_for,
                lost=lost,
                notify=notify,
                deliver=start + open_for + rnd.choice((0, 0, 1, 6, 20)),
                repeat=notify and i == 6,
            )
        )
    return chats


class _ListedOnce:
    """`IntegrationStore` with `list_active` read once: the integrations do not change during the day."""

    def __init__(self, integrations: Any) -> None:
        self._integrations = integrations
        self._active: list[Integration] | None = None

    def list_active(self) -> list[Integration]:
        if self._active is None:
            self._active = self._integrations.list_active()
        return self._active

    def __getattr__(self, name: str) -> Any:
        return getattr(self._integrations, name)


class _WatermarkReadThrough:
    """`TextStore` whose `get_watermark` is served from the last read until the watermark is written (only
    the poller writes it here). Every write, and every read after one, still goes to the moto store."""

    def __init__(self, texts: Any) -> None:
        self._texts = texts
        self._seen: dict[tuple[str, str], PollerState | None] = {}

    def get_watermark(self, integration_id: str, name: str) -> PollerState | None:
        key = (integration_id, name)
        if key not in self._seen:
            self._seen[key] = self._texts.get_watermark(integration_id, name)
        seen = self._seen[key]
        return None if seen is None else seen.model_copy()

    def put_watermark(self, integration_id: str, name: str, value: PollerState, *, expected_version: int) -> int:
        self._seen.pop((integration_id, name), None)
        return int(self._texts.put_watermark(integration_id, name, value, expected_version=expected_version))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._texts, name)


class _DayStore:
    """The moto store for a simulated day, minus the reads that would make 1440 scheduler runs slow (a GSI
    query for the integration list, a GetItem for the watermark on each not-due minute) and that cannot
    change the outcome: nothing but the poller writes those items during the day."""

    def __init__(self, store: Store) -> None:
        self.table = store.table
        self.texts = _WatermarkReadThrough(store.texts)
        self.events = store.events
        self.integrations = _ListedOnce(store.integrations)
        self.credentials = store.credentials


@dataclass
class DayLog:
    results: list[tuple[datetime, PollResult]] = field(default_factory=list)
    minutes: list[int] = field(default_factory=list)  # the scheduler minute of each result
    outcomes: list[str] = field(default_factory=list)

    def polls(self) -> list[tuple[datetime, PollResult]]:
        return [(at, r) for at, r in self.results if r.status == "polled"]


def live_a_day(
    world: World,
    integration: Integration,
    script: list[ScriptedChat],
    *,
    every: int = 1,
    minutes: int = DAY_MINUTES,
    start: datetime = DAY,
    policy: PollPolicy | None = None,
    before_run: Callable[[int], None] | None = None,
) -> DayLog:
    """Fire the scheduler every `every` minutes for `minutes` minutes, playing `script` in between."""
    rnd = random.Random(7)
    day = runtime(store=cast("Store", _DayStore(world.store)), clients=world.clients, now=world.clock.utc)
    poller = ChatPoller(day, policy=policy or PollPolicy())
    log = DayLog()
    by_minute: dict[int, list[Callable[[], None]]] = {}
    notifications: dict[int, dict[str, Any]] = {}

    def at(minute: int, action: Callable[[], None]) -> None:
        by_minute.setdefault(minute, []).append(action)

    def open_chat(chat: ScriptedChat, n: int) -> None:
        row = world.uis.start_chat(
            chat_channel_id=CHANNELS[n % 2], visitor_name=f"Гость {n}", visitor_phone_number=f"7999{n:07d}"
        )
        chat.chat_id = int(row["id"])

    def close_chat(chat: ScriptedChat) -> None:
        if not chat.lost:
            world.uis.take_chat(chat.chat_id)
            world.uis.finish_chat(chat.chat_id)
            world.outbox.sent.clear()  # `chat_finished` is not this test's business
            return
        world.uis.lose_chat(chat.chat_id, notify=chat.notify)
        if chat.notify:
            notifications[chat.chat_id] = world.outbox.sent.pop()  # held until its delivery minute

    def deliver(chat: ScriptedChat) -> None:
        world.outbox.sent[:] = [notifications[chat.chat_id]] * (2 if chat.repeat else 1)
        log.outcomes += world.deliver_notifications(integration)

    for n, chat in enumerate(script):
        at(chat.start, lambda c=chat, n=n: open_chat(c, n))
        at(chat.close, lambda c=chat: close_chat(c))
        if chat.notify:
            at(chat.deliver, lambda c=chat: deliver(c))

    for minute in range(minutes):
        for action in by_minute.pop(minute, []):
            world.clock.now = max(world.clock.now, start + timedelta(minutes=minute))
            action()
        if minute % every:
            continue
        if before_run is not None:
            before_run(minute)
        # EventBridge Scheduler invokes "with 60 second precision": somewhere in the scheduled minute
        fire = start + timedelta(minutes=minute, seconds=rnd.uniform(0, 59))
        world.clock.now = max(world.clock.now, fire)
        summary = poller.run()
        log.results += [(world.clock.now, r) for r in summary.results]
        log.minutes += [minute] * len(summary.results)
        if any(r.lost_events for r in summary.results):
            log.outcomes += world.drain_queue(integration)  # the text worker takes what the poll queued
    # the notifications still in flight arrive (scripted past the end of the simulated stretch)
    for chat in script:
        if chat.notify and chat.deliver >= minutes and chat.chat_id in notifications:
            deliver(chat)
    return log


# --- what the sandboxes and the store say ---------------------------------------------------------
def sandbox_report_calls(world: World, day: str = DAY_KEY) -> int:
    """UIS's own charge log: `get.chats_report` calls charged on the account's `day` (1 point each)."""
    return sum(1 for c in world.uis.rpc_log if c["method"] == "get.chats_report" and c["at"].startswith(day))


def visitor_calls(world: World, day: str = DAY_KEY) -> int:
    """get.visitors calls charged on `day`: the visitors of the chats polls announced (issue 8.5)."""
    return sum(1 for c in world.uis.rpc_log if c["method"] == "get.visitors" and c["at"].startswith(day))


def recorded_poller_points(world: World, day: str = DAY_KEY, iid: str = "int1") -> int:
    return world.store.integrations.points(iid, day).get("poller", 0)


def tasks_per_chat(world: World, chat_ids: list[int]) -> dict[int, int]:
    texts = [t.get("text") or "" for t in world.alfacrm_tasks()]
    return {cid: sum(f"Чат UIS №{cid}" in text for text in texts) for cid in chat_ids}


def day_used(world: World) -> int:
    limits = world.uis.state()["limits"]
    return int(limits["day_limit"]) - int(limits["day_remaining"])


def gaps(polls: list[tuple[datetime, PollResult]]) -> list[tuple[int, datetime]]:
    """(whole minutes since the previous poll, when) for each poll after the first."""
    return [((b - a) // timedelta(minutes=1), a) for (a, _), (b, _) in itertools.pairwise(polls)]


def start_at_midnight(world: World) -> None:
    world.clock.now = DAY


# --- (1) and (3): the default settings, the scheduler every minute or every 5 ----------------------
def test_a_day_at_the_defaults_costs_at_most_300_points_and_every_lost_chat_gets_one_task(world: World) -> None:
    # Given an integration at the default settings (lost-chat task on, poll interval 5 minutes),
    # a scheduler that fires every minute from the account's midnight, and the day's trickle of chats
    start_at_midnight(world)
    integration = world.integration()
    assert integration.settings.texts.chats.poll_interval_minutes == 5
    script = trickle()
    lost = [c for c in script if c.lost]
    assert len(script) == 60 and len(lost) == 20 and sum(not c.notify for c in lost) == 10

    # When the whole day runs
    log = live_a_day(world, integration, script, every=1)

    # Then polling cost at most 300 points that day — UIS's own log and the connector's record agree
    polls = log.polls()
    charged = sandbox_report_calls(world)
    assert charged <= 300
    assert charged == recorded_poller_points(world) == sum(r.points for _, r in polls)
    # nothing else spent UIS points but the visitors of the chats polls announced (issue 8.5: get.visitors, one
    # call in a poll that announced any, charged to the text events they serve)
    looked_up = visitor_calls(world)
    assert 0 < looked_up <= sum(1 for _, r in polls if r.lost_events or r.started_events)
    assert charged + looked_up == day_used(world) == world.uis.points_spent
    assert world.store.integrations.recent_points("int1") == {DAY_KEY: {"poller": charged, "texts": looked_up}}
    # one call per poll, a poll every 5 minutes (4 when the previous fire came late in its minute and this
    # one early: the 45-second schedule slack); never held back by the allowance or the budget
    assert len(polls) == charged
    assert Counter(r.status for _, r in log.results) == {"polled": charged, "not_due": DAY_MINUTES - charged}
    assert {gap for gap, _ in gaps(polls)} <= {4, 5}

    # And every lost chat got exactly one AlfaCRM task (notified or not, notified twice, or late), answered none
    assert tasks_per_chat(world, [c.chat_id for c in lost]) == {c.chat_id: 1 for c in lost}
    assert len(world.alfacrm_tasks()) == len(lost)
    assert log.outcomes.count("created") == len(lost)
    # the poller announced only the lost chats whose task was not done when it read them
    announced = [e["payload"]["id"] for e in world.queued("lost_chat") if e["source"] == "poller"]
    assert len(announced) == len(set(announced))
    assert {c.chat_id for c in lost if not c.notify} <= set(announced)


def test_a_day_on_the_templates_5_minute_schedule_costs_the_same(world: World) -> None:
    # Given the same day, with the scheduler at the template's rate(5 minutes)
    start_at_midnight(world)
    integration = world.integration()
    script = trickle(seed=11)
    lost = [c for c in script if c.lost]
    # When it runs
    log = live_a_day(world, integration, script, every=5)
    # Then at most one poll per fire (a fire that comes 45 s earlier in its minute than the previous one
    # finds the poll not yet due and the next fire takes it): at most 288 points, all on record
    charged = sandbox_report_calls(world)
    assert charged == recorded_poller_points(world) == len(log.polls()) <= DAY_MINUTES // 5
    assert {gap for gap, _ in gaps(log.polls())} <= {4, 5, 6, 9, 10}
    assert tasks_per_chat(world, [c.chat_id for c in lost]) == {c.chat_id: 1 for c in lost}
    assert len(world.alfacrm_tasks()) == len(lost)


# --- (2): a 15-minute interval ---------------------------------------------------------------------
def test_a_15_minute_interval_costs_about_96_points_a_day(world: World) -> None:
    # Given an integration polled every 15 minutes, the scheduler firing every minute
    start_at_midnight(world)
    integration = world.integration(settings_doc(poll_interval_minutes=15))
    script = trickle(seed=23)
    lost = [c for c in script if c.lost]
    # When the day runs
    log = live_a_day(world, integration, script, every=1)
    # Then about 1440 / 15 = 96 polls, one point each, in UIS's log and on record
    charged = sandbox_report_calls(world)
    assert charged == recorded_poller_points(world) == len(log.polls())
    assert abs(charged - DAY_MINUTES // 15) <= 3
    assert {gap for gap, _ in gaps(log.polls())} <= {14, 15}
    # And the longer interval misses nothing: one task per lost chat
    assert tasks_per_chat(world, [c.chat_id for c in lost]) == {c.chat_id: 1 for c in lost}
    assert len(world.alfacrm_tasks()) == len(lost)


# --- (4): the account's day budget nearly spent by the deal uploads --------------------------------
def test_a_day_budget_spent_by_deal_uploads_makes_polling_back_off_and_keeps_the_reserve(world: World) -> None:
    # Given an account whose UIS day budget is 1000 points (reserve for deal uploads: 20 % = 200), and the
    # deal uploader — another Lambda, so another UIS client — spending 680 of them between 08:00 and 09:08
    world.uis.day_limit = 1000
    reserve = 200
    start_at_midnight(world)
    integration = world.integration()
    http = httpx.Client(transport=httpx.WSGITransport(app=world.uis.app))
    uploader = UisClient("http://uis.test/v2.0", DEFAULT_TOKEN, http=http)
    spent_by_uploads = 0
    remaining_before: dict[int, int] = {}

    def deal_uploads(minute: int) -> None:
        nonlocal spent_by_uploads
        if 8 * 60 <= minute < 8 * 60 + 68:  # 10 points a minute, well under the minute limit
            for _ in range(10):
                uploader.call("get.tags", {})
            spent_by_uploads += 10
        remaining_before[minute] = world.uis.day_limit - day_used(world)

    script = [c for c in trickle(seed=31) if c.start < 23 * 60]
    lost = [c for c in script if c.lost]
    try:
        # When the day runs with the scheduler every minute
        log = live_a_day(world, integration, script, every=1, before_run=deal_uploads)
    finally:
        http.close()

    # Then polling slowed down as the budget fell and stopped at the reserve
    polls = log.polls()
    after_uploads = [gap for gap, t in gaps(polls) if t >= DAY + timedelta(hours=9, minutes=20)]
    assert after_uploads and min(after_uploads) >= 19  # ×4: under a quarter of the day budget left
    assert {gap for gap, t in gaps(polls) if t < DAY + timedelta(hours=8)} <= {4, 5}  # before: every 5 minutes
    blocked = [(t, r) for t, r in log.results if r.status == "budget"]
    assert blocked and all("reserve" in r.reason for _, r in blocked)
    last_poll = polls[-1][0]
    assert all(t > last_poll for t, _ in blocked)  # once stopped, it stays stopped for the day
    # the poller never called UIS with the reserve reached, and the day ends with the reserve whole
    poll_minutes = {m for m, (_, r) in zip(log.minutes, log.results, strict=True) if r.status == "polled"}
    assert all(remaining_before[m] > reserve for m in poll_minutes)
    assert world.uis.day_limit - day_used(world) == reserve
    # the points: UIS's log, the connector's record and the day's use agree
    charged = sandbox_report_calls(world)
    assert charged == recorded_poller_points(world) == len(polls)
    assert charged + spent_by_uploads + visitor_calls(world) == day_used(world) == world.uis.day_limit - reserve
    assert charged < 288

    # And the lost chats: one task each for those UIS notified or the poller read before it stopped; the others
    # wait (none lost: the watermark stays at or before their start, so the next poll reads them)
    tasks = tasks_per_chat(world, [c.chat_id for c in lost])
    assert set(tasks.values()) <= {0, 1}
    for chat in lost:
        if chat.notify or DAY + timedelta(minutes=chat.close) < last_poll - timedelta(minutes=25):
            assert tasks[chat.chat_id] == 1, chat
    waiting = [c for c in lost if not tasks[c.chat_id]]
    watermark = world.store.texts.get_watermark("int1", "chats")
    assert watermark is not None and watermark.watermark is not None
    assert waiting and all(
        watermark.watermark <= to_iso(local_to_utc(DAY + timedelta(minutes=c.start), TZ)) for c in waiting
    )


def test_polling_resumes_when_the_accounts_day_resets(world: World) -> None:
    # Given a poller that stopped at the reserve late in the day (the same warm container's client)
    world.uis.day_limit = 1000
    world.clock.now = DAY + timedelta(hours=15)
    world.integration()
    world.uis._day = (world.clock().date(), 799)  # the deal uploads' day so far
    assert world.poll().results[0].status == "polled"  # learns 200 left: the reserve
    world.advance(5)
    assert world.poll().results[0].status == "budget"
    # When the account's day resets (UIS: 1000 left again) and the scheduler fires
    world.clock.now = DAY + timedelta(days=1, minutes=1)
    statuses = []
    for _ in range(6):
        statuses.append(world.poll().results[0].status)
        world.advance(5)
    # Then polling resumes
    assert "polled" in statuses, statuses


def test_the_poller_day_allowance_is_the_accounts_day(world: World) -> None:
    """The allowance and the record follow the UIS day (the account's midnight), not the UTC date: with a
    backlog that needs many pages, a UTC-keyed allowance would let polling spend it twice in one UIS day."""
    # Given an integration with a large backlog (page size 1: every chat costs a point) just before
    # the account's midnight… of which UTC is still the previous date three hours longer
    small_pages = PollPolicy(page_size=1, max_pages=1000)
    world.clock.now = DAY - timedelta(hours=1)
    world.uis.minute_limit = 100_000
    integration = world.integration()
    for n in range(400):
        world.uis.start_chat(chat_channel_id=301, visitor_phone_number=f"7998{n:07d}")
    # When the scheduler fires every 5 minutes from the account's midnight for four hours
    world.clock.now = DAY
    live_a_day(world, integration, [], every=5, minutes=4 * 60, policy=small_pages)
    # Then the UIS day saw at most the day allowance of polling, and the record says the same
    charged = sandbox_report_calls(world)
    assert charged == recorded_poller_points(world) == 300
    assert world.store.integrations.recent_points("int1") == {DAY_KEY: {"poller": 300}}
