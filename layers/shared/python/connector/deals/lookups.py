"""AlfaCRM look-ups the deals need (lead statuses, branches, teachers), cached so that an ordinary event
costs no AlfaCRM call beyond its own re-read.

Two cache levels through `IntegrationStore.cached/put_cached`: memory (per container) over DynamoDB
(`CACHE#<name>` with a TTL). A miss — an id the cached list does not know, e.g. a teacher added today —
refreshes the list from AlfaCRM, at most once per `MISS_REFRESH_SECONDS` per list and container, so a
stream of events naming a deleted teacher does not turn into a stream of AlfaCRM calls.

Cached values are lists of records as AlfaCRM's models dump them (`[{"id", "name", …}]`), the shape the
admin API's look-ups use too; anything else found under the name is treated as a miss and overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from connector.alfacrm.models import to_int
from connector.deals.rules import Directory

if TYPE_CHECKING:
    from connector.alfacrm.client import AlfaCrmClient
    from connector.settings import Integration
    from connector.store import Store

LEAD_STATUSES = "lead_statuses"
BRANCHES = "branches"
TEACHERS = "teachers"
TTL_SECONDS = {LEAD_STATUSES: 3600, BRANCHES: 6 * 3600, TEACHERS: 6 * 3600}
MISS_REFRESH_SECONDS = 300.0

# (integration id, list name) → monotonic time of the last refresh caused by a miss
_miss_refreshes: dict[tuple[str, str], float] = {}


def _records(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list) or not all(isinstance(v, dict) and "id" in v for v in value):
        return None
    return value


class Lookups:
    """Look-ups for one integration. `alfacrm` is called only when a list must be (re)fetched."""

    def __init__(
        self,
        integration: Integration,
        *,
        store: Store,
        alfacrm: Callable[[], AlfaCrmClient],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.integration = integration
        self.store = store
        self._alfacrm = alfacrm
        self._clock = clock

    # --- generic --------------------------------------------------------------------------------------
    def _get(self, name: str, fetch: Callable[[], list[dict[str, Any]]], *, refresh: bool = False) -> list[dict]:
        if not refresh:
            cached = _records(self.store.integrations.cached(self.integration.id, name))
            if cached is not None:
                return cached
        fresh = fetch()
        self.store.integrations.put_cached(self.integration.id, name, fresh, TTL_SECONDS[name])
        return fresh

    def _may_refresh_on_miss(self, name: str) -> bool:
        key = (self.integration.id, name)
        now = self._clock()
        last = _miss_refreshes.get(key)
        if last is not None and now - last < MISS_REFRESH_SECONDS:
            return False
        _miss_refreshes[key] = now
        return True

    def _names(self, name: str, fetch: Callable[[], list[dict[str, Any]]], wanted: Iterable[int]) -> dict[int, str]:
        wanted = {int(i) for i in wanted if i is not None}
        records = self._get(name, fetch) if wanted else []
        known = {to_int(r["id"]): str(r.get("name") or "") for r in records}
        if wanted - known.keys() and self._may_refresh_on_miss(name):
            records = self._get(name, fetch, refresh=True)
            known = {to_int(r["id"]): str(r.get("name") or "") for r in records}
        return {i: n for i, n in known.items() if i is not None}

    # --- lists ------------------------------------------------------------------------------------------
    def lead_statuses(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """Every lead status (enabled or not: deals may sit in a disabled one), in AlfaCRM's order."""
        branch = self.integration.alfacrm.branch_id

        def fetch() -> list[dict[str, Any]]:
            return [s.model_dump(mode="json") for s in self._alfacrm().lead_statuses(branch)]

        return self._get(LEAD_STATUSES, fetch, refresh=refresh)

    def directory(
        self, *, teacher_ids: Iterable[int] = (), branch_ids: Iterable[int] = (), branch_hint: int | None = None
    ) -> Directory:
        """Names for these teachers and branches (others may be included)."""
        home = self.integration.alfacrm.branch_id

        def fetch_branches() -> list[dict[str, Any]]:
            return [b.model_dump(mode="json") for b in self._alfacrm().branches()]

        def fetch_teachers() -> list[dict[str, Any]]:
            # AlfaCRM lists a branch's teachers; the event's branch and the home branch cover the usual case
            cached = _records(self.store.integrations.cached(self.integration.id, TEACHERS)) or []
            by_id: dict[int, dict[str, Any]] = {int(t["id"]): t for t in cached}
            for branch in dict.fromkeys(b for b in (home, branch_hint) if b):
                for teacher in self._alfacrm().teachers(branch):
                    by_id[teacher.id] = teacher.model_dump(mode="json")
            return list(by_id.values())

        return Directory(
            teachers=self._names(TEACHERS, fetch_teachers, teacher_ids),
            branches=self._names(BRANCHES, fetch_branches, branch_ids),
        )
