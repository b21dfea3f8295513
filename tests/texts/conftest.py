"""Text communications: both sandboxes in-process on one hand-driven clock, the moto store, the real worker.

The UIS sandbox "sends" its notifications into an outbox (exactly the bodies UIS's default templates give,
POST JSON or GET query); `world.deliver()` turns each into the queue message the intake would enqueue and
runs the text worker on it. Assertions read the AlfaCRM sandbox's state: the leads, comments and fields a
manager would see. Nothing sleeps: rate limiting is off and retries sleep on the fake clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from connector.alfacrm.client import AlfaCrmClient
from connector.retry import RateLimiter, RetryPolicy
from connector.runtime import Runtime
from connector.settings import Integration, SettingsDocument, parse_settings
from connector.store import Store
from connector.texts.worker import Outcome, TextWorker
from connector.timeutil import local_to_utc, to_iso
from connector.uis.client import UisClient

from tests.conftest import runtime
from tests.support import RecordingSender, sandbox_integration
from tools.sandboxes.alfacrm import API_USER_ID, DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox
from tools.sandboxes.uis import DEFAULT_TOKEN, UisSandbox

TZ = "Europe/Moscow"
START = datetime(2025, 3, 14, 12, 0, 0)  # account-local
ALFA_HOST = "http://alfacrm.test"
UIS_URL = "http://uis.test/v2.0"
HOOK = "http://connector.test/hooks/uis/int1/secret"


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return local_to_utc(self.now, TZ).timestamp()

    def utc(self) -> datetime:
        return local_to_utc(self.now, TZ)

    def monotonic(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    sleep = advance


class Outbox(RecordingSender):
    """Where the UIS sandbox "delivers" notifications; `world.deliver()` hands them to the worker."""


class Factory:
    def __init__(self, alfacrm: AlfaCrmClient, uis: UisClient) -> None:
        self._alfacrm, self._uis = alfacrm, uis

    def alfacrm(self, integration: Integration) -> AlfaCrmClient:
        return self._alfacrm

    def uis(self, integration: Integration) -> UisClient:
        return self._uis


def texts_settings(
    *, requests: dict[str, Any] | None = None, chats: dict[str, Any] | None = None, **texts: Any
) -> SettingsDocument:
    """Requests and chats on, leads in branch 1 with status 1 / source 2; any key overridable."""
    doc: dict[str, Any] = {
        "texts": {
            "branch_id": 1,
            "lead_defaults": {"lead_status_id": 1, "lead_source_id": 2, "assigned_id": None},
            "requests": {
                "enabled": True,
                "filters": {"sites": [], "form_types": []},
                "create_lead": True,
                "extra_fields": [],
            },
            "chats": {
                "enabled": True,
                "filters": {"sites": [], "channels": [], "tags": []},
                "create_lead": {"enabled": True, "on": "chat_finished", "tags": []},
                "lost_chat_task": {"enabled": False},
                "without_contacts": False,
                "extra_fields": [],
            },
            **texts,
        }
    }
    doc["texts"]["requests"].update(requests or {})
    doc["texts"]["chats"].update(chats or {})
    return parse_settings(doc)


def queue_message(sent: dict[str, Any], iid: str = "int1", received_at: str | None = None) -> dict[str, Any]:
    """What the UIS intake enqueues for one delivery: `event` from the URL, the body or query as payload."""
    parts = urlsplit(sent["url"])
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    event = query.pop("event", None)
    payload = query if sent["method"] == "GET" else {**query, **json.loads(sent["body"])}
    return {
        "integration_id": iid,
        "received_at": received_at,
        "source": "notification",
        "event": event,
        "method": sent["method"],
        "payload": payload,
    }


@dataclass
class World:
    clock: Clock
    uis: UisSandbox
    alfacrm: AlfaCrmSandbox
    outbox: Outbox
    rt: Runtime
    clients: Factory

    @property
    def store(self) -> Store:
        return self.rt.store

    def integration(
        self, settings: SettingsDocument | None = None, *, active: bool = True, iid: str = "int1"
    ) -> Integration:
        return sandbox_integration(
            self.store,
            settings or texts_settings(),
            hostname=ALFA_HOST,
            email=DEFAULT_EMAIL,
            api_url=UIS_URL,
            timezone=TZ,
            iid=iid,
            active=active,
            api_user_id=API_USER_ID,  # as the admin API finds it at creation
        )

    def notify(self, *events: str, method: str = "POST", name_event: bool = True, **options: Any) -> None:
        """Point UIS notifications at the connector, as a user does in the cabinet."""
        for event in events:
            url = f"{HOOK}?event={event}" if name_event else HOOK
            self.uis.configure_notification(event, url, method=method, **options)

    def worker(self) -> TextWorker:
        return TextWorker(self.rt)

    def messages(self) -> list[dict[str, Any]]:
        received = to_iso(local_to_utc(self.clock.now, TZ))
        out = [queue_message(sent, received_at=received) for sent in self.outbox.sent]
        self.outbox.sent.clear()
        return out

    def deliver(self, times: int = 1) -> list[Outcome]:
        """Run the worker on every notification UIS sent since the last call (each `times` times)."""
        outcomes = []
        for message in self.messages():
            for _ in range(times):
                outcomes.append(self.worker().handle(message))
        return outcomes

    def run(self, message: dict[str, Any]) -> Outcome:
        return self.worker().handle(message)

    # --- what AlfaCRM holds -----------------------------------------------------------------------------
    def customers(self) -> list[dict[str, Any]]:
        return self.alfacrm.state()["customers"]

    def new_customers(self) -> list[dict[str, Any]]:
        """Customers the connector created (the sandbox seeds some of its own)."""
        return [c for c in self.customers() if c["id"] > self.seeded_max]

    def customer(self, customer_id: int) -> dict[str, Any]:
        return next(c for c in self.customers() if c["id"] == customer_id)

    def comments(self, customer_id: int) -> list[str]:
        return self.alfacrm.comments_for(customer_id)

    seeded_max: int = 0
    # a new AlfaCRM client of the same sandbox, as a new container would create (no token, nothing learned)
    new_alfacrm: Callable[[], AlfaCrmClient] | None = None

    def cold_container(self) -> None:
        """What the next event meets in a container that just started: a new runtime and AlfaCRM client, the
        same state table and accounts."""
        assert self.new_alfacrm is not None
        self.clients = Factory(self.new_alfacrm(), self.clients._uis)
        self.rt = runtime(clients=self.clients, now=self.clock.utc)


@pytest.fixture
def world() -> Iterator[World]:
    clock = Clock()
    outbox = Outbox()
    uis = UisSandbox(access_tokens=[DEFAULT_TOKEN], clock=clock, sender=outbox)
    alfacrm = AlfaCrmSandbox(clock=clock, sender=lambda *a: 200, burst_limit=1_000_000)
    http_a = httpx.Client(transport=httpx.WSGITransport(app=alfacrm.app), base_url=ALFA_HOST)
    http_u = httpx.Client(transport=httpx.WSGITransport(app=uis.app))

    def new_alfacrm() -> AlfaCrmClient:
        return AlfaCrmClient(
            ALFA_HOST,
            DEFAULT_EMAIL,
            DEFAULT_API_KEY,
            http=http_a,
            retry=RetryPolicy(attempts=2, sleep=clock.sleep),
            limiter=RateLimiter(0),  # no rate limiting in tests
            clock=clock.monotonic,
        )

    alfa = new_alfacrm()
    uis_client = UisClient(UIS_URL, DEFAULT_TOKEN, http=http_u, retry=RetryPolicy(attempts=1), clock=clock.monotonic)
    clients = Factory(alfa, uis_client)
    w = World(clock, uis, alfacrm, outbox, runtime(clients=clients, now=clock.utc), clients)
    w.seeded_max = max((c["id"] for c in w.customers()), default=0)
    w.new_alfacrm = new_alfacrm
    yield w
    http_a.close()
    http_u.close()
