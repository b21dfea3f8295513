"""Intake latency in-process (tools/bench_world.py): the AlfaCRM webhook handler against parse-and-send.

The handler as Lambda runs it (Powertools resolver, logger, metrics printed to stdout, which goes to
/dev/null here), on the sample event events/alfacrm_webhook.json, against a baseline doing the least an
intake must: parse the JSON body and put it on the deal queue with the same boto3 client. Both run
interleaved on one warm container with moto in-process; p50 and p99 of each, in milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Lambda sends stdout to CloudWatch; here to /dev/null (the handlers' log and metric lines)."""
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def run(requests: int = 400) -> dict[str, Any]:
    from tools.bench_world import World

    production = {"POWERTOOLS_METRICS_DISABLED": "false", "POWERTOOLS_LOG_LEVEL": "INFO"}
    with World.open(overrides=production) as world:
        return _run(world, requests)


def _run(world: Any, requests: int) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "alfacrm_webhook.json").read_text(encoding="utf-8"))
    integration_id = event["pathParameters"]["id"]
    world.integration(integration_id)
    handler = world.handler("alfacrm_webhook")
    context = world.context("AlfaCrmWebhookFunction")
    sqs, queue = world.rt.aws.sqs, world.rt.env.deal_events_queue_url

    def baseline(e: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(e["body"])
        message = {"integration_id": e["pathParameters"]["id"], "event": body}
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(message))
        return {"statusCode": 200, "body": '{"queued": true}'}

    timings: dict[str, list[float]] = {"handler": [], "baseline": []}
    with _quiet_stdout():
        for i in range(requests + 20):
            for name, fn in (("handler", handler), ("baseline", baseline)):
                started = time.perf_counter()
                reply = fn(event, context) if name == "handler" else fn(event)
                elapsed = (time.perf_counter() - started) * 1000
                assert reply["statusCode"] == 200, reply
                if i >= 20:  # the first ones warm the container up (imports, clients, the integration)
                    timings[name].append(elapsed)
    out: dict[str, Any] = {"requests": requests}
    for name, values in timings.items():
        out[name] = {"p50_ms": round(statistics.median(values), 3), "p99_ms": round(_pct(values, 0.99), 3)}
    return out


if __name__ == "__main__":
    import sys

    sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared" / "python")]
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 400), indent=2))
