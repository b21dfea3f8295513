"""Fixtures for the UIS client and sandbox: one frozen account-local clock drives both, and the
client's retry sleeps advance it, so limit resets are waited out without real sleeping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from connector.retry import RetryPolicy
from connector.uis.client import UisClient

from tests.support import RecordingSender
from tests.uis.builders import API_URL, TOKEN
from tools.sandboxes.uis import UisSandbox

# 30 s into a minute, so the minute budget resets in exactly 30 s
START = datetime(2025, 3, 10, 12, 0, 30)


class FakeClock:
    """Naive account-local time for the sandbox; `monotonic` for the client; `sleep` moves both."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


class Outbox(RecordingSender):
    """Notification receiver of the UIS sandbox."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def make_sandbox(clock: FakeClock, outbox: Outbox) -> Callable[..., UisSandbox]:
    def make(**kwargs: Any) -> UisSandbox:
        kwargs.setdefault("access_tokens", [TOKEN])
        return UisSandbox(clock=clock, sender=outbox, **kwargs)

    return make


@pytest.fixture
def sandbox(make_sandbox: Callable[..., UisSandbox]) -> UisSandbox:
    return make_sandbox()


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., UisClient]]:
    opened: list[httpx.Client] = []

    def make(sandbox: UisSandbox, *, token: str = TOKEN, max_wait: float = 60.0, **http_kwargs: Any) -> UisClient:
        http = httpx.Client(transport=httpx.WSGITransport(app=sandbox.app), **http_kwargs)
        opened.append(http)
        retry = RetryPolicy(attempts=3, max_wait=max_wait, sleep=clock.sleep)
        return UisClient(API_URL, token, http=http, retry=retry, clock=clock.monotonic)

    yield make
    for http in opened:
        http.close()


@pytest.fixture
def client(make_client: Callable[..., UisClient], sandbox: UisSandbox) -> UisClient:
    return make_client(sandbox)


@pytest.fixture
def http(sandbox: UisSandbox) -> Iterator[httpx.Client]:
    """Raw HTTP access to the sandbox, for protocol-level checks and control routes."""
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox.app), base_url="http://uis.test") as raw:
        yield raw
