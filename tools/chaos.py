"""`make chaos`: events through the local stack with every fault injected; 0 lost and 0 duplicated, or exit 1.

Several schools, each with its own AlfaCRM and UIS sandbox and an integration made through the admin API.
Managers work in AlfaCRM (leads, status moves, conversions, payments: Customer and Pay webhooks); visitors
write site requests and chats in UIS (finished and lost chats: notifications). The sandboxes' webhooks and
notifications are captured, then each is delivered up to 3 times, shuffled, concurrently; some are lost (only
those a reconciliation recovers: AlfaCRM webhooks → `ReconcileSchedule` reading the change log, lost-chat
notifications → `ChatPollSchedule`), and those passes run through the local stack's schedules endpoint.
A run is a day in a minute: before each tick the job's interval (or backoff) has passed for every school
(`_due_now`: the school's work entry due now, its failures kept), as the scheduler's minutes would pass.
A second container (a fresh connector Runtime in this process) handles an extra copy of duplicated deliveries
at the same moment as the stack's worker: two workers on the same records, so DynamoDB's conditional writes
conflict for real (counted with a botocore hook). Faults (sandboxes' `configure_faults`): AlfaCRM token
expiry, 429, 5xx, hangs past the client's read timeout, creates applied but answered 504; UIS
limit_exceeded, 5xx, uploads applied but answered 504, and one rejected deal per school.

Then the sandboxes are read: what UIS and AlfaCRM hold against what the events should produce (not the
connector's bookkeeping): a deal per customer at its final stage and one per later payment; one lead per
visitor, one comment per request and finished chat, one task per lost chat. Duplicates: effects made twice
(a second lead, comment, task; a deal row received twice; a deal nothing asked for). Losses: effects missing
or stale, except a deal parked with its reason (the rejected ones), which is listed. The seed (`--seed`)
fixes the events and the faults' draws; threads still interleave as they like.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tools.localstack.demo_setup import setup_demo
from tools.sandboxes.alfacrm import API_USER_ID, AlfaCrmSandbox
from tools.sandboxes.common import ServedApp
from tools.sandboxes.uis import UisSandbox

Out = Callable[[str], None]
DEFAULT_SEED = 9
# the fan-out's job per schedule (connector.fanout): each school has a due time per job
SCHEDULE_JOBS = {
    "DealUploadSchedule": "upload",
    "ChatPollSchedule": "poll",
    "ReconcileSchedule": "reconcile",
    "BackfillSchedule": "backfill",
}
SUCCESS_STATUS, FAILURE_STATUS = 4, 5  # demo settings: 4 "Оплатил" is a sale, 5 "Отказ" a failure
MOVES = (2, 3, 4, 5, 7)
ALFACRM_FAULTS = {
    "expire": 0.01,
    "429": 0.03,
    "500": 0.01,
    "502": 0.01,
    "503": 0.01,
    "hang": 0.004,
    "applied_504": 0.04,
}
UIS_FAULTS = {"limit_exceeded": 0.01, "500": 0.02, "502": 0.01, "503": 0.01, "applied_504": 0.2}
# each hang costs its wait; a limit_exceeded up to the minute's reset: capped per school so a run stays within
# minutes (for 1,000 events: 6 hangs and 3 limit_exceeded; a short run: one of each)
FAULT_CAPS_PER_1000 = {"hang": 6, "limit_exceeded": 3}
# every fault kind happens at least once within this many requests that could meet it (a short run too)
EACH_WITHIN = {"alfacrm": 10, "uis": 4}
HANG_SECONDS = 1.5  # the client's read timeout is cut to 1 s for the run (20 s in production)


@dataclass
class Delivery:
    kind: str  # "alfacrm" | "uis"
    url: str
    body: bytes | None
    headers: dict[str, str]
    event: str  # UIS event name, or the AlfaCRM entity


@dataclass
class School:
    index: int
    alfacrm: AlfaCrmSandbox
    uis: UisSandbox
    served: list[ServedApp] = field(default_factory=list)
    integration_id: str = ""
    leads: list[int] = field(default_factory=list)
    clients: list[int] = field(default_factory=list)
    visitors: list[tuple[str, str]] = field(default_factory=list)  # (name, phone)
    requests: list[str] = field(default_factory=list)  # markers in the request texts
    chats: list[str] = field(default_factory=list)  # markers in the finished chats' messages
    lost: list[str] = field(default_factory=list)  # visitor names of lost chats
    rejected: str = ""


class Capture:
    """The sandboxes' outbound sender: webhooks and notifications kept, to be delivered the chaos way."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[Delivery] = []
        self.total: Counter[str] = Counter()

    def sender(self, kind: str) -> Callable[[str, str, bytes | None, dict[str, str]], int]:
        def send(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> int:
            event = "?"
            if body:
                parsed = json.loads(body)
                event = str(parsed.get("entity") or "") if kind == "alfacrm" else _uis_event(parsed)
            with self.lock:
                self.pending.append(Delivery(kind, url, body, dict(headers), event))
                self.total[f"{kind}:{event}"] += 1
            return 200

        return send

    def take(self) -> list[Delivery]:
        with self.lock:
            taken, self.pending = self.pending, []
        return taken


def _uis_event(body: dict[str, Any]) -> str:
    if "offline_message_id" in body:
        return "offline_message"
    return "chat_finished" if "status" in body else "lost_chat"


class ConflictCounter:
    """Counts DynamoDB's refused conditional writes in this process (botocore hook on every client)."""

    def __init__(self) -> None:
        import boto3

        self.count = 0
        self._lock = threading.Lock()
        # the session boto3.client() uses: the containers built after this share its event hooks
        boto3._get_default_session().events.register("after-call.dynamodb", self._after)

    def _after(self, parsed: Any = None, **_: Any) -> None:
        code = (parsed or {}).get("Error", {}).get("Code", "") if isinstance(parsed, dict) else ""
        if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            with self._lock:
                self.count += 1


class Chaos:
    def __init__(
        self, *, events: int, seed: int, schools: int, port: int, alfacrm_rps: int = 4, out: Out = print
    ) -> None:
        self.events, self.seed, self.port, self.out = events, seed, port, out
        self.alfacrm_rps = alfacrm_rps
        self.caps = {kind: max(1, cap * events // 1000) for kind, cap in FAULT_CAPS_PER_1000.items()}
        self.rng = random.Random(seed)
        self.capture = Capture()
        self.school_count = schools
        self.schools: list[School] = []
        self.stats: Counter[str] = Counter()
        self.second: Any = None  # the second container's Runtime
        self._visitor_seq = 0
        self.faults_on = self.second_on = True
        self.lost_deliveries: list[Delivery] = []
        self.phases: dict[str, float] = {}
        self.reconciled_at: list[str] = []

    # ------------------------------------------------------------------ set-up
    def start(self) -> None:
        began = time.monotonic()
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        from tools.localstack import LocalStack

        self.stack = LocalStack(
            port=self.port,
            sandbox=False,
            run_schedules=False,
            out=lambda line: None,
            extra_env={
                "POWERTOOLS_LOG_LEVEL": "ERROR",
                "POWERTOOLS_METRICS_DISABLED": "true",
                # the per-account AlfaCRM budget (4 req/s in production; a short run may space less)
                "ALFACRM_RPS": str(self.alfacrm_rps),
                "ALFACRM_ACCOUNT_RPS": str(self.alfacrm_rps),
            },
        )
        self.conflicts = ConflictCounter()
        self.stack.start()
        _quiet()
        # a hung AlfaCRM costs the client's read timeout: 1 s here instead of 20 (module constants, read when
        # a container builds its pool, i.e. at its first call, after this)
        from connector.alfacrm import client as alfacrm_client
        from connector.uis import client as uis_client

        alfacrm_client.TIMEOUT = httpx.Timeout(1.0, connect=1.0)
        uis_client.TIMEOUT = httpx.Timeout(5.0, connect=1.0, pool=5.0)
        # the schools are set up side by side (each its own sandboxes and integration)
        with ThreadPoolExecutor(max_workers=self.school_count) as pool:
            self.schools = list(pool.map(self._school, range(self.school_count)))
        self.capture.take()  # nothing yet; setup made no customer
        from connector.runtime import Runtime

        self.second = Runtime.from_environment()
        # the hourly reconciler has run before the day's work (its first run only marks where the log ends)
        self.schedule("ReconcileSchedule")
        # the first activation's backfill has imported what the accounts held (a chunk a fault cut short
        # backs off; here it runs again at once)
        for _ in range(4):
            self.schedule("BackfillSchedule")
            states = [self.second.store.backfill.get(s.integration_id) for s in self.schools]
            if all(state is None or state.state != "running" for state in states):
                break
        self.phases["start"] = round(time.monotonic() - began, 1)

    def _school(self, index: int) -> School:
        # the sandbox's own burst limiter (5 req/s) follows the budget; 429s are injected besides
        school = School(index, AlfaCrmSandbox(burst_limit=max(5, self.alfacrm_rps + 1)), UisSandbox())
        for sandbox in (school.alfacrm, school.uis):
            school.served.append(ServedApp(sandbox.app).start())
        created = setup_demo(self.stack.url, self.stack.admin_token, school.served[0].url, school.served[1].url)
        school.integration_id = created["id"]
        school.alfacrm.set_sender(self.capture.sender("alfacrm"))
        school.uis.sender = self.capture.sender("uis")
        school.alfacrm.configure_faults(
            ALFACRM_FAULTS if self.faults_on else {},
            seed=self.seed * 100 + index,
            caps=self.caps,
            hang_seconds=HANG_SECONDS,
            each_within=EACH_WITHIN["alfacrm"],
        )
        return school

    def stop(self) -> None:
        for school in self.schools:
            for served in school.served:
                served.stop()
        self.stack.stop()

    # ------------------------------------------------------------------ events
    def act(self, school: School) -> None:
        """One thing a manager or a visitor does (each fires one webhook or notification)."""
        rng = self.rng
        roll = rng.random()
        crm = school.alfacrm
        if roll < 0.25 or not school.leads:
            n = len(school.leads) + len(school.clients) + 1
            model = crm.ui_create_customer(
                {
                    "name": f"Ученик {school.index}-{n}",
                    "is_study": 0,
                    "lead_status_id": 1,
                    "phone": [_phone(9, school.index, n)],
                }
            )
            school.leads.append(int(model["id"]))
            if not school.rejected:
                school.rejected = f"customer-{model['id']}"
                school.uis.configure_faults(
                    UIS_FAULTS if self.faults_on else {},
                    seed=self.seed * 100 + 50 + school.index,
                    caps=self.caps,
                    reject_deals=[school.rejected],
                    each_within=EACH_WITHIN["uis"],
                )
        elif roll < 0.45:
            crm.ui_update_customer(rng.choice(school.leads), {"lead_status_id": rng.choice(MOVES)})
        elif roll < 0.52:
            customer = school.leads.pop(rng.randrange(len(school.leads)))
            crm.ui_update_customer(customer, {"is_study": 1})
            school.clients.append(customer)
        elif roll < 0.65 and school.clients:
            income = rng.choice((1500, 3500, 4800, 6000))
            crm.ui_create_pay({"customer_id": rng.choice(school.clients), "income": str(income), "teacher_id": 1})
        elif roll < 0.80:
            name, phone = self._visitor(school)
            self.stats["requests"] += 1
            marker = f"chaos-req-{school.index}-{self.stats['requests']}"
            school.requests.append(marker)
            school.uis.submit_request(visitor_name=name, visitor_phone_number=phone, text=f"Перезвоните ({marker})")
        elif roll < 0.93:
            name, phone = self._visitor(school)
            self.stats["chats"] += 1
            marker = f"chaos-chat-{school.index}-{self.stats['chats']}"
            school.chats.append(marker)
            chat = school.uis.start_chat(visitor_name=name, visitor_phone_number=phone, message=f"Вопрос ({marker})")
            school.uis.take_chat(chat["id"], employee_id=11)
            school.uis.post_message(chat["id"], "Ответ оператора", source="operator", employee_id=11)
            school.uis.finish_chat(chat["id"])
        else:
            self._visitor_seq += 1
            name, phone = f"Потерянный {school.index}-{self._visitor_seq}", _phone(5, school.index, self._visitor_seq)
            school.lost.append(name)
            chat = school.uis.start_chat(visitor_name=name, visitor_phone_number=phone, message="Есть кто?")
            school.uis.lose_chat(chat["id"])

    def _visitor(self, school: School) -> tuple[str, str]:
        """A visitor who writes again now and then (found by phone: one lead, several comments)."""
        if school.visitors and self.rng.random() < 0.3:
            return self.rng.choice(school.visitors)
        self._visitor_seq += 1
        visitor = (f"Посетитель {school.index}-{self._visitor_seq}", _phone(6, school.index, self._visitor_seq))
        school.visitors.append(visitor)
        return visitor

    # ------------------------------------------------------------------ delivery
    def deliver(self, deliveries: list[Delivery]) -> None:
        """Each delivery 0–3 times (0 only where a reconciliation recovers it: the first of each such kind and
        5 % of the rest), shuffled, 4 at a time."""
        sends: list[Delivery] = []
        seconds: list[Delivery] = []
        for delivery in deliveries:
            recoverable = delivery.kind == "alfacrm" or delivery.event == "lost_chat"
            first = recoverable and not any(d.event == delivery.event for d in self.lost_deliveries)
            if recoverable and (first or self.rng.random() < 0.05):
                self.stats["lost"] += 1
                self.lost_deliveries.append(delivery)
                continue
            copies = self.rng.choices((1, 2, 3), weights=(55, 28, 17))[0]
            self.stats["copies"] += copies
            sends.extend([delivery] * copies)
            if copies > 1 and self.rng.random() < 0.5 and self.second_on:
                seconds.append(delivery)
        self.rng.shuffle(sends)
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(self._post, d) for d in sends]
            futures += [pool.submit(self._second_container, d) for d in seconds]
            for future in futures:
                future.result()

    def _post(self, delivery: Delivery) -> None:
        with httpx.Client(timeout=30) as http:
            reply = http.request("POST", delivery.url, content=delivery.body, headers=delivery.headers)
        self.stats[f"intake_{reply.status_code}"] += 1

    def _second_container(self, delivery: Delivery) -> None:
        """The copy SQS hands to a second consumer: the use case run by another container, concurrently."""
        from connector.deals.worker import handle_deal_event_once
        from connector.models.messages import DealEventMessage
        from connector.texts.worker import TextWorker

        school = next(s for s in self.schools if delivery.url.startswith(self._hook_base(s, delivery.kind)))
        body = json.loads(delivery.body or b"{}")
        received = datetime.now(UTC).isoformat()
        try:
            if delivery.kind == "alfacrm":
                message = DealEventMessage(
                    integration_id=school.integration_id, received_at=received, source="webhook", event=body
                )
                handle_deal_event_once(self.second, message)
            else:
                TextWorker(self.second).handle(
                    {
                        "integration_id": school.integration_id,
                        "received_at": received,
                        "source": "notification",
                        "event": None,
                        "method": "POST",
                        "payload": body,
                    }
                )
            self.stats["second_done"] += 1
        except Exception:  # an error there is an SQS retry; the stack's own copies still arrive
            self.stats["second_failed"] += 1

    def _hook_base(self, school: School, kind: str) -> str:
        hooks = (
            {h["url"] for h in school.alfacrm.webhooks}
            if kind == "alfacrm"
            else {n["url"] for n in school.uis.notifications.values()}
        )
        return next(iter(hooks))

    # ------------------------------------------------------------------ the run
    def schedule(self, name: str) -> Any:
        job = SCHEDULE_JOBS.get(name)
        if job is not None:
            self._due_now(job)
        if name == "ReconcileSchedule":
            self.reconciled_at.append(datetime.now().strftime("%H:%M:%S.%f")[:-3])
        reply = httpx.post(f"{self.stack.url}/_local/schedules/{name}", timeout=300)
        self.stats[f"schedule_{name}_{reply.status_code}"] += 1
        return reply.json()

    def _due_now(self, job: str) -> None:
        """Every school's `job` due now, its failures and last error kept (its interval or backoff has passed);
        a school without an entry has no such work (an upload settled: nothing pending)."""
        from connector.timeutil import from_iso

        work = self.second.store.work
        for school in self.schools:
            entry = work.get(school.integration_id, job)
            if entry is None or entry.due is None:
                continue
            ran = from_iso(entry.last_run_at) if entry.last_run_at else None
            work.schedule(
                school.integration_id, entry.job, self.second.now(), failures=entry.failures, error=entry.last_error,
                ran_at=ran,
            )  # fmt: skip

    def _footprint(self) -> list[tuple[int, int]]:
        """Per school: AlfaCRM's change-log length and the connector's deal versions summed (a round that
        changes neither found nothing)."""
        deals = self.second.store.deals
        return [
            (len(s.alfacrm.state()["log"]), sum(d.version for d in deals.list_deals(s.integration_id)))
            for s in self.schools
        ]

    def _reconcile_errors(self) -> list[str]:
        """The last error of each school whose reconciliation failed (it backs off; here it runs again at once)."""
        entries = [self.second.store.work.get(s.integration_id, "reconcile") for s in self.schools]
        return [str(e.last_error) for e in entries if e is not None and e.failures]

    def settle(self) -> None:
        """Deliver what the sandboxes sent until nothing is pending and the stack is idle."""
        for _ in range(50):
            batch = self.capture.take()
            if batch:
                self.deliver(batch)
            self.stack.wait_idle(timeout=600)
            if not self.capture.pending:
                return

    def run(self) -> int:
        started = mark = time.monotonic()

        def phase(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            self.phases[name] = round(now - mark, 1)
            mark = now

        actions = 0
        while sum(self.capture.total.values()) < self.events:
            for _ in range(40):
                self.act(self.schools[actions % len(self.schools)])
                actions += 1
            self.deliver(self.capture.take())
            self.schedule("DealUploadSchedule")
        phase("events")
        self.settle()
        phase("settle")
        # the reconciliation passes: missed AlfaCRM changes from the change log, lost chats from the report.
        # A pass can leave work for the next hourly run: one a fault cut short backs off (its error in the work
        # entry), and a lost chat the poller finds becomes a lead whose own create webhook may be lost too (made
        # after the reconciler read the log). Here the next run comes at once, until a round fails nowhere and
        # changes nothing, neither in AlfaCRM nor in the connector's deals (at most 4 rounds).
        for round_ in range(4):
            if round_:
                self.stats["reconcile_again"] += 1
            before = self._footprint()
            self.passes = {name: self.schedule(name) for name in ("ReconcileSchedule", "ChatPollSchedule")}
            self.settle()
            left = self._reconcile_errors()
            if left:
                self.out(f"reconciler again after: {left}")
            elif self._footprint() == before:
                break
        phase("reconciliation")
        # the uploader runs every minute: a flush a UIS fault cut short (deferred, every pending mark kept) runs
        # again, as the next minute's would, until a pass finds nothing pending (at most 12)
        self.last_uploads: list[Any] = []
        for _ in range(12):
            reply = self.schedule("DealUploadSchedule")
            self.settle()
            pending = {s.index: len(self.second.store.deals.pending_keys(s.integration_id)) for s in self.schools}
            self.last_uploads.append({**reply, "pending": pending})
            if len(self.last_uploads) >= 2 and not any(pending.values()):
                break
        phase("last uploads")
        self.elapsed = time.monotonic() - started
        return self.report()

    # ------------------------------------------------------------------ the verdict
    def report(self) -> int:
        out = self.out
        duplicates: list[str] = []
        losses: list[str] = []
        effects: Counter[str] = Counter()
        parked: list[tuple[str, str, str]] = []
        for school in self.schools:
            items = self._parked(school)
            parked += [
                (school.integration_id, f"{p['kind']}#{p['key']}", f"{p.get('code')}: {str(p.get('error'))[:160]}")
                for p in items
            ]
            parked_keys = {str(p["key"]) for p in items}
            self._check_deals(school, parked_keys, effects, duplicates, losses)
            self._check_texts(school, effects, duplicates, losses)
        faults: Counter[str] = Counter()
        for school in self.schools:
            faults.update({f"alfacrm {k}": v for k, v in school.alfacrm.faults.injected.items()})
            faults.update({f"uis {k}": v for k, v in school.uis.faults.injected.items()})
        dlq = sum(self.stack._queue_depth(url) for lid, url in self.stack.queue_urls.items() if lid.endswith("DLQ"))
        events_in = sum(self.capture.total.values())
        out(f"seed {self.seed}: {len(self.schools)} schools, {self.elapsed:.0f} s")
        out(f"events in: {events_in} ({', '.join(f'{k} {v}' for k, v in sorted(self.capture.total.items()))})")
        out(
            f"deliveries: {self.stats['copies']} posted, {self.stats['lost']} lost (left to reconciliation), "
            f"{self.stats['second_done'] + self.stats['second_failed']} to a second container "
            f"({self.stats['second_failed']} refused there, e.g. in progress); intake replies "
            + ", ".join(f"{k[7:]}: {v}" for k, v in sorted(self.stats.items()) if k.startswith("intake_"))
        )
        out(f"faults injected: {', '.join(f'{k} {v}' for k, v in sorted(faults.items()))}")
        out(f"DynamoDB conditional-write conflicts: {self.conflicts.count}; dead letters left: {dlq}")
        out(f"effects out: {', '.join(f'{k} {v}' for k, v in sorted(effects.items()))}")
        if os.environ.get("CHAOS_DEBUG"):
            out(f"phases (s): {self.phases}")
            out(f"reconciliation rounds: {1 + self.stats['reconcile_again']}")
            passes = json.dumps(self.passes, ensure_ascii=False, default=str)[:1500]
            out(f"reconciliation passes (the last round): {passes}")
            out(f"last uploads: {json.dumps(self.last_uploads, ensure_ascii=False, default=str)[:3000]}")
        out(f"parked: {len(parked)}")
        for integration_id, key, reason in parked:
            out(f"  {integration_id[:8]} {key}: {reason}")
        out(f"duplicates: {len(duplicates)}")
        for line in duplicates[:20]:
            out(f"  {line}")
        out(f"losses: {len(losses)}")
        for line in losses[:20]:
            out(f"  {line}")
        missing = [f"alfacrm {k}" for s in self.schools for k in s.alfacrm.faults.missing()]
        missing += [f"uis {k}" for s in self.schools for k in s.uis.faults.missing()]
        self.result = {
            "events": events_in,
            "duplicates": len(duplicates),
            "losses": len(losses),
            "parked": len(parked),
            # what the run must have met: every fault kind at every school, lost and concurrent deliveries
            "faults_missing": sorted(set(missing)) if self.faults_on else [],
            "lost_deliveries": sorted({d.event for d in self.lost_deliveries}),
            "second_container": self.stats["second_done"] + self.stats["second_failed"],
            "conflicts": self.conflicts.count,
        }
        out(f"result: {json.dumps(self.result)}")
        return 1 if duplicates or losses else 0

    def _parked(self, school: School) -> list[dict[str, Any]]:
        reply = httpx.get(
            f"{self.stack.url}/integrations/{school.integration_id}/parked",
            headers={"Authorization": f"Bearer {self.stack.admin_token}"},
            timeout=30,
        )
        body = reply.json()
        items = body.get("items", body) if isinstance(body, dict) else body
        return list(items or [])

    def _check_deals(
        self, school: School, parked: set[str], effects: Counter[str], dup: list[str], lost: list[str]
    ) -> None:
        crm, uis = school.alfacrm.state(), school.uis.state()
        tag = f"school {school.index}"
        # the customers the run created, and those the account had before: the first activation's backfill
        # (connector.deals.backfill) makes their deals
        customers = {c["id"]: c for c in crm["customers"]}
        expected: dict[str, str | None] = {}
        for cid, customer in customers.items():
            status = customer.get("lead_status_id")
            status = int(status) if status not in (None, "") else None
            if int(customer.get("is_study") or 0) == 1 or status == SUCCESS_STATUS:
                stage = "success"
            elif status == FAILURE_STATUS:
                stage = "failed"
            else:
                stage = "no_status" if status is None else str(status)
            expected[f"customer-{cid}"] = stage
        pays: dict[int, list[int]] = {}
        for pay in crm["pays"]:
            if int(pay.get("customer_id") or 0) in customers and float(pay.get("income") or 0) > 0:
                pays.setdefault(int(pay["customer_id"]), []).append(int(pay["id"]))
        for ids in pays.values():
            expected.update({f"pay-{pid}": None for pid in sorted(ids)[1:]})
        deals = {d["ext_id"]: d for d in uis["deals"]}
        effects["UIS deals"] += len(deals)
        effects["UIS deal rows"] += len(uis["rows_received"])
        for ext_id, stage in expected.items():
            deal = deals.get(ext_id)
            if any(key.split("#")[-1] == ext_id for key in parked):
                continue
            if deal is None:
                lost.append(f"{tag}: no UIS deal {ext_id}" + self._why(school, ext_id))
            elif stage is not None and deal["stage_ext_id"] != stage:
                lost.append(f"{tag}: UIS deal {ext_id} at {deal['stage_ext_id']}, AlfaCRM says {stage}")
        for ext_id in deals:
            if ext_id not in expected:
                dup.append(f"{tag}: UIS deal {ext_id} that no event asked for")
                if os.environ.get("CHAOS_DEBUG") and ext_id.startswith("pay-"):
                    pay = next(p for p in crm["pays"] if p["id"] == int(ext_id[4:]))
                    dup.append(
                        f"    {pay} / {[p['id'] for p in crm['pays'] if p['customer_id'] == pay['customer_id']]}"
                    )
        # a row received twice exactly as it was: a blind re-send (the current stage sent again carrying a change
        # — a payment's revenue, a contact — is how an update reaches UIS, not a duplicate)
        rows = Counter(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in uis["rows_received"])
        repeated = [(json.loads(row), n) for row, n in rows.items() if n > 1]
        dup += [
            f"{tag}: UIS received {(r['ext_id'], r['stage_ext_id'], r['modified_stage_date_time'])} {n} times"
            for r, n in repeated
        ]
        if os.environ.get("CHAOS_DEBUG"):
            for twice, _ in repeated:
                copies = [r for r in uis["rows_received"] if r["ext_id"] == twice["ext_id"]]
                dup += [f"    {json.dumps(r, ensure_ascii=False)[:400]}" for r in copies]
        if school.rejected and school.rejected in deals:
            dup.append(f"{tag}: the rejected deal {school.rejected} is in UIS")

    def _why(self, school: School, ext_id: str) -> str:
        entity_id = int(ext_id.split("-")[1])
        gone = [
            json.loads(d.body or b"{}").get("event")
            for d in self.lost_deliveries
            if school.alfacrm.webhooks
            and d.url == school.alfacrm.webhooks[0]["url"]
            and json.loads(d.body or b"{}").get("entity_id") == entity_id
        ]
        entries = [
            e for e in school.alfacrm.state()["log"] if e["entity_id"] == entity_id and e["entity"] == "Customer"
        ]
        log: list[Any] = [e["event"] for e in entries]
        if os.environ.get("CHAOS_DEBUG"):
            # who made the change and when, against when the reconciler read the log
            log += [f"user {e['user_id']} at {e['date_time']}" for e in entries]
            log.append(f"reconciler passes at {self.reconciled_at}")
        found = ""
        if os.environ.get("CHAOS_DEBUG"):
            reply = httpx.get(
                f"{self.stack.url}/integrations/{school.integration_id}/deals",
                headers={"Authorization": f"Bearer {self.stack.admin_token}"},
                timeout=30,
            ).json()
            items = reply.get("items", reply) if isinstance(reply, dict) else reply
            found = f", connector: {[d for d in items or [] if ext_id in json.dumps(d)]}"[:1500]
        return f" (lost webhooks {gone}, log {log}{found})"

    def _why_chat(self, school: School, name: str) -> str:
        chat = next(c for c in school.uis.state()["chats"] if c["visitor_name"] == name)
        gone = any(f'"chat_id": {chat["id"]}' in (d.body or b"").decode() for d in self.lost_deliveries)
        return f" (chat {chat['id']} at {chat['date_time']}, its notification lost: {gone})"

    def _check_texts(self, school: School, effects: Counter[str], dup: list[str], lost: list[str]) -> None:
        crm = school.alfacrm.state()
        tag = f"school {school.index}"
        by_api = [
            c
            for c in crm["customers"]
            if any(
                e["entity_id"] == c["id"] and e["user_id"] == API_USER_ID and _customer_created(e) for e in crm["log"]
            )
        ]
        effects["AlfaCRM leads"] += len(by_api)
        for name, phone in school.visitors:
            digits = phone[-10:]
            found = [
                c
                for c in by_api
                if any(digits in "".join(ch for ch in str(p) if ch.isdigit()) for p in c.get("phone") or [])
            ]
            if not found:
                lost.append(f"{tag}: no lead for visitor {name}")
            elif len(found) > 1:
                dup.append(f"{tag}: {len(found)} leads for visitor {name}")
        comments = [str(c.get("comment") or "") for c in crm["communications"]]
        effects["AlfaCRM comments"] += len(comments)
        for marker in school.requests + school.chats:
            n = sum(f"({marker})" in c for c in comments)
            if n == 0:
                lost.append(f"{tag}: no comment for {marker}")
            elif n > 1:
                dup.append(f"{tag}: {n} comments for {marker}")
                if os.environ.get("CHAOS_DEBUG"):
                    dup += [f"    {c[:300]!r}" for c in comments if f"({marker})" in c]
        titles = [str(t.get("title") or "") for t in crm["tasks"]]
        effects["AlfaCRM tasks"] += len(titles)
        for name in school.lost:
            n = sum(f"{name} +" in t for t in titles)
            if n == 0:
                lost.append(f"{tag}: no task for the lost chat of {name}" + self._why_chat(school, name))
            elif n > 1:
                dup.append(f"{tag}: {n} tasks for the lost chat of {name}")
                if os.environ.get("CHAOS_DEBUG"):
                    dup += [f"    {t!r}" for t in titles if f"{name} +" in t]


def _customer_created(entry: dict[str, Any]) -> bool:
    # log/index's `event` is an integer as real accounts send it: 1 create, 2 update, 3 delete
    return bool(entry["entity"] == "Customer" and entry["event"] == 1)


def _phone(prefix: int, school: int, n: int) -> str:
    return f"+79{prefix}{school}{n:07d}"


def _quiet() -> None:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from connector.observability import logger

    for handler in list(logger._logger.handlers):
        logger._logger.removeHandler(handler)
    logger._logger.addHandler(logging.NullHandler())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="webhooks and notifications to make (≥)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="fixes the events and the fault draws")
    parser.add_argument("--schools", type=int, default=3)
    parser.add_argument("--no-faults", action="store_true", help="switch the sandboxes' faults off")
    parser.add_argument("--no-second", action="store_true", help="no second container")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3500")))
    parser.add_argument("--alfacrm-rps", type=int, default=4, help="AlfaCRM requests per second per account")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    print(f"chaos: seed {args.seed} (re-run with --seed {args.seed}), {args.events} events, {args.schools} schools")
    chaos = Chaos(
        events=args.events, seed=args.seed, schools=args.schools, port=args.port, alfacrm_rps=args.alfacrm_rps
    )
    chaos.faults_on, chaos.second_on = not args.no_faults, not args.no_second
    chaos.start()
    try:
        return chaos.run()
    finally:
        chaos.stop()


if __name__ == "__main__":
    sys.exit(main())
