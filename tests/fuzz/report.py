"""Example counts and reply times of the fuzz tests, for the terminal summary (shown, never asserted)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    """A test's example count, scaled by FUZZ_SCALE for longer local runs."""
    return max(1, int(n * SCALE))


@dataclass
class Timing:
    name: str
    count: int = 0
    slowest: float = 0.0
    slowest_what: str = ""
    statuses: dict[int, int] = field(default_factory=dict)

    @contextmanager
    def reply(self, what: str = "") -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.count += 1
            took = time.perf_counter() - started
            if took > self.slowest:
                self.slowest, self.slowest_what = took, what

    def status(self, code: int) -> None:
        self.statuses[code] = self.statuses.get(code, 0) + 1


_TIMINGS: dict[str, Timing] = {}


def timing(name: str) -> Timing:
    return _TIMINGS.setdefault(name, Timing(name))


def lines() -> list[str]:
    return [
        f"{t.name}: {t.count} calls, slowest {t.slowest * 1000:.1f} ms"
        + (f" ({t.slowest_what})" if t.slowest_what else "")
        + (", statuses " + ", ".join(f"{code}×{n}" for code, n in sorted(t.statuses.items())) if t.statuses else "")
        for t in _TIMINGS.values()
    ]
