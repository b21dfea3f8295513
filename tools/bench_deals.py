"""Deals in-process (tools/bench_world.py): calls per AlfaCRM webhook in the deal worker, per duplicate, per
flush of the uploader, and their cost per event at a given volume (`run(customers)`; growth runs it at 1×, 4×,
16×).

Each customer makes four webhooks in AlfaCRM's order (lead created, status moved, converted, paid). Round 1
streams them through the deal worker's record handler (`handle_deal_event_once`, what the SQS batch runs per
record), then again as duplicates; the first flush also creates the account's funnels and fields. Round 2 (a
second payment per customer: the upsell) is the steady state the floors are about: a webhook, then a flush
of deals whose funnels exist.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

DEAL_SETTINGS = {"deals": {"first_sale": {"success_status_ids": [4], "failure_status_ids": [5]}}}
CONTACT_METHODS = {"create.deal_contacts", "update.deal_contacts"}
UPLOAD_ROWS_PER_CALL = 1000  # upload.deals_history takes up to 1000 rows (uis-api.md)


def run(customers: int = 25, latency: float = 0.0) -> dict[str, Any]:
    from tools.bench_world import World

    with World.open(latency) as world:
        return _run(world, customers)


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """The world's heap (moto's tables, the sandboxes' records, grown with the volume) kept out of the garbage
    collector's scans while a section is timed: in Lambda that heap is not in the worker's process, and a full
    collection's cost grows with it (at 16x it doubled the connector's CPU per event). Objects made while
    timed are collected as usual."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _stream(world: Any, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    with _heap_frozen():
        return _timed_stream(world, bodies)


def _timed_stream(world: Any, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    from connector.deals.worker import handle_deal_event_once
    from connector.models.messages import DealEventMessage

    before, started, cpu, moto = world.counts(), time.perf_counter(), time.process_time(), world.moto_cpu_s()
    per_event = []
    for body in bodies:
        one = world.counts()
        handle_deal_event_once(world.rt, DealEventMessage(integration_id="bench", event=body))
        per_event.append(world.counts().minus(one))
    spent = world.counts().minus(before)
    n = len(bodies)
    return {
        "events": n,
        "per_event": spent.per(n),
        "alfacrm_max": max(c.alfacrm for c in per_event),
        "dynamodb_max": max(c.dynamodb for c in per_event),
        "ms_per_event": round((time.perf_counter() - started) * 1000 / n, 2),
        "cpu_ms_per_event": round((time.process_time() - cpu) * 1000 / n, 2),
        # the connector's own CPU: without moto's serving of the AWS calls (DynamoDB's work, not ours)
        "own_cpu_ms_per_event": round((time.process_time() - cpu - (world.moto_cpu_s() - moto)) * 1000 / n, 2),
        "events_per_second": round(n / (time.perf_counter() - started), 1),
    }


def _flush(world: Any, integration: Any) -> dict[str, Any]:
    with _heap_frozen():
        return _timed_flush(world, integration)


def _timed_flush(world: Any, integration: Any) -> dict[str, Any]:
    from connector.deals.uploader import flush_integration

    log0, before, started = len(world.uis.rpc_log), world.counts(), time.perf_counter()
    cpu, moto = time.process_time(), world.moto_cpu_s()
    report = flush_integration(world.rt, integration)
    seconds = time.perf_counter() - started
    spent = world.counts().minus(before)
    methods = [c["method"] for c in world.uis.rpc_log[log0:]]
    contact_calls = sum(1 for m in methods if m in CONTACT_METHODS)
    upload_calls = sum(1 for m in methods if m == "upload.deals_history")
    uploaded = max(report.uploaded, 1)
    return {
        "deals": report.deals,
        "uploaded": report.uploaded,
        "rows": report.rows,
        "uis_calls": spent.uis,
        "uis_floor": contact_calls + -(-report.rows // UPLOAD_ROWS_PER_CALL),
        "contact_calls": contact_calls,
        "upload_calls": upload_calls,
        "uis_methods": sorted(set(methods)),
        "dynamodb": spent.dynamodb,
        "dynamodb_per_uploaded_deal": round(spent.dynamodb / uploaded, 3),
        "per_uploaded_deal": spent.per(uploaded),
        "ms": round(seconds * 1000, 1),
        "cpu_ms": round((time.process_time() - cpu) * 1000, 1),
        "own_cpu_ms": round((time.process_time() - cpu - (world.moto_cpu_s() - moto)) * 1000, 1),
        "deals_per_second": round(report.uploaded / seconds, 1) if seconds else None,
    }


def _run(world: Any, customers: int) -> dict[str, Any]:
    integration = world.integration("bench", DEAL_SETTINGS)
    alfacrm, clock = world.alfacrm, world.clock
    alfacrm.add_webhook(1, "http://bench/hooks")
    leads = []
    for number in range(customers):
        lead = alfacrm.ui_create_customer(
            {"name": f"Ученик {number}", "is_study": 0, "lead_status_id": 1, "phone": [f"8916{number:07d}"]}
        )
        leads.append(lead["id"])
        clock.advance(600)
        alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 3})
        clock.advance(600)
        alfacrm.ui_update_customer(lead["id"], {"is_study": 1})
        alfacrm.ui_create_pay({"customer_id": lead["id"], "income": "4500"})
        clock.advance(60)
    import json

    round1 = [json.loads(sent["body"] or b"{}") for sent in world.take_sent()]
    first = _stream(world, round1)
    duplicates = _stream(world, round1)
    first_flush = _flush(world, integration)
    clock.advance(120)
    for lead in leads:  # round 2: a second payment each, the upsell
        alfacrm.ui_create_pay({"customer_id": lead, "income": "3000"})
        clock.advance(30)
    round2 = [json.loads(sent["body"] or b"{}") for sent in world.take_sent()]
    steady = _stream(world, round2)
    clock.advance(120)
    steady_flush = _flush(world, integration)
    clock.advance(60)
    idle = world.counts()
    _flush(world, integration)
    idle_flush = world.counts().minus(idle)
    return {
        "customers": customers,
        "stream": first,
        "duplicate_stream": duplicates,
        "steady_stream": steady,
        "first_flush": first_flush,
        "flush": steady_flush,
        "idle_flush": idle_flush.per(1),
    }


def growth(base: int = 2, factors: tuple[int, ...] = (1, 4, 16)) -> dict[str, Any]:
    """The deal worker's and the uploader's cost per event at each volume (`base` × factor customers)."""
    out: dict[str, Any] = {}
    for factor in factors:
        result = run(base * factor)
        steady, flush = result["steady_stream"], result["flush"]
        out[f"{factor}x"] = {
            "customers": base * factor,
            "result": result,
            "worker_calls_per_event": round(sum(steady["per_event"][k] for k in ("alfacrm", "uis", "dynamodb")), 3),
            "worker_cpu_ms_per_event": steady["cpu_ms_per_event"],
            "uploader_calls_per_deal": round(
                sum(flush["per_uploaded_deal"][k] for k in ("alfacrm", "uis", "dynamodb")), 3
            ),
            "uploader_cpu_ms_per_deal": round(flush["cpu_ms"] / max(flush["uploaded"], 1), 2),
            "worker_own_cpu_ms_per_event": steady["own_cpu_ms_per_event"],
            "uploader_own_cpu_ms_per_deal": round(flush["own_cpu_ms"] / max(flush["uploaded"], 1), 2),
        }
    return out


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(root), str(root / "layers" / "shared" / "python")]
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 25), indent=2, ensure_ascii=False))
