"""Schools (issue 12, `make bench`'s "schools"; tools/bench.py calls `run()` in its own interpreter).

One tick of each scheduled job (`upload`, `poll`, `reconcile`) with 1, 100, 1,000 and 10,000 schools due:
the tick (`connector.fanout.tick`, what `SchedulerFunction` does: one probe of the work index; its schools
sent, or every shard handed on at once) and then every shard page it handed on (`connector.fanout.dispatch`,
what the job's worker does with a `ShardPage`), until every school has its work item. Every AWS call of each
invocation is counted, index queries and SendMessageBatch calls apart.
- 1 and 100 schools run against moto (the template's tables and queues): the work index is the real
  `WorkIndex` on the table's sparse gsi1 (the probe) and gsi2 (the shards).
- 1,000 and 10,000 run against in-memory fakes of the work-index store port (`due`: one page of the probe or
  of a shard, earliest first, with DynamoDB's `Limit` paging) and of the queue port (`send_work`: one
  SendMessageBatch per ten messages), each counting its calls: moto's index query scans the whole table,
  far too slow at that size for the bench's 10 minutes. The calls are the same code's; only the store behind
  them differs.
Times are modelled, not measured: an invocation's time is (its index queries + its rounds of sends) ×
`aws_latency_s`, where a send's batches go out `SEND_THREADS` at a time (connector.queues), plus one queue
hop (`hop_s`) per handed-on page; the shards' chains run in parallel (a shard page's message group is its
shard). A school's own work takes `SCHOOL_WORK_S[job]` (issue 12's measured per-school times at 150 ms
AlfaCRM/UIS latency), so with one worker per school the last school is done at the last dispatch + one
school's time; with the template's concurrency cap, ceil(N / cap) rounds of it (raw.json).

Isolation: the local stack (its queue consumers with the template's concurrency) runs school B's uploads
beside school A whose UIS hangs (`tools.sandboxes.uis` `fail("hang")`); B's upload delay beside the hung
school ÷ its delay alone, target ≤ 1.2 (what tests/schools/test_local_stack.py asserts).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COUNTS = (1, 100, 1000, 10000)
MOTO_UP_TO = 100  # larger counts use the counting fakes
JOBS = ("upload", "poll", "reconcile")
# issue 12's measured time of one school's work (150 ms AlfaCRM/UIS latency, 5 ms DynamoDB): the model's input
SCHOOL_WORK_S = {"upload": 0.28, "poll": 0.24, "reconcile": 1.7}
CONCURRENCY = {"upload": "UploadConcurrency", "poll": "PollConcurrency", "reconcile": "ReconcileConcurrency"}
HANG_SECONDS = 20.0
UIS_LATENCY_S = 0.15  # the healthy school's UIS round trip in the isolation run


def figure(value: float, floor: float | None, target: float | None, unit: str) -> dict[str, Any]:
    ratio = round(value / floor, 3) if floor else value
    return {"value": value, "floor": floor, "ratio": ratio, "target": target, "unit": unit}


def run(*, aws_latency_s: float = 0.005, hop_s: float = 0.02, isolation_run: bool = True) -> dict[str, Any]:
    """→ the figures (`{value, floor, ratio, target, unit}`: results.json's `schools.<name>`) and the raw rows."""
    from connector.fanout import PAGE_SIZE, SHARD_PAGE_SIZE
    from connector.store.work import SHARDS

    from tools.localstack.template import Template

    template = Template.load(ROOT / "template.yaml")
    # a shard page: one index query, its schools and the shard's next page
    page_bound = 1 + math.ceil((SHARD_PAGE_SIZE + 1) / 10)
    # the tick: one probe, then its page of schools or every shard's page
    tick_bound = 1 + math.ceil(max(PAGE_SIZE, SHARDS) / 10)
    out: dict[str, Any] = {"aws_latency_s": aws_latency_s, "hop_s": hop_s, "school_work_s": SCHOOL_WORK_S}
    for job in JOBS:
        cap = int(template.parameters[CONCURRENCY[job]]["Default"])
        rows = {n: _model(_chain(job, n), job, n, cap, aws_latency_s, hop_s) for n in COUNTS}
        one, most = rows[COUNTS[0]], rows[COUNTS[-1]]
        out[f"{job}.ticks"] = rows
        out[f"{job}.tick_aws_calls"] = figure(most["tick_aws_calls"], tick_bound, 1.0, "AWS calls, tick of 10,000")
        out[f"{job}.largest_invocation_aws_calls"] = figure(
            most["largest_invocation_aws_calls"], page_bound, 1.0, "AWS calls, largest shard page at 10,000"
        )
        for n, row in rows.items():
            out[f"{job}.dispatch_ms_per_school_{n}"] = figure(
                row["dispatch_ms_per_school"], None, None, f"ms AWS per school, modelled ({row['store']})"
            )
        out[f"{job}.last_done_s_10000_vs_1"] = figure(
            most["last_done_s"], one["last_done_s"], 1.2, "s to the last school done, modelled (a worker per school)"
        )
    if isolation_run:
        normal, beside, stuck = isolation()
        out["isolation.delays_s"] = {"normal": normal, "beside_hung": beside, "hung_school_still_stuck": stuck}
        out["isolation.upload_delay"] = figure(
            round(statistics.median(beside), 3),
            round(statistics.median(normal), 3),
            1.2,
            "s upload delay beside a hung school (local stack)",
        )
    return out


# --- one tick and its chain of shard pages ------------------------------------------------------------------
@dataclass
class Calls:
    """One invocation's AWS calls: index queries and SendMessageBatch calls."""

    queries: int = 0
    batches: int = 0

    @property
    def total(self) -> int:
        return self.queries + self.batches

    def seconds(self, latency: float) -> float:
        """Queries one after another; the batches of its (one) send `SEND_THREADS` at a time."""
        from connector.queues import SEND_THREADS

        return (self.queries + math.ceil(self.batches / SEND_THREADS)) * latency


@dataclass
class Chain:
    store: str
    tick: Calls = field(default_factory=Calls)
    tick_schools: int = 0
    pages: list[tuple[int, Calls]] = field(default_factory=list)  # (shard, AWS calls) per handed-on page
    work_items: int = 0
    moto_s: float = 0.0


def _chain(job: str, n: int) -> Chain:
    """Tick with `n` schools due, then every shard page it handed on; the AWS calls of each invocation."""
    from connector.fanout import dispatch, tick
    from connector.models.work import ShardPage

    now = datetime(2025, 3, 3, 9, 0, 0)
    with _World(job, n, now) as (rt, counter, pages):
        started = time.perf_counter()
        chain = Chain("moto" if n <= MOTO_UP_TO else "in-memory fakes of the work-index and queue ports")
        counter[0] = Calls()
        report = tick(rt, job, at=now)  # type: ignore[arg-type]
        chain.tick, chain.tick_schools, chain.work_items = counter[0], report.schools, report.schools
        while pages:
            page: ShardPage = pages.pop(0)
            counter[0] = Calls()
            sent, _ = dispatch(rt, page)
            chain.pages.append((page.shard, counter[0]))
            chain.work_items += sent
        chain.moto_s = round(time.perf_counter() - started, 2)
    if chain.work_items != n:
        raise RuntimeError(f"{job} at {n}: {chain.work_items} work items sent")
    return chain


def _model(chain: Chain, job: str, n: int, cap: int, latency: float, hop: float) -> dict[str, Any]:
    tick_s = chain.tick.seconds(latency)
    per_shard: dict[int, float] = {}
    for shard, made in chain.pages:
        per_shard[shard] = per_shard.get(shard, 0.0) + hop + made.seconds(latency)
    last_dispatch_s = tick_s + max(per_shard.values(), default=0.0)
    total_calls = chain.tick.total + sum(made.total for _, made in chain.pages)
    school = SCHOOL_WORK_S[job]
    return {
        "store": chain.store,
        "tick_aws_calls": chain.tick.total,
        "tick_queries": chain.tick.queries,
        "handed_on_pages": len(chain.pages),
        "largest_invocation_aws_calls": max((made.total for _, made in chain.pages), default=0),  # a worker's page
        "longest_shard_chain": max(Counter(shard for shard, _ in chain.pages).values(), default=0),
        "work_items": chain.work_items,
        "dispatch_aws_calls": total_calls,
        "dispatch_ms_per_school": round(total_calls * latency * 1000 / n, 3),
        "last_dispatch_s": round(last_dispatch_s, 3),
        "last_done_s": round(last_dispatch_s + school, 3),
        "workers_cap": cap,
        "last_done_s_at_cap": round(last_dispatch_s + math.ceil(n / cap) * school, 2),
        "wall_s_of_this_run": chain.moto_s,
    }


class _World:
    def __init__(self, job: str, n: int, now: datetime) -> None:
        self.job, self.n, self.now = job, n, now
        self.calls: list[Calls] = [Calls()]
        self.pages: list[Any] = []
        self._mock: Any = None

    def __enter__(self) -> tuple[Any, list[Calls], list[Any]]:
        if self.n <= MOTO_UP_TO:
            return self._moto(), self.calls, self.pages
        return self._fakes(), self.calls, self.pages

    def __exit__(self, *exc: object) -> None:
        if self._mock is not None:
            self._mock.stop()

    def _fakes(self) -> Any:
        from connector.models.work import WorkEntry
        from connector.store.work import iso

        due = iso(self.now - timedelta(minutes=1))
        entries = [
            WorkEntry(integration_id=f"{number:08x}", job=self.job, due=due)  # type: ignore[arg-type]
            for number in range(self.n)
        ]
        return SimpleNamespace(
            store=SimpleNamespace(work=_FakeIndex(entries, self.calls)), queues=_FakeQueues(self.pages, self.calls)
        )

    def _moto(self) -> Any:
        import boto3
        from connector.aws import Aws
        from connector.config import Environment
        from connector.models.work import ShardPage
        from connector.runtime import Runtime
        from moto import mock_aws

        from tools.localstack.resources import create_queues, create_tables
        from tools.localstack.template import Template

        for key, value in {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "eu-central-1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            os.environ.setdefault(key, value)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        self._mock = mock_aws()
        self._mock.start()
        region = "eu-central-1"
        template = Template.load(ROOT / "template.yaml")
        tables = create_tables(boto3.client("dynamodb", region_name=region), template, stack_name="bench")
        queues = create_queues(boto3.client("sqs", region_name=region), template, stack_name="bench")
        env = Environment(
            state_table=tables["StateTable"],
            idempotency_table=tables["IdempotencyTable"],
            reconcile_queue_url=queues["ReconcileQueue"],
            deal_upload_queue_url=queues["DealUploadQueue"],
            chat_poll_queue_url=queues["ChatPollQueue"],
        )
        rt = Runtime(env, aws=Aws(), now=lambda: self.now)
        for number in range(self.n):
            rt.store.work.schedule(f"{number:08x}", self.job, self.now - timedelta(minutes=1))  # type: ignore[arg-type]

        def count(event_name: str, **_: Any) -> None:
            if event_name.endswith(".SendMessageBatch"):
                self.calls[0].batches += 1
            else:
                self.calls[0].queries += 1

        for client in (rt.aws.dynamodb.meta.client, rt.aws.sqs):
            client.meta.events.register("before-call", count)
        send = rt.queues.send_work

        def send_work(job: Any, messages: list[Any]) -> int:
            # the shard pages handed on are the next invocations (read here instead of from the queue)
            self.pages += [m for m in messages if isinstance(m, ShardPage)]
            return send(job, messages)

        rt.queues.send_work = send_work  # type: ignore[method-assign]
        return rt


class _FakeIndex:
    """The work-index port's `due` over in-memory entries (the probe: all of them; a shard: its own), paged as
    DynamoDB pages a Query with `Limit`."""

    def __init__(self, entries: list[Any], calls: list[Calls]) -> None:
        from connector.store.work import SHARDS, shard_of

        self.probe = sorted(entries, key=lambda e: (e.due, e.integration_id))
        self.shards: dict[int, list[Any]] = {s: [] for s in range(SHARDS)}
        for entry in self.probe:
            self.shards[shard_of(entry.integration_id)].append(entry)
        self.calls = calls

    def due(
        self, job: str, shard: int | None, *, until: str, limit: int, start: dict[str, str] | None = None
    ) -> tuple[list[Any], dict[str, str] | None]:
        self.calls[0].queries += 1
        source = self.probe if shard is None else self.shards[shard]
        entries = [e for e in source if e.due and e.due <= until]
        first = int(start["at"]) if start else 0
        page = entries[first : first + limit]
        # DynamoDB hands back a LastEvaluatedKey whenever the page is full, more items or not
        return page, ({"at": str(first + limit)} if len(page) == limit else None)


class _FakeQueues:
    """The queue port's `send_work`: one SendMessageBatch call per ten messages; shard pages kept to run next."""

    def __init__(self, pages: list[Any], calls: list[Calls]) -> None:
        self.pages = pages
        self.calls = calls

    def send_work(self, job: str, messages: list[Any]) -> int:
        from connector.models.work import ShardPage

        self.calls[0].batches += math.ceil(len(messages) / 10)
        self.pages += [m for m in messages if isinstance(m, ShardPage)]
        return len(messages)


# --- isolation through the local stack ----------------------------------------------------------------------
def slow_uis(access_token: str) -> Any:
    """A UIS account at a real account's distance: each call answers after `UIS_LATENCY_S`."""
    from tools.sandboxes.uis import UisSandbox

    class SlowUis(UisSandbox):
        def rpc(self, body: Any) -> tuple[int, Any]:
            time.sleep(UIS_LATENCY_S)
            return super().rpc(body)

    return SlowUis(access_tokens=[access_token], sender=lambda *args: 200)


def second_school(stack: Any, uis_url: str) -> str:
    """A second school on the same AlfaCRM account, with its own UIS account, created through the admin API."""
    import httpx

    from tools.localstack.demo_setup import DEMO_SETTINGS
    from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL

    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.url, headers=auth, timeout=30) as api:
        created = api.post(
            "/integrations",
            json={
                "name": "Школа №2",
                "alfacrm": {
                    "hostname": stack.sandboxes["alfacrm"].url,
                    "email": DEFAULT_EMAIL,
                    "api_key": DEFAULT_API_KEY,
                    "branch_id": 1,
                },
                "uis": {"api_url": f"{uis_url}/v2.0", "access_token": "token-b"},
            },
        ).json()
        assert api.put(f"/integrations/{created['id']}/settings", json=DEMO_SETTINGS).status_code == 200
        assert api.post(f"/integrations/{created['id']}/activate").status_code == 200
    stack.sandboxes["alfacrm"].sandbox.add_webhook(1, created["webhooks"]["alfacrm"])
    return str(created["id"])


def upload_delays(stack: Any, pending: Any, *, runs: int = 5) -> tuple[list[float], list[float], bool]:
    """B's upload delays alone and beside A (the demo school) whose UIS hangs; → (alone, beside, whether A
    was still stuck on its hung call when B's last upload arrived).

    `pending` is the deal store the stack's functions write (to see both deal workers done)."""
    from tools.sandboxes.common import ServedApp

    hung_uis = stack.sandboxes["uis"].sandbox
    healthy_uis = slow_uis("token-b")
    served = ServedApp(healthy_uis.app).start()
    try:
        school_a, school_b = stack.demo["id"], second_school(stack, served.url)
        alfacrm = stack.sandboxes["alfacrm"].sandbox

        last: list[str] = []

        def delay(n: int) -> float:
            """A new lead reaches both schools' deal workers; then the upload tick: seconds until B's UIS has it."""
            lead = alfacrm.ui_create_customer({"name": f"Лид {n}", "is_study": 0, "lead_status_id": 1})
            ext_id = f"customer-{lead['id']}"
            last[:] = [ext_id]
            deadline = time.monotonic() + 30
            while not all(("first_sale", ext_id) in pending.pending_keys(iid) for iid in (school_a, school_b)):
                assert time.monotonic() < deadline, "the deal workers did not mark both deals pending"
                time.sleep(0.02)
            time.sleep(1.1)  # ticks are a minute apart: the previous flush's "look again" is due by then
            started = time.monotonic()
            stack.invoke_schedule("DealUploadSchedule")
            while ext_id not in healthy_uis.deals:
                assert time.monotonic() - started < HANG_SECONDS, "B's upload waited for A"
                time.sleep(0.005)
            return time.monotonic() - started

        delay(0)  # B's first flush creates its funnels in UIS: not a normal upload
        stack.wait_idle(timeout=30)
        normal = [delay(n) for n in range(1, runs + 1)]
        stack.wait_idle(timeout=30)
        # school A's UIS hangs: every call sleeps HANG_SECONDS before it is answered
        hung_uis.fail("hang", seconds=HANG_SECONDS, count=1000)
        beside = [delay(n) for n in range(runs + 1, 2 * runs + 1)]
        return normal, beside, last[0] not in hung_uis.deals
    finally:
        hung_uis.release()
        served.stop()


def isolation(port: int = 0) -> tuple[list[float], list[float], bool]:
    """The local stack (moto server, both sandboxes, consumers with the template's concurrency) → B's delays."""
    from connector.runtime import container

    from tools.localstack import LocalStack

    stack = LocalStack(sandbox=True, run_schedules=False, port=port, stack_name="bench-schools")
    stack.start()
    try:
        normal, beside, stuck = upload_delays(stack, container().store.deals)
        return [round(x, 3) for x in normal], [round(x, 3) for x in beside], stuck
    finally:
        stack.stop()


if __name__ == "__main__":
    import json
    import sys

    sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared" / "python")]
    print(json.dumps(run(isolation_run="--no-isolation" not in sys.argv), indent=2, default=str))
