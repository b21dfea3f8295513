"""Scheduled jobs in-process (tools/bench_world.py): what one tick costs per school, busy and idle.

`schools` integrations (deals on, chats with lost-chat tasks, so every one is polled), all on the one pair of
sandboxes. Each schedule of template.yaml fires its handler as EventBridge Scheduler would, and every queue it
feeds is drained into its consumer (whatever the tick hands on is its cost too). Round 1 is a tick with work
due everywhere (the first poll and reconciliation of each school); round 2 fires every schedule again a
minute later, when no school has anything due: its calls per school are the idle school's per tick.
"""

from __future__ import annotations

import json
import time
from typing import Any

SETTINGS = {
    "deals": {"first_sale": {"success_status_ids": [4], "failure_status_ids": [5]}},
    "texts": {
        "branch_id": 1,
        "lead_defaults": {"lead_status_id": 1, "lead_source_id": 2, "assigned_id": None},
        "chats": {
            "enabled": True,
            "create_lead": {"enabled": True, "on": "chat_finished", "tags": []},
            "lost_chat_task": {"enabled": True},
        },
    },
}


def run(schools: int = 20, latency: float = 0.0) -> dict[str, Any]:
    from tools.bench_world import World

    with World.open(latency, seed=True) as world:
        return _run(world, schools)


def _tick(world: Any, schedule: Any) -> dict[str, Any]:
    from tools.bench_world import REGION
    from tools.localstack.events import schedule_event

    before, started, cpu = world.counts(), time.perf_counter(), time.process_time()
    fn = world.template.functions[schedule.function_id]
    # the schedule's Input as EventBridge Scheduler passes it (template.yaml writes it as a JSON string)
    if schedule.input is not None:
        event = json.loads(schedule.input) if isinstance(schedule.input, str) else schedule.input
    else:
        event = schedule_event(
            f"arn:aws:scheduler:{REGION}:123456789012:schedule/default/{schedule.event_name}", REGION
        )
    world.handler(fn.code_uri.strip("/").removeprefix("functions/"))(event, world.context(schedule.function_id))
    handed_on = world.drain()
    spent = world.counts().minus(before)
    ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
    return {"counts": spent, "work_items": handed_on, "ms": ms, "cpu_ms": cpu_ms}


def _run(world: Any, schools: int) -> dict[str, Any]:
    from connector.fanout import enrol

    for i in range(schools):
        # enrolled as activation does: each school's poll and reconciliation due at once (round 1's work)
        enrol(world.rt, world.integration(f"{i:04x}", SETTINGS))
    out: dict[str, Any] = {"schools": schools}
    schedules = [s for s in world.template.schedules if s.enabled]
    busy = {s.event_name: _tick(world, s) for s in schedules}
    world.clock.advance(60)
    idle = {s.event_name: _tick(world, s) for s in schedules}
    for name in busy:
        out[name] = {
            "function": next(s.function_id for s in schedules if s.event_name == name),
            "busy_per_school": busy[name]["counts"].per(schools),
            "idle_per_school": idle[name]["counts"].per(schools),
            "idle_total": idle[name]["counts"].per(1),
            "idle_work_items": idle[name]["work_items"],
            "busy_cpu_ms_per_school": round(busy[name]["cpu_ms"] / schools, 2),
            "idle_cpu_ms_per_school": round(idle[name]["cpu_ms"] / schools, 2),
            "idle_ms_total": round(idle[name]["ms"], 1),
        }
    return out


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(root), str(root / "layers" / "shared" / "python")]
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20), indent=2, ensure_ascii=False, default=str))
