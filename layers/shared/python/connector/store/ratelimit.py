"""AlfaCRM's budget of ~4 requests per second per account, shared by every Lambda container.

Deal workers, text workers, the poller, the reconciler and the admin API all call AlfaCRM, each in its own
containers, so an in-process limiter alone cannot hold an account-wide rate. Each request first takes a
slot in the account's counter for the current second (one atomic `ADD`, no read); a full second means
waiting for the next one. Items expire by TTL two minutes later.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Hashable

from connector.errors import AlfaCrmUnavailable
from connector.store.base import DynamoTable

WINDOW_TTL_SECONDS = 120


class SharedWindowLimiter:
    def __init__(
        self,
        table: DynamoTable,
        rate: int,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 20.0,
    ) -> None:
        self.t = table
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait

    @staticmethod
    def account_key(key: Hashable) -> str:
        # the account is (base URL, e-mail): keep personal data out of the table's keys
        return hashlib.sha256(repr(key).encode()).hexdigest()[:24]

    def acquire(self, key: Hashable) -> float:
        """Block until this account has a free slot in the current second; return the seconds waited."""
        if self.rate <= 0:
            return 0.0
        pk = f"RATE#{self.account_key(key)}"
        waited = 0.0
        while True:
            now = self.clock()
            second = math.floor(now)
            taken = self.t.add_counter(pk, f"S#{second}", "n", 1, ttl_seconds=WINDOW_TTL_SECONDS)
            if taken <= self.rate:
                return waited
            # full: wait for the next second (a little jitter so waiting containers do not collide)
            pause = (second + 1 - now) + random.uniform(0, 0.05)
            if waited + pause > self.max_wait:
                raise AlfaCrmUnavailable("AlfaCRM request budget of this account is exhausted; try later")
            self.sleep(pause)
            waited += pause
