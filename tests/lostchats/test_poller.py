"""The chat poller: paging, overlap, the UIS budget, watermarks, chat-start events, and its handler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connector.models.sync import PollerState
from connector.timeutil import to_iso

from tests.lostchats.conftest import World, settings_doc

ROOT = Path(__file__).resolve().parents[2]
LEAD_ON_START = {"enabled": True, "on": "chat_started", "tags": []}


def points(world: World, integration_id: str = "int1") -> dict[str, dict[str, int]]:
    return world.store.integrations.recent_points(integration_id)


def test_paging_reads_every_page_and_catches_lost_chats_on_each(world: World) -> None:
    # Given five chats, three of them lost, and a page size of two
    integration = world.integration()
    lost = []
    for i in range(5):
        chat = world.uis.start_chat(chat_channel_id=301, visitor_phone_number=f"7999000000{i}")
        if i % 2 == 0:
            world.uis.lose_chat(chat["id"], notify=False)
            lost.append(chat["id"])
    world.advance(1)
    # When the poller runs
    summary = world.poll(page_size=2).as_dict()
    world.drain_queue(integration)
    # Then it read three pages (3 UIS points, recorded), and each lost chat got one task
    assert summary["chats_read"] == 5
    assert summary["uis_points"] == 3
    # and asked get.visitors once for the three announced chats' visitors (issue 8.5), a point of the texts
    assert [c["method"] for c in world.uis.rpc_log].count("get.visitors") == 1
    assert next(iter(points(world).values())) == {"poller": 3, "texts": 1}
    assert sorted(e["payload"]["id"] for e in world.queued("lost_chat")) == lost
    assert len(world.alfacrm_tasks()) == 3


def test_a_chat_that_turns_lost_after_a_poll_is_caught_by_the_next(world: World) -> None:
    # Given a chat still waiting for an operator when the poller first reads it
    integration = world.integration()
    chat = world.uis.start_chat(chat_channel_id=301, visitor_phone_number="79990001111")
    world.advance(1)
    world.poll()
    assert world.drain_queue(integration) == []
    # When it is lost later (no notification) and the next poll runs
    world.advance(4)
    world.uis.lose_chat(chat["id"], notify=False)
    world.advance(1)
    world.poll()
    # Then the task is created
    assert world.drain_queue(integration) == ["created"]
    assert len(world.alfacrm_tasks()) == 1


def test_an_open_chat_holds_the_watermark_back_beyond_the_overlap(world: World) -> None:
    # Given a chat that stays open for 40 minutes (longer than the 10-minute overlap)
    integration = world.integration()
    chat = world.uis.start_chat(chat_channel_id=301, visitor_phone_number="79990002222")
    for _ in range(8):
        world.advance(5)
        world.poll()
    world.uis.lose_chat(chat["id"], notify=False)
    world.advance(5)
    world.poll()
    # Then it is still caught
    assert world.drain_queue(integration) == ["created"]


def test_polls_wait_for_the_integration_interval(world: World) -> None:
    world.integration(settings_doc(poll_interval_minutes=15))
    statuses = []
    for _ in range(4):
        statuses.append(world.poll().results[0].status)
        world.advance(5)
    assert statuses == ["polled", "not_due", "not_due", "polled"]


def test_a_nearly_exhausted_day_budget_stops_polling_and_a_low_one_stretches_it(world: World) -> None:
    # Given an account whose day budget is 1000 points
    world.uis.day_limit = 1000
    world.integration()
    # When a poll sees 900 left, the next one 5 minutes later runs
    world.uis._day = (world.clock().date(), 100)
    assert world.poll().results[0].status == "polled"
    # When the deal uploads have spent it down to 400 (40 %), polling slows to every 10 minutes
    world.uis._day = (world.clock().date(), 600)
    world.advance(5)
    assert world.poll().results[0].status == "polled"  # this poll learns the budget is at 40 %
    world.advance(5)
    assert world.poll().results[0].status == "not_due"
    world.advance(5)
    assert world.poll().results[0].status == "polled"
    # When only 150 are left (under the 20 % reserve), the poller makes no call at all
    world.uis._day = (world.clock().date(), 850)
    world.advance(10)
    assert world.poll().results[0].status == "polled"  # learns it
    spent_before = world.uis.points_spent
    for _ in range(6):
        world.advance(5)
        result = world.poll().results[0]
        assert result.status == "budget" and "reserve" in result.reason
    assert world.uis.points_spent == spent_before
    # Then the points spent so far are on record for the admin API
    assert points(world) == {world.clock.utc().date().isoformat(): {"poller": 4}}


def test_a_poll_never_spends_past_the_day_allowance(world: World) -> None:
    world.integration()
    day = world.clock.utc().date().isoformat()
    world.store.integrations.add_points("int1", day, 300, purpose="poller")
    result = world.poll().results[0]
    assert result.status == "allowance"
    assert world.clients.uis_requests == 0


def test_an_integration_that_needs_nothing_costs_no_uis_call(world: World) -> None:
    # Given an integration with chats on but neither a lost-chat task nor leads on chat start, and an inactive one
    world.integration(settings_doc(lost_chat_task={"enabled": False}), iid="int1")
    world.integration(settings_doc(), iid="int2", active=False)
    world.uis.start_chat(chat_channel_id=301)
    spent = world.uis.points_spent
    # When the poller runs
    summary = world.poll().as_dict()
    # Then nothing was asked of UIS (no client even built) and nothing recorded
    assert summary["uis_points"] == 0
    assert world.clients.uis_requests == 0
    assert world.uis.points_spent == spent
    assert points(world) == {}


def test_a_failed_poll_leaves_the_watermark_where_it_was(world: World) -> None:
    integration = world.integration()
    world.poll()
    before = world.store.texts.get_watermark(integration.id, "chats")
    world.advance(5)
    # Given UIS failing the report (a refusal the client does not retry)
    world.uis.fail("error", count=5, method="get.chats_report", code=-32602, mnemonic="invalid_parameter_value")
    result = world.poll().results[0]
    after = world.store.texts.get_watermark(integration.id, "chats")
    assert result.status == "failed"
    assert after is not None and before is not None
    assert after.watermark == before.watermark
    assert after.last_poll_at == before.last_poll_at
    assert "invalid_parameter_value" in (after.last_error or "")


def test_a_long_outage_is_caught_up_in_windows_within_the_api_limit(world: World) -> None:
    # Given a watermark four months old
    integration = world.integration()
    old = world.clock.utc().replace(year=2024, month=11)
    world.store.texts.put_watermark(integration.id, "chats", PollerState(watermark=to_iso(old)), expected_version=0)
    # When the poller runs twice, Then each window is at most 89 days and the second continues the first
    first = world.poll().results[0]
    world.advance(5)
    second = world.poll().results[0]
    assert first.status == second.status == "polled"
    assert first.window and second.window
    assert second.window[0] < first.window[1] <= world.clock.utc().isoformat()
    assert second.window[1] == to_iso(world.clock.utc())


def test_chat_started_is_sent_once_per_new_chat_when_leads_are_created_on_start(world: World) -> None:
    # Given leads created on chat start (no lost-chat task), and two chats
    world.integration(settings_doc(create_lead=LEAD_ON_START, lost_chat_task={"enabled": False}))
    first = world.uis.start_chat(chat_channel_id=301, visitor_phone_number="79990003333")
    world.advance(1)
    world.poll()
    world.advance(5)
    second = world.uis.start_chat(chat_channel_id=302, visitor_phone_number="79990004444")
    world.uis.take_chat(first["id"])
    world.advance(1)
    world.poll()
    world.advance(5)
    world.poll()
    world.drain_queue(world.store.integrations.get("int1"))
    # Then one chat_started per chat, shaped as the queue contract says
    started = world.queued("chat_started")
    assert [e["payload"]["id"] for e in started] == [first["id"], second["id"]]
    assert {e["source"] for e in started} == {"poller"} and {e["method"] for e in started} == {"POST"}


def test_the_handler_runs_on_the_scheduler_event(lambda_context: Any, world: World) -> None:
    # Given the real scheduler event and an integration that needs no polling (so no credentials are read)
    from tests.handlers import load_handler

    world.integration(settings_doc(enabled=False))
    event = json.loads((ROOT / "events" / "chat_poller_schedule.json").read_text())
    # When the handler is invoked
    summary = load_handler("chat_poller")(event, lambda_context)
    # Then it reports the run
    assert summary["integrations"] == 1
    assert summary["by_status"] == {"not_needed": 1}
    assert summary["uis_points"] == 0
