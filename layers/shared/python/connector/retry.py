"""The one retry policy and the one rate limiter used by both HTTP clients.

Retries are bounded and back off exponentially with full jitter (tenacity). An exception may carry a
server-given wait (`retry_after` / `reset_after` seconds, e.g. AlfaCRM 429 or UIS `limit_exceeded`):
that wait is honoured when it fits in `max_wait`, otherwise the error is raised for a later attempt
(the SQS redelivery or the next schedule), so a Lambda never sleeps past its budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

T = TypeVar("T")


def _server_wait(exc: BaseException | None) -> float | None:
    for attr in ("retry_after", "reset_after"):
        value = getattr(exc, attr, None)
        if isinstance(value, int | float) and value >= 0:
            return float(value)
    return None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0
    # the longest single server-requested wait we sit through inside one invocation
    max_wait: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def run(self, fn: Callable[[], T], *, is_retryable: Callable[[BaseException], bool] | None = None) -> T:
        """Call `fn` until it succeeds, the error is not retryable, or the attempts run out."""
        check = is_retryable or (lambda exc: bool(getattr(exc, "retryable", False)))
        jitter = wait_random_exponential(multiplier=self.base, max=self.cap)

        def retry_ok(exc: BaseException) -> bool:
            if not check(exc):
                return False
            hint = _server_wait(exc)
            return hint is None or hint <= self.max_wait

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hint = _server_wait(exc)
            return hint if hint is not None else float(jitter(state))

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=retry_if_exception(retry_ok),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)


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
