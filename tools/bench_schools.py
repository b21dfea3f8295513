"""Schools benchmark (issue 12, "schools"; called by tools/bench.py): one scheduler tick with N schools due.

In-process: moto for DynamoDB and SQS (tables and queues from template.yaml), every AWS call delayed by a
configurable latency. N schools are enrolled in the work index with their `reconcile` due; one tick runs
(`connector.fanout.tick`, what `SchedulerFunction` does), then every shard page it handed on (what the
reconciler does with a `ShardPage`), until every school has its work item on the queue.

Per N it reports the tick's AWS calls (bounded: never past every shard's first page full, whatever N),
the largest invocation of the chain, the work items sent, and the time until the last school's work is done
given the workers' maximum concurrency (`ReconcileConcurrency`) and a per-school work time: the dispatch
chain's AWS calls × the latency, plus ceil(N / workers) × the school's work time (the workers run in
parallel, one school each: that part is a model, the calls are counted). With a fixed worker cap that time
grows past N = workers; the targets are the tick's calls and the dispatch time per school, flat in N.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "shared" / "python"
SCHOOL_WORK_S = 1.7  # one school's reconciliation at 150 ms AlfaCRM/UIS latency (issue 12's measurement)


def in_subprocess(counts: tuple[int, ...] = (1, 100, 1000), aws_latency_s: float = 0.005) -> dict[str, Any]:
    """`run` in its own process (its own in-process moto), as tools/bench.py calls it."""
    code = f"import json, tools.bench_schools as b; print(json.dumps(b.run({counts!r}, aws_latency_s={aws_latency_s})))"
    env = {**os.environ, "PYTHONPATH": f"{LAYER}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(counts: tuple[int, ...] = (1, 100, 1000), *, aws_latency_s: float = 0.005) -> dict[str, Any]:
    """→ per N the tick's figures, and the two targets; each N on fresh tables and queues."""
    from connector.fanout import PAGE_SIZE
    from connector.store.work import SHARDS

    # per shard: one index query, then its page of work items and the handed-on page in batches of ten
    bound = SHARDS * (1 + math.ceil((PAGE_SIZE + 1) / 10))
    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        os.environ.setdefault(key, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from moto import mock_aws

    ticks: dict[int, dict[str, Any]] = {}
    for n in counts:
        with mock_aws():
            ticks[n] = _tick(n, aws_latency_s)
    small, large = ticks[min(counts)], ticks[max(counts)]
    return {
        "ticks": ticks,
        "aws_latency_s": aws_latency_s,
        # the tick's own cost at the most schools ÷ at the fewest: flat means ~1
        # the tick's AWS calls at the most schools ÷ their bound (every shard's first page full and handed on):
        # it never grows past that, whatever N
        "tick_calls_bound": {
            "value": large["tick_aws_calls"],
            "floor": bound,
            "ratio": round(large["tick_aws_calls"] / bound, 2),
            "target": 1.0,
            "unit": "AWS calls per tick",
        },
        # dispatch time per school at the most schools ÷ at the fewest (the index pages amortise: ≤ 1)
        "dispatch_per_school_ratio": {
            "value": large["per_school_ms"],
            "floor": small["per_school_ms"],
            "ratio": round(large["per_school_ms"] / max(small["per_school_ms"], 1e-9), 2),
            "target": 1.2,
            "unit": "ms of dispatch per school",
        },
    }


def _tick(n: int, latency: float) -> dict[str, Any]:
    import boto3
    from connector.aws import Aws
    from connector.config import Environment
    from connector.fanout import dispatch, tick
    from connector.models.work import ShardPage
    from connector.runtime import Runtime

    from tools.localstack.resources import create_queues, create_tables
    from tools.localstack.template import Template

    template = Template.load(ROOT / "template.yaml")
    region = "eu-central-1"
    tables = create_tables(boto3.client("dynamodb", region_name=region), template, stack_name="bench")
    sqs = boto3.client("sqs", region_name=region)
    queues = create_queues(sqs, template, stack_name="bench")
    env = Environment(
        state_table=tables["StateTable"],
        idempotency_table=tables["IdempotencyTable"],
        reconcile_queue_url=queues["ReconcileQueue"],
        deal_upload_queue_url=queues["DealUploadQueue"],
        chat_poll_queue_url=queues["ChatPollQueue"],
    )
    now = datetime(2025, 3, 3, 9, 0, 0)
    rt = Runtime(env, aws=Aws(), now=lambda: now)
    for number in range(n):
        rt.store.work.schedule(f"{number:08x}", "reconcile", now - timedelta(minutes=1))
    calls = [0]

    def slow(**_: Any) -> None:
        calls[0] += 1
        time.sleep(latency)

    for client in (rt.aws.dynamodb.meta.client, rt.aws.sqs):
        client.meta.events.register("before-call", slow)

    def invocation(work: Any) -> tuple[float, int, Any]:
        calls[0] = 0
        started = time.perf_counter()
        result = work()
        return time.perf_counter() - started, calls[0], result

    tick_s, tick_calls, report = invocation(lambda: tick(rt, "reconcile", at=now))
    chain_s, most_calls, sent, invocations, total_calls = tick_s, tick_calls, report.schools, 1, tick_calls
    # the shard pages it handed on, each one reconciler invocation (run here one after another)
    while True:
        messages = sqs.receive_message(QueueUrl=queues["ReconcileQueue"], MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        for message in messages:
            sqs.delete_message(QueueUrl=queues["ReconcileQueue"], ReceiptHandle=message["ReceiptHandle"])
            if '"shard"' not in message["Body"]:
                continue
            page = ShardPage.model_validate_json(message["Body"])
            seconds, made, (schools, _) = invocation(lambda page=page: dispatch(rt, page))
            chain_s, most_calls, sent = chain_s + seconds, max(most_calls, made), sent + schools
            invocations, total_calls = invocations + 1, total_calls + made
    workers = int(template.parameters["ReconcileConcurrency"]["Default"])
    # on DynamoDB and SQS the dispatch costs its calls × the latency; moto's own time (it scans the index on
    # every query) is reported beside it, indicative only
    dispatch_s = total_calls * latency
    return {
        "tick_aws_calls": tick_calls,
        "tick_s": round(tick_calls * latency, 3),
        "invocations": invocations,
        "largest_invocation_aws_calls": most_calls,
        "work_items": sent,
        "dispatch_s": round(dispatch_s, 3),
        "moto_dispatch_s": round(chain_s, 2),
        "workers": workers,
        "last_done_s": round(dispatch_s + math.ceil(n / workers) * SCHOOL_WORK_S, 2),
        "per_school_ms": round(dispatch_s * 1000 / n, 3),
    }
