"""Lost chats and the chat poller: both sandboxes in-process on one hand-driven clock, the moto store.

One `World` holds the account-local clock (naive, Europe/Moscow) that drives the UIS sandbox, the AlfaCRM
sandbox, the clients' rate limiters and retry sleeps, the poller's UTC clock and the claims' epoch clock,
so "five minutes later" is `world.advance(300)` and nothing ever really sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from connector.alfacrm.client import AlfaCrmClient
from connector.retry import RateLimiter, RetryPolicy
from connector.runtime import Runtime
from connector.settings import Integration, SettingsDocument, parse_settings
from connector.store import Store
from connector.texts.facts import chat_facts, merge_chat_report, report_chat_facts
from connector.texts.lost_chats import LostChatTasks
from connector.texts.poller import ChatPoller, PollPolicy
from connector.timeutil import local_to_utc
from connector.uis.client import UisClient
from connector.uis.notifications import parse_message

from tests.conftest import runtime
from tests.support import RecordingSender, sandbox_integration
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox
from tools.sandboxes.uis import DEFAULT_TOKEN, UisSandbox

TZ = "Europe/Moscow"
START = datetime(2025, 3, 14, 12, 0, 0)  # account-local
ALFA_HOST = "http://alfacrm.test"
UIS_URL = "http://uis.test/v2.0"
MANAGER_IDS = [1]  # a user the AlfaCRM sandbox seeds


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:  # the sandboxes' account-local, zone-less time
        return self.now

    def utc(self) -> datetime:
        return local_to_utc(self.now, TZ)

    def epoch(self) -> float:
        return self.utc().timestamp()

    def monotonic(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


class Outbox(RecordingSender):
    """Where the UIS sandbox "delivers" notifications: kept, so a test decides when the worker sees them."""


class Factory:
    """The test ClientFactory: one sandbox-backed client per service; counts who asked for one."""

    def __init__(self, alfacrm: AlfaCrmClient, uis: UisClient) -> None:
        self._alfacrm, self._uis = alfacrm, uis
        self.uis_requests = 0

    def alfacrm(self, integration: Integration) -> AlfaCrmClient:
        return self._alfacrm

    def uis(self, integration: Integration) -> UisClient:
        self.uis_requests += 1
        return self._uis


def settings_doc(**chats: Any) -> SettingsDocument:
    """Chats on, lost-chat task on (assigned to a manager, due in 24 h), leads on chat end; override any key."""
    doc: dict[str, Any] = {
        "texts": {
            "branch_id": 1,
            "chats": {
                "enabled": True,
                "filters": {"sites": [], "channels": [], "tags": []},
                "create_lead": {"enabled": True, "on": "chat_finished", "tags": []},
                "lost_chat_task": {
                    "enabled": True,
                    "title": "Потерянный чат: {visitor_name} {visitor_phone} ({channel})",
                    "assigned_ids": MANAGER_IDS,
                    "due_hours": 24,
                },
            },
        }
    }
    doc["texts"]["chats"].update(chats)
    return parse_settings(doc)


@dataclass
class World:
    clock: Clock
    uis: UisSandbox
    alfacrm: AlfaCrmSandbox
    outbox: Outbox
    rt: Runtime
    clients: Factory
    queue_url: str
    sqs: Any
    events: list[dict[str, Any]] = field(default_factory=list)  # every text event the worker step saw

    @property
    def store(self) -> Store:
        return self.rt.store

    # --- the integration ---------------------------------------------------------------------------
    def integration(
        self, settings: SettingsDocument | None = None, *, active: bool = True, iid: str = "int1"
    ) -> Integration:
        return sandbox_integration(
            self.store,
            settings or settings_doc(),
            hostname=ALFA_HOST,
            email=DEFAULT_EMAIL,
            api_url=UIS_URL,
            timezone=TZ,
            iid=iid,
            active=active,
        )

    # --- time and the use cases --------------------------------------------------------------------
    def advance(self, minutes: float) -> None:
        self.clock.advance(minutes * 60)

    def poller(self, **policy: Any) -> ChatPoller:
        return ChatPoller(self.rt, policy=PollPolicy(**policy))

    def poll(self, **policy: Any) -> Any:
        return self.poller(**policy).run()

    def tasks(self) -> LostChatTasks:
        return LostChatTasks(self.rt)

    # --- what the text worker does with a lost chat (its last step is handle_lost_chat) -------------
    def deliver_notifications(self, integration: Integration) -> list[str]:
        """Each `lost_chat` notification UIS sent, completed with the chat's report row the way the text
        worker enriches a notification, handed to the lost-chat use case."""
        outcomes = []
        for sent in self.outbox.sent:
            message = {
                "integration_id": integration.id,
                "source": "notification",
                "event": "lost_chat",
                "method": sent["method"],
                "payload": json.loads(sent["body"]),
            }
            facts = chat_facts(parse_message(message), TZ)
            report = next(r for r in self.report_rows() if r["id"] == facts.chat_id)
            outcomes.append(self.tasks().handle(integration, merge_chat_report(facts, report_chat_facts(report, TZ))))
            self.events.append(message)
        self.outbox.sent.clear()
        return outcomes

    def report_rows(self) -> list[dict[str, Any]]:
        return [self.uis._chat_row(c) for c in self.uis.chats.values()]

    def drain_queue(self, integration: Integration) -> list[str]:
        """The text queue as the worker would take it: `lost_chat` events go to the lost-chat use case."""
        outcomes: list[str] = []
        while True:
            reply = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = reply.get("Messages", [])
            if not messages:
                return outcomes
            for m in messages:
                body = json.loads(m["Body"])
                self.events.append(body)
                note = parse_message(body)
                if note.event == "lost_chat":
                    outcomes.append(self.tasks().handle(integration, chat_facts(note, TZ)))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def queued(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def alfacrm_tasks(self) -> list[dict[str, Any]]:
        return self.alfacrm.state()["tasks"]


@pytest.fixture
def world(queue_urls: dict[str, str], sqs: Any) -> Iterator[World]:
    clock = Clock()
    outbox = Outbox()
    uis = UisSandbox(access_tokens=[DEFAULT_TOKEN], clock=clock, sender=outbox)
    uis.configure_notification("lost_chat", "http://connector.test/hooks/uis/int1/secret")
    alfacrm = AlfaCrmSandbox(clock=clock, sender=lambda *a: 200)
    http_a = httpx.Client(transport=httpx.WSGITransport(app=alfacrm.app), base_url=ALFA_HOST)
    http_u = httpx.Client(transport=httpx.WSGITransport(app=uis.app))
    alfa = AlfaCrmClient(
        ALFA_HOST,
        DEFAULT_EMAIL,
        DEFAULT_API_KEY,
        http=http_a,
        retry=RetryPolicy(sleep=clock.sleep),
        limiter=RateLimiter(4.0, clock=clock.monotonic, sleep=clock.sleep),
        clock=clock.monotonic,
    )
    uis_client = UisClient(
        UIS_URL, DEFAULT_TOKEN, http=http_u, retry=RetryPolicy(attempts=2, sleep=clock.sleep), clock=clock.monotonic
    )
    clients = Factory(alfa, uis_client)
    rt = runtime(clients=clients, now=clock.utc)
    yield World(clock, uis, alfacrm, outbox, rt, clients, queue_urls["TextEventsQueue"], sqs)
    http_a.close()
    http_u.close()
