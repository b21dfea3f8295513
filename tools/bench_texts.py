"""Texts in-process (tools/bench_world.py): calls per UIS notification in the text worker.

Site requests (`offline_message`) and finished chats from new visitors (phone only, phone and e-mail) and from
repeat visitors (the phone already on a customer's card), each delivered as the UIS intake would enqueue it
and handled by `TextWorker(rt).handle`, what the SQS batch runs per record. A warm-up request first: a warm
container has its AlfaCRM token, its look-ups and the integration record, and the account has had its first
lead (which taught the connector the account's phone matching, once per account: `PhoneSearch.probed`).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HOOK = "http://connector.bench/hooks/uis/bench/secret"
SETTINGS = {
    "texts": {
        "branch_id": 1,
        "lead_defaults": {"lead_status_id": 1, "lead_source_id": 2, "assigned_id": None},
        "requests": {"enabled": True, "filters": {"sites": [], "form_types": []}, "create_lead": True},
        "chats": {
            "enabled": True,
            "filters": {"sites": [], "channels": [], "tags": []},
            "create_lead": {"enabled": True, "on": "chat_finished", "tags": []},
            "lost_chat_task": {"enabled": False},
        },
    }
}


def run(visitors: int = 10, latency: float = 0.0) -> dict[str, Any]:
    from tools.bench_world import World

    with World.open(latency, seed=True) as world:
        return _run(world, visitors)


def _message(sent: dict[str, Any], received_at: str) -> dict[str, Any]:
    """What the UIS intake enqueues for one delivery: `event` from the URL, the body or query as payload."""
    parts = urlsplit(sent["url"])
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    event = query.pop("event", None)
    payload = query if sent["method"] == "GET" else {**query, **json.loads(sent["body"])}
    return {
        "integration_id": "bench",
        "received_at": received_at,
        "source": "notification",
        "event": event,
        "method": sent["method"],
        "payload": payload,
    }


def _deliver(world: Any) -> list[Any]:
    from connector.texts.worker import TextWorker
    from connector.timeutil import to_iso

    outcomes = []
    for sent in world.take_sent():
        outcomes.append(TextWorker(world.rt).handle(_message(sent, to_iso(world.rt.now()))))
        world.clock.advance(5)
    return outcomes


def _measure(world: Any, make: Any, n: int) -> dict[str, Any]:
    """`make(i)` makes UIS send one notification; each is delivered and counted on its own."""
    per_event, outcomes = [], []
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        make(i)
        before = world.counts()
        outcomes += _deliver(world)
        per_event.append(world.counts().minus(before))
        world.clock.advance(30)
    seconds = time.perf_counter() - started
    total = per_event[0]
    for c in per_event[1:]:
        total = type(total)(**{k: getattr(total, k) + getattr(c, k) for k in total.__dataclass_fields__})
    return {
        "events": n,
        "per_event": total.per(n),
        "alfacrm_max": max(c.alfacrm for c in per_event),
        "leads_created": sum(1 for o in outcomes if getattr(o, "lead_created", False)),
        "statuses": sorted({o.status for o in outcomes}),
        "ms_per_event": round(seconds * 1000 / n, 2),
        "cpu_ms_per_event": round((time.process_time() - cpu) * 1000 / n, 2),
        "events_per_second": round(n / seconds, 1),
    }


def _run(world: Any, n: int) -> dict[str, Any]:
    world.integration("bench", SETTINGS)
    uis = world.uis
    for event in ("offline_message", "chat_finished"):
        uis.configure_notification(event, f"{HOOK}?event={event}")
    uis.submit_request(visitor_name="Разогрев", visitor_phone_number="79990000000", text="warm-up")
    _deliver(world)

    def request(phone: str, email: str | None = None) -> Any:
        return lambda i: uis.submit_request(
            visitor_name=f"Посетитель {i}", visitor_phone_number=phone.format(i=i),
            visitor_email=email.format(i=i) if email else None, text="Хочу на пробный урок",
        )  # fmt: skip

    def chat(phone: str) -> Any:
        def make(i: int) -> None:
            started = uis.start_chat(visitor_phone_number=phone.format(i=i), visitor_name=f"Чат {i}")
            uis.post_message(started["id"], "Здравствуйте, есть места в группе?")
            uis.post_message(started["id"], "Да, запишу вас", source="operator")
            uis.finish_chat(started["id"])

        return make

    return {
        "visitors": n,
        "request_new_phone": _measure(world, request("7926100{i:04d}"), n),
        "request_new_phone_email": _measure(world, request("7926200{i:04d}", "v{i}@example.ru"), n),
        "request_repeat": _measure(world, request("7926100{i:04d}"), n),  # the phones of the first run
        "chat_new_phone": _measure(world, chat("7926300{i:04d}"), n),
        "chat_repeat": _measure(world, chat("7926300{i:04d}"), n),
    }


if __name__ == "__main__":
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(root), str(root / "layers" / "shared" / "python")]
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2, ensure_ascii=False, default=str))
