"""Deals benchmark (wired into `make bench` by tools/bench.py): calls per AlfaCRM webhook and per flush.

Everything in-process: moto for DynamoDB (tables from template.yaml), the AlfaCRM and UIS sandboxes on a
hand-driven clock. A stream of `customers` × 4 webhooks (lead created, status moved, converted, paid) goes
through the deal worker, once in order and once again as duplicates; then the uploader flushes.
`run()` returns the counts: AlfaCRM requests, UIS points and DynamoDB requests, per event and per flush.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run(customers: int = 25) -> dict[str, Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        os.environ.setdefault(key, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws

    with mock_aws():
        return _run(customers, boto3)


def _run(customers: int, boto3: Any) -> dict[str, Any]:
    import httpx
    from connector.alfacrm.client import AlfaCrmClient
    from connector.aws import Aws
    from connector.config import Environment
    from connector.deals.uploader import flush_integration
    from connector.deals.worker import handle_deal_event_once
    from connector.intake import hash_secret
    from connector.models.messages import DealEventMessage
    from connector.retry import RateLimiter, RetryPolicy
    from connector.runtime import Runtime
    from connector.settings import Integration, SettingsDocument
    from connector.timeutil import local_to_utc
    from connector.uis.client import UisClient

    from tools.localstack.resources import create_tables
    from tools.localstack.template import Template
    from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox, ManualClock
    from tools.sandboxes.uis import UisSandbox

    tables = create_tables(
        boto3.client("dynamodb", region_name="eu-central-1"), Template.load(ROOT / "template.yaml"), stack_name="bench"
    )
    clock = ManualClock(datetime(2025, 3, 3, 9, 0, 0))
    env = Environment(state_table=tables["StateTable"], idempotency_table=tables["IdempotencyTable"])
    rt = Runtime(env, aws=Aws(), now=lambda: local_to_utc(clock(), "Europe/Moscow"))
    store = rt.store
    table = store.table
    # duplicates are answered from the Powertools idempotency table, whose calls are counted here too
    idem_calls = [0]

    def _count(**_: Any) -> None:
        idem_calls[0] += 1

    rt.idempotency.client.meta.events.register("before-call", _count)
    hooks: list[dict[str, Any]] = []

    def capture(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> int:
        import json

        hooks.append(json.loads(body or b"{}"))
        return 200

    alfacrm = AlfaCrmSandbox(clock=clock, sender=capture, seed=False, burst_limit=1_000_000)
    alfacrm.add_webhook(1, "http://bench/hooks")
    uis = UisSandbox(clock=clock, access_tokens=["bench-token"], sender=lambda *a: 200)
    retry = RetryPolicy(attempts=3, sleep=clock.sleep)
    alfa_client = AlfaCrmClient(
        "http://alfacrm.bench",
        DEFAULT_EMAIL,
        DEFAULT_API_KEY,
        http=httpx.Client(transport=httpx.WSGITransport(app=alfacrm.app), base_url="http://alfacrm.bench"),
        retry=retry,
        limiter=RateLimiter(0),
        clock=clock.monotonic,
    )
    uis_client = UisClient(
        "http://uis.bench/v2.0",
        "bench-token",
        http=httpx.Client(transport=httpx.WSGITransport(app=uis.app)),
        retry=retry,
        clock=clock.monotonic,
    )

    class Clients:
        def alfacrm(self, integration: Integration) -> AlfaCrmClient:
            return alfa_client

        def uis(self, integration: Integration) -> UisClient:
            return uis_client

    rt.clients = Clients()

    integration = Integration(
        id="bench",
        name="Bench",
        alfacrm={"hostname": "http://alfacrm.bench", "email": DEFAULT_EMAIL, "branch_id": 1},
        uis={"api_url": "http://uis.bench/v2.0"},
        active=True,
        secret_id="bench",
        alfacrm_webhook_secret_hash=hash_secret("a" * 32),
        uis_webhook_secret_hash=hash_secret("u" * 32),
        settings=SettingsDocument.model_validate(
            {"deals": {"first_sale": {"success_status_ids": [4], "failure_status_ids": [5]}}}
        ),
    )
    store.integrations.create(integration)

    for number in range(customers):
        lead = alfacrm.ui_create_customer(
            {"name": f"Ученик {number}", "is_study": 0, "lead_status_id": 1, "phone": [f"8916{number:07d}"]}
        )
        clock.advance(600)
        alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 3})
        clock.advance(600)
        alfacrm.ui_update_customer(lead["id"], {"is_study": 1})
        alfacrm.ui_create_pay({"customer_id": lead["id"], "income": "4500"})
        clock.advance(60)

    def stream(bodies: list[dict[str, Any]]) -> dict[str, Any]:
        def ddb() -> int:
            return table.calls + idem_calls[0]

        alfa0, ddb0, uis0, started = alfa_client.calls, ddb(), uis.points_spent, time.perf_counter()
        per_event = []
        for body in bodies:
            a, d = alfa_client.calls, ddb()
            handle_deal_event_once(rt, DealEventMessage(integration_id="bench", event=body))
            per_event.append((alfa_client.calls - a, ddb() - d))
        n = len(bodies)
        return {
            "events": n,
            "alfacrm_requests_per_event": round((alfa_client.calls - alfa0) / n, 2),
            "alfacrm_requests_max": max(a for a, _ in per_event),
            "dynamodb_requests_per_event": round((ddb() - ddb0) / n, 2),
            "dynamodb_requests_max": max(d for _, d in per_event),
            "uis_points": uis.points_spent - uis0,  # the worker never calls UIS: uploads are coalesced
            "ms_per_event": round((time.perf_counter() - started) * 1000 / n, 1),
        }

    first = stream(list(hooks))
    duplicates = stream(list(hooks))
    uis0, ddb0, started = uis.points_spent, table.calls, time.perf_counter()
    report = flush_integration(rt, integration)
    flush = {
        "deals": report.deals,
        "rows": report.rows,
        "uis_points": uis.points_spent - uis0,
        "uis_methods": sorted({c["method"] for c in uis.rpc_log}),
        "dynamodb_requests": table.calls - ddb0,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
    uis1, ddb1 = uis.points_spent, table.calls
    flush_integration(rt, integration)
    idle = {"uis_points": uis.points_spent - uis1, "dynamodb_requests": table.calls - ddb1}
    return {
        "customers": customers,
        "stream": first,
        "duplicate_stream": duplicates,
        "flush": flush,
        "idle_flush": idle,
    }


if __name__ == "__main__":
    import json
    import sys

    sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared" / "python")]
    print(json.dumps(run(), indent=2, ensure_ascii=False))
