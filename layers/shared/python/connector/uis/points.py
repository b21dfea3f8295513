"""UIS points: every successful Data API call costs one, from a per-minute and a per-day budget per account.

Each unit of work that calls UIS (a flush, a funnel sync, a poll, a text event's enrichment, an admin
look-up) opens `UisPoints` for one integration and purpose; its client is `metered`, so the UIS client itself
charges every point it spends. The points are counted per account day (the integration's timezone: UIS's
day budget resets at the account's midnight) and written to the integration's ledger (`BUDGET#<day>`,
one counter per purpose) in one ADD per day when the unit of work ends — no use case counts by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from types import TracebackType
from typing import Literal, Protocol

from connector.settings import Integration
from connector.timeutil import utc_to_local
from connector.uis.client import UisClient

Purpose = Literal["deals", "poller", "texts", "admin"]


class Ledger(Protocol):
    def add_points(self, integration_id: str, day: str, points: int, purpose: str) -> int: ...


class UisPoints:
    """One unit of work's access to an integration's UIS account: the client on first use, metered."""

    def __init__(
        self,
        client: Callable[[], UisClient],
        ledger: Ledger,
        integration: Integration,
        purpose: Purpose,
        now: Callable[[], datetime],
    ) -> None:
        self._open = client
        self._client: UisClient | None = None
        self._metering = ExitStack()
        self._ledger = ledger
        self.integration = integration
        self.purpose: Purpose = purpose
        self._now = now
        self.spent = 0  # points charged so far
        self._unwritten: dict[str, int] = {}

    @property
    def client(self) -> UisClient:
        """The integration's UIS client, created (credentials read) only when a call is about to be made."""
        if self._client is None:
            self._client = self._metering.enter_context(self._open().metered(self))
        return self._client

    def charge(self, points: int) -> None:
        day = utc_to_local(self._now(), self.integration.timezone).date().isoformat()
        self._unwritten[day] = self._unwritten.get(day, 0) + points
        self.spent += points

    def close(self) -> None:
        """Stop metering; write what was spent to the ledger (one ADD per account day)."""
        self._metering.close()
        self._client = None
        unwritten, self._unwritten = self._unwritten, {}
        for day, points in unwritten.items():
            self._ledger.add_points(self.integration.id, day, points, self.purpose)

    def __enter__(self) -> UisPoints:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
