"""Fixtures for the AlfaCRM client and sandbox.

One hand-driven clock drives everything: the sandbox's account-local time (token expiry, the 429 window,
webhook `datetime`), the client's token cache, its rate limiter and its retry sleeps. A back-off therefore
"sleeps" by moving the clock, and the suite never really sleeps. The clients of one test share one token
cache, as the clients of one container do (the runtime holds one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from connector.alfacrm.client import AlfaCrmClient, TokenCache
from connector.retry import RateLimiter, RetryPolicy

from tests.support import RecordingSender
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox, ManualClock

HOST = "http://alfacrm.sandbox"


class Inbox(RecordingSender):
    """Webhook receiver of the AlfaCRM sandbox."""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def sandbox(clock: ManualClock, inbox: Inbox) -> AlfaCrmSandbox:
    return AlfaCrmSandbox(clock=clock, sender=inbox)


@pytest.fixture
def tokens() -> TokenCache:
    return TokenCache()


@pytest.fixture
def make_client(clock: ManualClock, tokens: TokenCache) -> Iterator[Callable[..., AlfaCrmClient]]:
    """Build a client bound to a sandbox in-process; by default 2 req/s and retries on the fake clock."""
    opened: list[httpx.Client] = []

    def build(
        sandbox: AlfaCrmSandbox,
        *,
        email: str = DEFAULT_EMAIL,
        api_key: str = DEFAULT_API_KEY,
        rps: float = 2.0,
        retry: RetryPolicy | None = None,
        **http_options: Any,
    ) -> AlfaCrmClient:
        http = httpx.Client(transport=httpx.WSGITransport(app=sandbox.app), base_url=HOST, **http_options)
        opened.append(http)
        return AlfaCrmClient(
            HOST,
            email,
            api_key,
            http=http,
            retry=retry or RetryPolicy(sleep=clock.sleep),
            limiter=RateLimiter(rps, clock=clock.monotonic, sleep=clock.sleep),
            tokens=tokens,
            clock=clock.monotonic,
        )

    yield build
    for http in opened:
        http.close()


@pytest.fixture
def client(sandbox: AlfaCrmSandbox, make_client: Callable[..., AlfaCrmClient]) -> AlfaCrmClient:
    return make_client(sandbox)


@pytest.fixture
def api(sandbox: AlfaCrmSandbox) -> Iterator[httpx.Client]:
    """Raw HTTP access to the sandbox (for its control routes and protocol-level checks)."""
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox.app), base_url=HOST) as http:
        yield http
