"""Through the local stack, whose queue consumers run with the template's concurrency (worker threads, a FIFO
group per school): one school's hung UIS does not delay another school's upload (the scenario is the bench's
isolation figure, tools/bench_schools.py)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import pytest
from connector.runtime import container

from tools.bench_schools import upload_delays

pytestmark = pytest.mark.e2e


def test_a_hung_school_does_not_delay_another_schools_upload(start_local_stack: Callable[..., Any]) -> None:
    stack = start_local_stack(sandbox=True)
    # (the uploader runs with the template's concurrency, capped by LOCAL_MAX_CONCURRENCY)
    # When school A's UIS hangs (every call sleeps 20 s before it is answered) while B's uploads go on
    normal, beside_hung, a_stuck = upload_delays(stack, container().store.deals)
    # Then B's uploads take no longer than 1.2x their normal time (A's worker hangs on its own)
    ratio = statistics.median(beside_hung) / statistics.median(normal)
    assert ratio <= 1.2, (normal, beside_hung)
    # And A is still stuck on its first hung call (its work holds only its own message group)
    assert a_stuck
