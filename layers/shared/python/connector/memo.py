"""What a warm container remembers between invocations: values kept in memory for a while, per key.

Every such memory is a member of the container's `Runtime` (or of a store it owns), never a module global,
so a test builds a fresh one instead of resetting anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Values kept `ttl` seconds each (or until the expiry a `put` names), on an injectable clock."""

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._items: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._items.get(key)
        if hit is None or hit[0] <= self.clock():
            return None
        return hit[1]

    def put(self, key: K, value: V, *, until: float | None = None) -> None:
        with self._lock:
            self._items[key] = (until if until is not None else self.clock() + self.ttl, value)

    def drop(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)


class Gate(Generic[K]):
    """Lets a key through at most once per `every` seconds (e.g. one AlfaCRM refresh per look-up miss)."""

    def __init__(self, every: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: Memo[K, bool] = Memo(every, clock=clock)

    def passes(self, key: K) -> bool:
        if self._seen.get(key):
            return False
        self._seen.put(key, True)
        return True
