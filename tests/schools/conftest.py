"""Fixtures for the per-school fan-out tests: several schools, each with its own UIS sandbox (funnels and
deals per account), one AlfaCRM sandbox, the moto queues of the template, a hand-driven clock.

`Schools.drain(job)` plays the job worker's event source: it receives the job's FIFO queue (moto keeps a
message group to one message in flight) and hands each message to `fanout.handle_work`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from connector.alfacrm.client import AlfaCrmClient
from connector.deals.backfill import backfill_job
from connector.deals.reconcile import reconcile_job
from connector.deals.uploader import upload_job
from connector.deals.worker import handle_deal_event
from connector.fanout import Runner, WorkOutcome, handle_work, tick
from connector.models.work import WORK_MESSAGE, Job, TickInput
from connector.retry import RateLimiter, RetryPolicy
from connector.runtime import Runtime
from connector.settings import Integration
from connector.store import Store
from connector.texts.poller import poll_job
from connector.timeutil import local_to_utc
from connector.uis.client import UisClient

from tests.api.builders import stored_integration
from tests.conftest import runtime
from tests.deals.builders import TZ, message
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox, ManualClock
from tools.sandboxes.uis import UisSandbox

ALFA_HOST = "http://alfacrm.sandbox"
DEAL_SETTINGS: dict[str, Any] = {
    "deals": {"enabled": True, "first_sale": {"success_status_ids": [4], "failure_status_ids": [5]}},
}

# every job's runner, as the three job functions hand them in
RUNNERS: dict[Job, Runner] = {
    "upload": upload_job,
    "poll": poll_job,
    "reconcile": reconcile_job,
    "backfill": backfill_job,
}


class PerSchool:
    """A `ClientFactory`: the shared AlfaCRM sandbox, and each school's own UIS sandbox."""

    def __init__(self, alfacrm: AlfaCrmClient) -> None:
        self.alfacrm_client = alfacrm
        self.uis_clients: dict[str, UisClient] = {}

    def alfacrm(self, integration: Integration) -> AlfaCrmClient:
        return self.alfacrm_client

    def uis(self, integration: Integration) -> UisClient:
        return self.uis_clients[integration.id]


class Schools:
    def __init__(self, store: Store, clock: ManualClock, queue_urls: dict[str, str], sqs: Any) -> None:
        self.clock = clock
        self.sqs = sqs
        self.queue_urls = queue_urls
        self.webhooks: list[dict[str, Any]] = []
        self.alfacrm = AlfaCrmSandbox(clock=clock, sender=self._capture, seed=False, burst_limit=10_000)
        self.alfacrm.add_webhook(1, "http://connector.test/hooks/alfacrm/any/secret")
        self._http: list[httpx.Client] = []
        alfa_http = self._client(self.alfacrm.app, base_url=ALFA_HOST)
        self.retry = RetryPolicy(attempts=1, sleep=clock.sleep)
        self.clients = PerSchool(
            AlfaCrmClient(
                ALFA_HOST, DEFAULT_EMAIL, DEFAULT_API_KEY, http=alfa_http, retry=self.retry, limiter=RateLimiter(0)
            )
        )
        self.uis: dict[str, UisSandbox] = {}
        self.rt: Runtime = runtime(store=store, clients=self.clients, now=self.now)

    def _capture(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> int:
        self.webhooks.append(json.loads(body or b"{}"))
        return 200

    def _client(self, app: Any, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(transport=httpx.WSGITransport(app=app), **kwargs)
        self._http.append(client)
        return client

    def close(self) -> None:
        for client in self._http:
            client.close()

    def now(self) -> datetime:
        return local_to_utc(self.clock(), TZ)

    # --- schools and their work ------------------------------------------------------------------------
    def add(self, iid: str, settings: dict[str, Any] | None = None) -> Integration:
        token = f"token-{iid}"
        self.uis[iid] = UisSandbox(clock=self.clock, access_tokens=[token], sender=lambda *args: 200)
        http = self._client(self.uis[iid].app)
        self.clients.uis_clients[iid] = UisClient("http://uis.sandbox/v2.0", token, http=http, retry=self.retry)
        return stored_integration(self.rt.store, integration_id=iid, settings=settings or DEAL_SETTINGS)

    def new_lead(self, iid: str, name: str = "Зайцева Ольга") -> int:
        """A manager adds a lead in AlfaCRM and its webhook reaches school `iid`'s deal worker: a pending deal."""
        lead = self.alfacrm.ui_create_customer({"name": name, "is_study": 0, "lead_status_id": 1})
        for body in self.webhooks:
            handle_deal_event(self.rt, message(body, iid))
        self.webhooks.clear()
        return int(lead["id"])

    def tick(self, job: Job) -> Any:
        return tick(self.rt, TickInput(job=job).job, at=self.now())

    def queued(self, job: Job) -> list[dict[str, Any]]:
        """What sits on the job's queue (received, then made visible again)."""
        url = self.rt.queues.work_queue_url(job)
        messages: list[dict[str, Any]] = []
        while reply := self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=30
        ).get("Messages"):
            messages += reply
        for m in messages:
            self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        return [{**json.loads(m["Body"]), "group": m["Attributes"]["MessageGroupId"]} for m in messages]

    def drain(self, job: Job, *, limit: int = 100) -> list[WorkOutcome]:
        """Run the job's queue empty (shard pages included), as its worker would, one message at a time."""
        url = self.rt.queues.work_queue_url(job)
        outcomes: list[WorkOutcome] = []
        while len(outcomes) < limit:
            reply = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30)
            if not reply.get("Messages"):
                return outcomes
            [m] = reply["Messages"]
            outcomes.append(
                handle_work(
                    self.rt, WORK_MESSAGE.validate_json(m["Body"]), runners=RUNNERS, remaining_ms=lambda: 300_000
                )
            )
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return outcomes

    def uploaded(self, iid: str) -> set[str]:
        return set(self.uis[iid].deals)


@pytest.fixture
def schools(store: Store, queue_urls: dict[str, str], sqs: Any) -> Iterator[Schools]:
    world = Schools(store, ManualClock(datetime(2025, 3, 3, 9, 0, 0)), queue_urls, sqs)
    yield world
    world.close()
