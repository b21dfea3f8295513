"""`python -m tools.cli backfill <id>` against the local stack: it starts (or joins) a school's backfill and
prints its progress until it ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tools import cli

pytestmark = pytest.mark.e2e


def test_the_cli_follows_a_backfill_to_its_end_on_the_local_stack(start_local_stack: Callable[..., Any]) -> None:
    stack = start_local_stack(sandbox=True)
    alfacrm = stack.sandboxes["alfacrm"].sandbox
    # Given a school whose AlfaCRM holds more customers than one page (the demo's and 120 imported earlier)
    alfacrm.add_customers(120)
    records = len(alfacrm.customers) + len(alfacrm.pays)
    lines: list[str] = []
    # When the operator runs the backfill command (the local stack's schedules fired by the command)
    status = cli.main(
        ["--url", stack.url, "--token", stack.admin_token, "backfill", stack.demo["id"], "--tick"], out=lines.append
    )
    # Then it printed the school's progress, ending with every record read and the backfill done
    assert status == 0, lines
    assert all(line.startswith(stack.demo["id"]) for line in lines)
    assert len(lines) >= 2 and lines[0] == f"{stack.demo['id']} running 0/? imported 0"
    # (no webhook recorded any of them before: every record is imported into a deal)
    assert lines[-1] == f"{stack.demo['id']} done {records}/{records} (100%) imported {records}"


def test_the_cli_says_what_the_api_refused(start_local_stack: Callable[..., Any]) -> None:
    stack = start_local_stack(sandbox=False)
    lines: list[str] = []
    status = cli.main(["--url", stack.url, "--token", stack.admin_token, "backfill", "0f0f0f0f"], out=lines.append)
    assert status == 2
    assert lines[0].startswith("refused: 404")
