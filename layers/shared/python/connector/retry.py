"""The one retry policy, the time budget it keeps, and the one rate limiter used by both HTTP clients.

Retries are bounded and back off exponentially with full jitter (tenacity). An exception may carry a
server-given wait (`retry_after` / `reset_after` seconds, e.g. AlfaCRM 429 or UIS `limit_exceeded`):
that wait is honoured when it fits in `max_wait`, otherwise the error is raised for a later attempt
(the SQS redelivery or the next schedule).

Besides the attempt cap, a use case's retries share one time budget (`Deadline`): the Lambda invocation's
remaining time less a reserve to park or report (`Runtime.invocation`). No attempt starts, no backoff or
server wait is slept, and no HTTP timeout reaches past it, so a hung AlfaCRM or UIS makes the record fail
(SQS tries it later) or park before the function's timeout, never a timed-out batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

T = TypeVar("T")


def _server_wait(exc: BaseException | None) -> float | None:
    for attr in ("retry_after", "reset_after"):
        value = getattr(exc, attr, None)
        if isinstance(value, int | float) and value >= 0:
            return float(value)
    return None


# an attempt is not started with less time left than this (a request needs a connect and an answer)
MIN_ATTEMPT_SECONDS = 1.0


class Deadline:
    """When the current unit of work must be done by: per thread and context (the local stack runs functions
    in threads), so the container's shared clients keep each invocation's own budget."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: ContextVar[float | None] = ContextVar("deadline", default=None)

    @contextmanager
    def within(self, seconds: float | None) -> Iterator[None]:
        """Work in this block ends within `seconds` (None: no budget; a budget inside another keeps the nearer)."""
        if seconds is None:
            yield
            return
        until = self.clock() + max(seconds, 0.0)
        current = self._until.get()
        token = self._until.set(until if current is None else min(current, until))
        try:
            yield
        finally:
            self._until.reset(token)

    def remaining(self) -> float | None:
        until = self._until.get()
        return None if until is None else until - self.clock()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0
    # the longest single server-requested wait we sit through inside one invocation
    max_wait: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    # the time budget of the unit of work the calls belong to (the runtime's; None: the attempt cap only)
    deadline: Deadline | None = field(default=None, compare=False)

    def time_left(self) -> float | None:
        return self.deadline.remaining() if self.deadline is not None else None

    def http_timeout(self, base: httpx.Timeout) -> httpx.Timeout | None:
        """`base` cut to the time left (None: too little left to start a request at all)."""
        left = self.time_left()
        if left is None:
            return base
        if left < MIN_ATTEMPT_SECONDS:
            return None

        def cut(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(connect=cut(base.connect), read=cut(base.read), write=cut(base.write), pool=cut(base.pool))

    def run(self, fn: Callable[[], T], *, is_retryable: Callable[[BaseException], bool] | None = None) -> T:
        """Call `fn` until it succeeds, the error is not retryable, or the attempts run out."""
        check = is_retryable or (lambda exc: bool(getattr(exc, "retryable", False)))
        jitter = wait_random_exponential(multiplier=self.base, max=self.cap)

        def retry_ok(exc: BaseException) -> bool:
            if not check(exc) or getattr(exc, "out_of_time", False):
                return False
            hint = _server_wait(exc)
            return hint is None or hint <= self.max_wait

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hint = _server_wait(exc)
            return hint if hint is not None else float(jitter(state))

        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self.attempts), _OutOfTime(self)),
            wait=wait,
            retry=retry_if_exception(retry_ok),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)


class _OutOfTime(stop_base):
    """Stop when the next attempt would start past the budget (its backoff or server wait included)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> bool:
        left = self.policy.time_left()
        return left is not None and left - retry_state.upcoming_sleep < MIN_ATTEMPT_SECONDS


class Limiter(Protocol):
    def acquire(self, key: Hashable) -> float:
        """Block until `key` (an account) may make a call; return the seconds waited."""
        ...


class RateLimiter:
    """At most `rate` calls per second per key (an AlfaCRM account), shared by the container's threads.

    Spacing, not bursting: AlfaCRM asks for sequential calls and answers bursts with 429.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def acquire(self, key: Hashable) -> float:
        """Block until `key` may make a call; return the seconds waited."""
        if self.interval == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            at = max(now, self._next.get(key, now))
            self._next[key] = at + self.interval
        delay = at - now
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)


class ChainedLimiter:
    """Several limiters in turn: in-process spacing first, then the account-wide budget shared by containers."""

    def __init__(self, *limiters: Limiter) -> None:
        self.limiters = limiters

    def acquire(self, key: Hashable) -> float:
        return sum(float(limiter.acquire(key)) for limiter in self.limiters)
