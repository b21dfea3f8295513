"""The composition root: what a container builds once and every use case takes (docs/internals.md, "Runtime").

A handler takes the container's runtime (`container()`, built at the first invocation, after the environment
is set) and passes it, or its parts, to one use case. A test builds its own `Runtime` wired to moto and the
sandboxes (`Runtime(env, aws=..., store=..., clients=..., now=...)`): a fresh runtime is a cold container,
so nothing is ever reset.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from connector.aws import Aws
from connector.config import Environment
from connector.eventlog import EventLog
from connector.memo import Gate, Memo
from connector.queues import Queues
from connector.retry import ChainedLimiter, Deadline, RateLimiter, RetryPolicy
from connector.secrets import Secrets
from connector.settings import Integration
from connector.store import Store
from connector.store.base import DynamoTable
from connector.store.ratelimit import SharedWindowLimiter
from connector.timeutil import utcnow

if TYPE_CHECKING:
    from connector.accounts import AccountClients
    from connector.alfacrm.client import AlfaCrmClient
    from connector.models.lookups import PhoneSearch
    from connector.models.sync import CheckedFunnels
    from connector.uis.client import UisClient
    from connector.uis.points import Purpose, UisPoints

# UIS funnels checked against the wanted stages: a flush within this many seconds costs no DynamoDB read
FUNNEL_MEMO_SECONDS = 60.0
# what an invocation keeps back from its timeout: parking a record, reporting the batch, writing the event log
RESERVE_SECONDS = 5.0
# a look-up miss (an id the cached list lacks) refreshes that list from AlfaCRM at most this often
LOOKUP_MISS_REFRESH_SECONDS = 300.0
# the phone spelling an AlfaCRM account stores, for a client of it this container creates anew (a client
# keeps its own while it lives): one state-table read per account and container, not one per event
PHONE_SEARCH_MEMO_SECONDS = 3600.0


class ClientFactory(Protocol):
    """Where a use case gets an integration's AlfaCRM and UIS clients."""

    def alfacrm(self, integration: Integration) -> AlfaCrmClient: ...

    def uis(self, integration: Integration) -> UisClient: ...


@dataclass
class Caches:
    """What a warm container remembers between invocations besides the store's own memories."""

    funnels: Memo[str, CheckedFunnels] = field(default_factory=lambda: Memo(FUNNEL_MEMO_SECONDS))
    lookup_misses: Gate[tuple[str, str]] = field(default_factory=lambda: Gate(LOOKUP_MISS_REFRESH_SECONDS))
    # per AlfaCRM account (base URL, e-mail): what phone searches taught (texts.customers.PhoneSpellings)
    phone_searches: Memo[tuple[str, str], PhoneSearch] = field(default_factory=lambda: Memo(PHONE_SEARCH_MEMO_SECONDS))


class Runtime:
    """One container's environment, AWS handles, store, secrets, queues, clients, limiters and memories."""

    def __init__(
        self,
        env: Environment,
        *,
        aws: Aws | None = None,
        store: Store | None = None,
        clients: ClientFactory | None = None,
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env = env
        self.aws = aws or Aws()
        self.now = now
        # the time budget of the invocation in progress (per thread): every client's retries keep to it
        self.deadline = Deadline(monotonic)
        self.retry = RetryPolicy(deadline=self.deadline)
        self.store = store or Store(DynamoTable(env.state_table, self.aws))
        self.secrets = Secrets(env, self.aws, self.store.credentials)
        self.queues = Queues(env, self.aws)
        # the execution log, activity and credential state (buffered; written at the invocation's end)
        self.events = EventLog(self.store.events, now, monotonic=monotonic)
        self.caches = Caches()
        # in-process spacing, then the account-wide budget every container shares through the state table
        self.alfacrm_spacing = RateLimiter(env.alfacrm_rps)
        self.alfacrm_limiter = ChainedLimiter(
            self.alfacrm_spacing, SharedWindowLimiter(self.store.table, env.alfacrm_account_rps)
        )
        self._clients = clients

    @cached_property
    def accounts(self) -> AccountClients:
        """The production clients, built (and imported: a handler that never calls AlfaCRM or UIS never loads
        the clients) at the first use."""
        from connector.accounts import AccountClients

        return AccountClients(
            self.secrets, limiter=self.alfacrm_limiter, spacing=self.alfacrm_spacing, retry=self.retry
        )

    @property
    def clients(self) -> ClientFactory:
        return self._clients if self._clients is not None else self.accounts

    @clients.setter
    def clients(self, clients: ClientFactory) -> None:
        self._clients = clients

    @classmethod
    def from_environment(cls) -> Runtime:
        return cls(Environment.from_environ())

    @contextmanager
    def invocation(self, context: object, *, reserve: float = RESERVE_SECONDS) -> Iterator[None]:
        """One Lambda invocation: retries, waits and HTTP timeouts end `reserve` seconds before the function's
        timeout (the context's remaining time), leaving room to park, report the batch and write what was done
        (the execution log, flushed when the invocation ends)."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        left = remaining() / 1000.0 - reserve if callable(remaining) else None
        try:
            with self.deadline.within(left):
                yield
        finally:
            self.events.flush()

    def epoch(self) -> float:
        """`now` as epoch seconds (claims and their expiries)."""
        return self.now().timestamp()

    def uis_points(self, integration: Integration, purpose: Purpose) -> UisPoints:
        """A unit of work's metered access to the integration's UIS account (`with rt.uis_points(i, "deals")`)."""
        from connector.uis.points import UisPoints  # the use cases that spend points load it; intake never does

        return UisPoints(lambda: self.clients.uis(integration), self.store.integrations, integration, purpose, self.now)

    # --- clients for accounts that are not integrations yet (the admin's login checks) ------------------
    def connect_alfacrm(self, hostname: str, email: str, api_key: str) -> AlfaCrmClient:
        return self.accounts.connect_alfacrm(hostname, email, api_key)

    def connect_uis(self, api_url: str, access_token: str) -> UisClient:
        return self.accounts.connect_uis(api_url, access_token)


# --- the container's runtime --------------------------------------------------------------------------------
_container: Runtime | None = None


def container() -> Runtime:
    """The runtime of this container, built at its first use (the handlers call this once per invocation)."""
    global _container
    if _container is None:
        _container = Runtime.from_environment()
    return _container


def install(runtime: Runtime) -> Runtime:
    """Make `runtime` this container's: what a new container is for the handlers (tests, a second local stack)."""
    global _container
    _container = runtime
    return runtime
