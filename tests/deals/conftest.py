"""Fixtures for the deals tests: the AlfaCRM and UIS sandboxes in-process on one hand-driven clock, clients
bound to them, the moto-backed store (root conftest), a runtime wiring them (`rt`) and a stored, active
integration.

The AlfaCRM sandbox's webhooks are captured (not delivered): a test decides when and in which order the
deal worker sees them, which is how duplicates and shuffled deliveries are produced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from connector.alfacrm.client import AlfaCrmClient
from connector.deals.uploader import FlushReport, flush_integration
from connector.deals.worker import Outcome, handle_deal_event
from connector.retry import RateLimiter, RetryPolicy
from connector.runtime import Runtime
from connector.settings import Integration
from connector.store import Store
from connector.timeutil import local_to_utc
from connector.uis.client import UisClient

from tests.api.builders import stored_integration
from tests.conftest import runtime
from tests.deals.builders import INTEGRATION_ID, TZ, message
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox, ManualClock
from tools.sandboxes.uis import UisSandbox

ALFA_HOST = "http://alfacrm.sandbox"
UIS_URL = "http://uis.sandbox/v2.0"
UIS_TOKEN = "uis-test-token"
DEAL_SETTINGS = {
    "deals": {
        "enabled": True,
        "first_sale": {"success_status_ids": [4], "failure_status_ids": [5]},
        "upsell": {"enabled": True},
    }
}


class Captured:
    """The webhook target: keeps every body the AlfaCRM sandbox sent, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> int:
        import json

        self.bodies.append(json.loads(body or b"{}"))
        return 200

    def take(self) -> list[dict[str, Any]]:
        taken, self.bodies = self.bodies, []
        return taken


class SandboxClients:
    """A `ClientFactory` whose clients talk to the in-process sandboxes."""

    def __init__(self, alfacrm: AlfaCrmClient, uis: UisClient) -> None:
        self.alfacrm_client = alfacrm
        self.uis_client = uis

    def alfacrm(self, integration: Integration) -> AlfaCrmClient:
        return self.alfacrm_client

    def uis(self, integration: Integration) -> UisClient:
        return self.uis_client


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2025, 3, 3, 9, 0, 0))


@pytest.fixture
def captured() -> Captured:
    return Captured()


@pytest.fixture
def alfacrm(clock: ManualClock, captured: Captured) -> AlfaCrmSandbox:
    sandbox = AlfaCrmSandbox(clock=clock, sender=captured, seed=False, burst_limit=10_000)
    for branch in (1, 2):
        sandbox.add_webhook(branch, f"http://connector.test/hooks/alfacrm/{INTEGRATION_ID}/secret")
    return sandbox


@pytest.fixture
def uis(clock: ManualClock) -> UisSandbox:
    return UisSandbox(clock=clock, access_tokens=[UIS_TOKEN], sender=lambda *args: 200)


@pytest.fixture
def clients(alfacrm: AlfaCrmSandbox, uis: UisSandbox, clock: ManualClock) -> Iterator[SandboxClients]:
    alfa_http = httpx.Client(transport=httpx.WSGITransport(app=alfacrm.app), base_url=ALFA_HOST)
    uis_http = httpx.Client(transport=httpx.WSGITransport(app=uis.app))
    retry = RetryPolicy(attempts=3, max_wait=5.0, sleep=clock.sleep)
    yield SandboxClients(
        AlfaCrmClient(
            ALFA_HOST,
            DEFAULT_EMAIL,
            DEFAULT_API_KEY,
            http=alfa_http,
            retry=retry,
            limiter=RateLimiter(0),  # no spacing in tests: the sandbox's burst limit is lifted
            clock=clock.monotonic,
        ),
        UisClient(UIS_URL, UIS_TOKEN, http=uis_http, retry=retry, clock=clock.monotonic),
    )
    alfa_http.close()
    uis_http.close()


@pytest.fixture
def integration(store: Store) -> Integration:
    return stored_integration(store, integration_id=INTEGRATION_ID, settings=DEAL_SETTINGS)


@pytest.fixture
def now(clock: ManualClock) -> Callable[[], datetime]:
    """The connector's UTC clock, on the sandboxes' hand-driven local time."""
    return lambda: local_to_utc(clock(), TZ)


@pytest.fixture
def rt(store: Store, clients: SandboxClients, now: Callable[[], datetime]) -> Runtime:
    """A container of the deal functions, on moto and the sandboxes (a new one per test: cold memories)."""
    return runtime(store=store, clients=clients, now=now)


@pytest.fixture
def deliver(rt: Runtime, integration: Integration) -> Callable[..., Outcome]:
    """Hand one webhook body to the deal worker, as the SQS event source would."""

    def run(body: dict[str, Any], integration_id: str = INTEGRATION_ID) -> Outcome:
        return handle_deal_event(rt, message(body, integration_id))

    return run


@pytest.fixture
def flush(rt: Runtime) -> Callable[..., FlushReport]:
    def run(integration_id: str = INTEGRATION_ID) -> FlushReport:
        found = rt.store.integrations.get(integration_id, fresh=True)
        assert found is not None
        return flush_integration(rt, found)

    return run
