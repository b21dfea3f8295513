"""AlfaCRM's ~4 requests per second per account hold across containers (deal workers, text workers, poller…)."""

from __future__ import annotations

from collections import Counter

import pytest
from connector.errors import AlfaCrmUnavailable
from connector.retry import ChainedLimiter, RateLimiter
from connector.store import Store
from connector.store.ratelimit import SharedWindowLimiter


class FakeTime:
    def __init__(self, start: float = 1_800_000_000.25) -> None:
        self.now = start

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


ACCOUNT = ("https://school.s20.online/v2api/", "api@school.ru")


def test_two_containers_share_one_account_budget_of_four_per_second(store: Store):
    """Given two containers calling the same AlfaCRM account, when each makes 10 requests as fast as it can,
    then no calendar second holds more than 4 of the 20 requests, and every request is eventually made."""
    t = FakeTime()
    table = store.table
    a = SharedWindowLimiter(table, 4, clock=t.clock, sleep=t.sleep)
    b = SharedWindowLimiter(table, 4, clock=t.clock, sleep=t.sleep)
    seconds: Counter[int] = Counter()
    for _ in range(10):
        for limiter in (a, b):
            limiter.acquire(ACCOUNT)
            seconds[int(t.now)] += 1
    assert sum(seconds.values()) == 20
    assert max(seconds.values()) == 4
    assert len(seconds) == 5  # 20 requests at 4 per second


def test_accounts_do_not_share_a_budget(store: Store):
    t = FakeTime()
    limiter = SharedWindowLimiter(store.table, 4, clock=t.clock, sleep=t.sleep)
    start = t.now
    for _ in range(4):
        limiter.acquire(("https://a.s20.online/v2api/", "x@a.ru"))
        limiter.acquire(("https://b.s20.online/v2api/", "y@b.ru"))
    assert t.now == start  # 4 each within the same second: nobody waited


def test_no_personal_data_in_the_counter_keys(state_table, store: Store):
    t = FakeTime()
    SharedWindowLimiter(store.table, 4, clock=t.clock, sleep=t.sleep).acquire(ACCOUNT)
    keys = [item["pk"] + item["sk"] for item in state_table.scan()["Items"]]
    assert keys and not any("school" in k or "@" in k for k in keys)


def test_an_exhausted_budget_is_a_retryable_error_not_an_endless_wait(store: Store):
    t = FakeTime()
    limiter = SharedWindowLimiter(store.table, 1, clock=lambda: t.now, sleep=lambda s: None, max_wait=2.0)
    limiter.acquire(ACCOUNT)  # takes the only slot; the clock never moves on
    with pytest.raises(AlfaCrmUnavailable) as err:
        limiter.acquire(ACCOUNT)
    assert err.value.retryable


def test_the_chain_spaces_requests_in_process_and_counts_them_account_wide(store: Store):
    t = FakeTime()
    spacing = RateLimiter(2, clock=t.clock, sleep=t.sleep)
    chain = ChainedLimiter(spacing, SharedWindowLimiter(store.table, 4, clock=t.clock, sleep=t.sleep))
    start = t.now
    for _ in range(4):
        chain.acquire(ACCOUNT)
    assert t.now - start == pytest.approx(1.5)  # 2 per second in this process: 0, 0.5, 1.0, 1.5


def test_production_clients_get_the_shared_account_budget():
    from connector.config import Environment
    from connector.runtime import Runtime

    from tests.conftest import AWS

    rt = Runtime(Environment(alfacrm_account_rps=4), aws=AWS)
    shared = [lim for lim in rt.alfacrm_limiter.limiters if isinstance(lim, SharedWindowLimiter)]
    assert len(shared) == 1 and shared[0].rate == 4
    assert rt.accounts.limiter is rt.alfacrm_limiter
