"""End to end through the local stack: UIS sandbox → `POST /_local/schedules/ChatPollSchedule` → the chat
poller → the text queue → the text worker → AlfaCRM sandbox, with the demo integration the stack creates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tools.localstack.demo_setup import DEMO_SETTINGS

pytestmark = pytest.mark.e2e


def fire_poll(stack: Any) -> dict[str, Any]:
    reply = httpx.post(f"{stack.url}/_local/schedules/ChatPollSchedule", timeout=60)
    assert reply.status_code == 200, reply.text
    stack.wait_idle(timeout=60)
    summary: dict[str, Any] = reply.json()
    return summary


def test_a_lost_chat_without_notification_becomes_one_task_and_a_new_chat_a_lead(
    start_local_stack: Callable[..., Any],
) -> None:
    stack = start_local_stack(sandbox=True)
    alfacrm = stack.sandboxes["alfacrm"].sandbox
    # Given a visitor's chat that nobody answered, lost without a notification (UIS's delivery failed)
    with httpx.Client(base_url=stack.sandboxes["uis"].url) as http:
        chat = http.post(
            "/_sandbox/chats",
            json={
                "chat_channel_id": 302,
                "visitor_name": "Олеся",
                "visitor_phone_number": "79035550011",
                "message": "Есть места в группе?",
            },
        ).json()
        assert http.post(f"/_sandbox/chats/{chat['id']}/lose?notify=0").status_code == 200
    # When the schedule fires (twice: the second run must not repeat anything)
    first = fire_poll(stack)
    fire_poll(stack)
    # Then AlfaCRM holds exactly one task with the rendered title, linked to the lead made for the chat
    # (the report carries no visitor name, so {visitor_name} is the name the lead got)
    tasks = [t for t in alfacrm.state()["tasks"] if f"Чат UIS №{chat['id']}" in (t.get("text") or "")]
    assert len(tasks) == 1
    [lead] = [c for c in alfacrm.state()["customers"] if any("9035550011" in p for p in c.get("phone") or [])]
    assert tasks[0]["title"] == f"Потерянный чат: {lead['name']} 79035550011"
    assert tasks[0]["customer_ids"] == [lead["id"]]
    assert first["lost_chat_events"] == 1 and first["uis_points"] >= 1

    # Given leads created on chat start
    settings = {**DEMO_SETTINGS, "texts": {**DEMO_SETTINGS["texts"]}}
    settings["texts"]["chats"] = {
        **DEMO_SETTINGS["texts"]["chats"],
        "create_lead": {"enabled": True, "on": "chat_started", "tags": []},
        "poll_interval_minutes": 1,
    }
    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    iid = stack.demo["id"]
    assert httpx.put(f"{stack.url}/integrations/{iid}/settings", json=settings, headers=auth).status_code == 200
    # When a new chat starts and the poller runs after the interval
    with httpx.Client(base_url=stack.sandboxes["uis"].url) as http:
        http.post(
            "/_sandbox/chats",
            json={
                "chat_channel_id": 301,
                "visitor_name": "Глеб",
                "visitor_phone_number": "79035550022",
                "message": "Здравствуйте",
            },
        )
    _age_last_poll(iid)
    fire_poll(stack)
    # Then AlfaCRM has the lead
    leads = [c for c in alfacrm.state()["customers"] if any("9035550022" in p for p in c.get("phone") or [])]
    assert len(leads) == 1 and leads[0]["is_study"] == 0


def _age_last_poll(integration_id: str) -> None:
    """Move the integration's last poll back past its interval (the suite never sleeps)."""
    from datetime import timedelta

    from connector.runtime import container
    from connector.timeutil import from_iso, to_iso

    texts = container().store.texts  # the local stack's functions run in this process, on this container
    state = texts.get_watermark(integration_id, "chats")
    assert state is not None and state.last_poll_at is not None
    aged = state.model_copy(update={"last_poll_at": to_iso(from_iso(state.last_poll_at) - timedelta(minutes=10))})
    texts.put_watermark(integration_id, "chats", aged, expected_version=state.version)
