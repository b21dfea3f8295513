"""Fuzzing profile: derandomised and bounded, so `make test` and CI run the same examples every time.

`HYPOTHESIS_PROFILE=deep` (and `FUZZ_SCALE=<factor>` for the example counts) runs a longer, random search
locally. No example database is written. Each fuzz test reports its example count and its slowest reply
in the terminal summary (timings are shown, never asserted).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

_QUIET = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.function_scoped_fixture,
    HealthCheck.filter_too_much,
]
settings.register_profile("ci", derandomize=True, database=None, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("deep", derandomize=False, database=None, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.fuzz.report import lines

    if lines():
        terminalreporter.write_sep("-", "fuzzing")
        for line in lines():
            terminalreporter.write_line(line)
