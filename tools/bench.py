"""`make bench`: calls made per event (AlfaCRM, UIS, DynamoDB/SQS) and intake latency, measured, not timed in tests.

Two parts:
1. Deals in-process (tools/bench_deals.py, in a subprocess: it runs its own in-process moto): a stream of
   webhooks through the deal worker, in order and again as duplicates, then one flush.
2. The whole local stack with both sandboxes (moto in server mode, real HTTP between the pieces), the way
   `make run` serves it: AlfaCRM webhooks and UIS notifications are posted to the webhook URLs, the queues
   drain into the workers, the uploader and the poller fire on demand. AWS calls are counted with a botocore
   hook on the default session; AlfaCRM requests and UIS points come from the sandboxes' own counters.
Latency figures are wall time on this machine with moto behind HTTP: indicative only.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tools import bench_schools

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "shared" / "python"


def deals_in_process(customers: int = 25) -> dict[str, Any]:
    code = f"import json, tools.bench_deals as b; print(json.dumps(b.run({customers}), default=str))"
    env = {**os.environ, "PYTHONPATH": f"{LAYER}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


class AwsCalls:
    """Counts every AWS API call boto3 makes in this process (per service and operation)."""

    def __init__(self) -> None:
        import boto3

        boto3.setup_default_session()
        self.counts: Counter[str] = Counter()
        boto3.DEFAULT_SESSION.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[f"{model.service_model.service_name}.{model.name}"] += 1

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)

    def since(self, before: Counter[str], prefix: str = "") -> int:
        return sum(v - before.get(k, 0) for k, v in self.counts.items() if k.startswith(prefix))


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def full_stack(leads: int = 20, requests: int = 10, chats: int = 10) -> dict[str, Any]:
    import httpx

    sys.path.insert(0, str(LAYER))
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    aws = AwsCalls()
    from tools.localstack import LocalStack

    # 4 req/s: the per-account budget (the sandbox, like AlfaCRM, answers bursts over 5/s with 429).
    stack = LocalStack(
        ROOT / "template.yaml",
        port=0,
        sandbox=True,
        run_schedules=False,
        stack_name="bench",
        parameters={"LogLevel": "WARNING", "AlfaCrmRps": 4},
        out=lambda line: None,
    )
    stack.start()
    try:
        assert stack.demo is not None
        alfacrm = stack.sandboxes["alfacrm"].sandbox
        uis = stack.sandboxes["uis"].sandbox
        stack.wait_idle(60)
        stack.invoke_schedule("DealUploadSchedule")  # seeded customers and funnels out of the way
        stack.wait_idle(60)
        out: dict[str, Any] = {}

        # --- AlfaCRM webhooks: intake latency, then what the deal worker spends per webhook ------------
        hook = stack.demo["webhooks"]["alfacrm"]
        ids = [
            alfacrm.ui_create_customer(
                {
                    "name": f"Лид {i}",
                    "is_study": 0,
                    "lead_status_id": 1,
                    "phone": [f"+7 (916) 700-{i // 100:02d}-{i % 100:02d}"],
                }
            )["id"]
            for i in range(leads)
        ]
        stack.wait_idle(120)
        stack.invoke_schedule("DealUploadSchedule")
        stack.wait_idle(60)
        a0, aws0 = alfacrm.stats["requests"], aws.snapshot()
        latencies = []
        with httpx.Client(timeout=30) as http:
            for n, cid in enumerate(ids):
                alfacrm.customers[cid]["lead_status_id"] = 2  # what a manager changed in AlfaCRM
                body = {
                    "branch_id": 1,
                    "event": "update",
                    "entity": "Customer",
                    "entity_id": cid,
                    "fields_old": {"lead_status_id": 1},
                    "fields_new": {"lead_status_id": "2"},
                    "fields_rel": [],
                    "user_id": 2,
                    "datetime": f"2026-11-25 10:{n // 60:02d}:{n % 60:02d}",
                }
                started = time.perf_counter()
                reply = http.post(
                    hook, content=json.dumps(body), headers={"Content-Type": "application/x-www-form-urlencoded"}
                )
                latencies.append((time.perf_counter() - started) * 1000)
                assert reply.status_code == 200, reply.text
        stack.wait_idle(120)
        out["alfacrm_webhook"] = {
            "webhooks": leads,
            "intake_ms_p50": round(statistics.median(latencies), 1),
            "intake_ms_p95": round(_pct(latencies, 0.95), 1),
            "alfacrm_requests_per_webhook": round((alfacrm.stats["requests"] - a0) / leads, 2),
            "dynamodb_calls_per_webhook": round(aws.since(aws0, "dynamodb.") / leads, 2),
            "sqs_calls_per_webhook": round(aws.since(aws0, "sqs.") / leads, 2),
        }

        # --- one flush of all those changes ---------------------------------------------------------
        p0, aws0 = uis.points_spent, aws.snapshot()
        started = time.perf_counter()
        stack.invoke_schedule("DealUploadSchedule")
        out["deal_flush"] = {
            "deals": leads,
            "uis_points": uis.points_spent - p0,
            "dynamodb_calls": aws.since(aws0, "dynamodb."),
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        p0, aws0 = uis.points_spent, aws.snapshot()
        stack.invoke_schedule("DealUploadSchedule")
        out["idle_flush"] = {"uis_points": uis.points_spent - p0, "dynamodb_calls": aws.since(aws0, "dynamodb.")}

        # --- UIS notifications: site requests and finished chats ------------------------------------------
        a0, p0, aws0 = alfacrm.stats["requests"], uis.points_spent, aws.snapshot()
        for i in range(requests):
            uis.submit_request(
                visitor_name=f"Посетитель {i}",
                visitor_phone_number=f"7926800{i:04d}",
                text="Хочу на пробный урок",
                site_domain_name="school.ru",
            )
        stack.wait_idle(120)
        out["offline_message"] = {
            "events": requests,
            "alfacrm_requests_per_event": round((alfacrm.stats["requests"] - a0) / requests, 2),
            "uis_points_per_event": round((uis.points_spent - p0) / requests, 2),
            "dynamodb_calls_per_event": round(aws.since(aws0, "dynamodb.") / requests, 2),
        }
        a0, p0, aws0 = alfacrm.stats["requests"], uis.points_spent, aws.snapshot()
        for i in range(chats):
            chat = uis.start_chat(visitor_phone_number=f"7926900{i:04d}")
            uis.post_message(chat["id"], "Здравствуйте, есть места в группе?")
            uis.post_message(chat["id"], "Да, запишу вас", source="operator")
            uis.finish_chat(chat["id"])
        stack.wait_idle(120)
        out["chat_finished"] = {
            "events": chats,
            "alfacrm_requests_per_event": round((alfacrm.stats["requests"] - a0) / chats, 2),
            "uis_points_per_event": round((uis.points_spent - p0) / chats, 2),
            "dynamodb_calls_per_event": round(aws.since(aws0, "dynamodb.") / chats, 2),
        }
        return out
    finally:
        stack.stop()


def _table(title: str, rows: dict[str, Any]) -> None:
    print(f"\n{title}")
    for key, value in rows.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={v}" for k, v in value.items())
            print(f"  {key:<28} {inner}")
        else:
            print(f"  {key:<28} {value}")


def main() -> int:
    started = time.perf_counter()
    deals = deals_in_process()
    _table("Deals, in-process (moto + sandboxes; tools/bench_deals.py)", deals)
    stack = full_stack()
    _table("Whole local stack (moto server, real HTTP; latency indicative)", stack)
    _table("Schools: one scheduler tick per N (in-process; tools/bench_schools.py)", bench_schools.in_subprocess())
    print(f"\nbench finished in {time.perf_counter() - started:.1f}s")
    if "--json" in sys.argv:
        print(json.dumps({"deals": deals, "stack": stack}, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
