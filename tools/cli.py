"""Operator commands against a deployed connector or the local stack, through the admin API.

    python -m tools.cli backfill <integration id> [--from YYYY-MM-DD] [--to YYYY-MM-DD]

starts (or joins, when one is running) a school's backfill and prints its progress until it ends: records
read of the total AlfaCRM counted, imported, and the estimate. The API's address and the admin token come
from `--url` / `--token` or `CONNECTOR_URL` / `ADMIN_TOKEN` (the URL defaults to the local stack's; `make run`
prints its token).
`--tick` also fires the local stack's `BackfillSchedule` at each look (a stack run with LOCAL_SCHEDULES=0).
Exit status: 0 done, 1 failed or timed out, 2 refused by the API.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

Out = Callable[[str], None]
LOCAL_URL = "http://127.0.0.1:3000"


def progress_line(integration_id: str, progress: dict[str, Any]) -> str:
    """One line of a backfill's progress: `0a1b2c3d running 120/480 (25%) imported 40 eta 12 s`."""
    done, total = int(progress.get("done") or 0), progress.get("total")
    read = f"{done}/{total} ({done * 100 // total if total else 100}%)" if total is not None else f"{done}/?"
    line = f"{integration_id} {progress.get('state')} {read} imported {progress.get('imported') or 0}"
    if progress.get("eta_s") is not None:
        line += f" eta {progress['eta_s']} s"
    if progress.get("error"):
        line += f" error: {progress['error']}"
    return line


def backfill(
    api: httpx.Client,
    integration_id: str,
    *,
    date_from: str | None = None,
    date_to: str | None = None,
    tick: bool = False,
    interval: float = 2.0,
    timeout: float = 3600.0,
    out: Out = print,
) -> int:
    """Start or join the backfill, print each change of its progress; → the exit status."""
    span = {k: v for k, v in (("date_from", date_from), ("date_to", date_to)) if v}
    started = api.post(f"/integrations/{integration_id}/backfill", json=span or None)
    if started.status_code != 202:
        out(f"refused: {started.status_code} {started.text[:300]}")
        return 2
    progress: dict[str, Any] = started.json()
    last = ""
    deadline = time.monotonic() + timeout
    while True:
        line = progress_line(integration_id, progress)
        if line != last:
            out(line)
            last = line
        if progress.get("state") in ("done", "failed"):
            return 0 if progress["state"] == "done" else 1
        if time.monotonic() > deadline:
            out(f"still {progress.get('state')} after {timeout:.0f} s: it goes on; look again with the same command")
            return 1
        if tick:
            api.post("/_local/schedules/BackfillSchedule")
        else:
            time.sleep(interval)
        progress = api.get(f"/integrations/{integration_id}/backfill").json()


def main(argv: Sequence[str] | None = None, out: Out = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CONNECTOR_URL", LOCAL_URL), help="the API's base URL")
    parser.add_argument("--token", default=os.environ.get("ADMIN_TOKEN"), help="the admin token")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("backfill", help="import a school's existing customers and payments, with progress")
    run.add_argument("integration_id")
    run.add_argument("--from", dest="date_from", help="YYYY-MM-DD: customers created / payments dated on or after")
    run.add_argument("--to", dest="date_to", help="YYYY-MM-DD: on or before")
    run.add_argument("--tick", action="store_true", help="fire the local stack's BackfillSchedule at each look")
    run.add_argument("--interval", type=float, default=2.0, help="seconds between looks (default 2)")
    run.add_argument("--timeout", type=float, default=3600.0, help="stop following after this many seconds")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("the admin token is needed: --token or ADMIN_TOKEN (make run prints the local stack's)")
    headers = {"Authorization": f"Bearer {args.token}"}
    with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=120) as api:
        return backfill(
            api,
            args.integration_id,
            date_from=args.date_from,
            date_to=args.date_to,
            tick=args.tick,
            interval=args.interval,
            timeout=args.timeout,
            out=out,
        )


if __name__ == "__main__":
    sys.exit(main())
