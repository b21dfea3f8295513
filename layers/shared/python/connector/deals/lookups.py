"""AlfaCRM look-ups the deals need (lead statuses, branches, teachers, users, lead sources), cached so that an
ordinary event costs no AlfaCRM call beyond its own re-read.

Two cache levels through `IntegrationStore.cached/put_cached`: memory (per container) over DynamoDB
(`CACHE#<name>` with a TTL). A miss — an id the cached list does not know, e.g. a teacher added today —
refreshes the list from AlfaCRM, at most once per list per few minutes and container (the runtime's
`caches.lookup_misses`), so a stream of events naming a deleted teacher does not turn into a stream of
AlfaCRM calls.

Cached values are lists of records as AlfaCRM's models dump them (`[{"id", "name", …}]`), the shape the
admin API's look-ups use too; anything else found under the name is treated as a miss and overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pydantic import BaseModel

from connector.alfacrm.models import to_int
from connector.deals.drafts import Directory
from connector.memo import Gate
from connector.models.raw import JsonObject
from connector.runtime import Runtime
from connector.settings import Integration
from connector.store import Store

if TYPE_CHECKING:
    from connector.alfacrm.client import AlfaCrmClient

LEAD_STATUSES = "lead_statuses"
BRANCHES = "branches"
TEACHERS = "teachers"
USERS = "users"
LEAD_SOURCES = "lead_sources"
TTL_SECONDS = {LEAD_STATUSES: 3600, BRANCHES: 6 * 3600, TEACHERS: 6 * 3600, USERS: 6 * 3600, LEAD_SOURCES: 6 * 3600}

Records = list[JsonObject]


def _records(value: Records | None) -> Records | None:
    if value is None or not all("id" in v for v in value):
        return None
    return value


def _dumped(models: Iterable[BaseModel]) -> Records:
    return [m.model_dump(mode="json") for m in models]


class Lookups:
    """Look-ups for one integration. `alfacrm` is called only when a list must be (re)fetched."""

    def __init__(
        self,
        integration: Integration,
        *,
        store: Store,
        alfacrm: Callable[[], AlfaCrmClient],
        misses: Gate[tuple[str, str]],
    ) -> None:
        self.integration = integration
        self.store = store
        self._alfacrm = alfacrm
        self._misses = misses

    @classmethod
    def of(cls, rt: Runtime, integration: Integration, alfacrm: Callable[[], AlfaCrmClient] | None = None) -> Lookups:
        """The integration's look-ups over the runtime's store, client factory and miss gate."""
        return cls(
            integration,
            store=rt.store,
            alfacrm=alfacrm or (lambda: rt.clients.alfacrm(integration)),
            misses=rt.caches.lookup_misses,
        )

    # --- generic --------------------------------------------------------------------------------------
    def _get(self, name: str, fetch: Callable[[], Records], *, refresh: bool = False) -> Records:
        if not refresh:
            cached = _records(self.store.integrations.cached(self.integration.id, name))
            if cached is not None:
                return cached
        fresh = fetch()
        self.store.integrations.put_cached(self.integration.id, name, fresh, TTL_SECONDS[name])
        return fresh

    def _names(self, name: str, fetch: Callable[[], Records], wanted: Iterable[int | None]) -> dict[int, str]:
        ids = {int(i) for i in wanted if i is not None}
        records = self._get(name, fetch) if ids else []
        known = _by_id(records)
        if ids - known.keys() and self._misses.passes((self.integration.id, name)):
            known = _by_id(self._get(name, fetch, refresh=True))
        return known

    # --- lists ------------------------------------------------------------------------------------------
    def lead_statuses(self, *, refresh: bool = False) -> Records:
        """Every lead status (enabled or not: deals may sit in a disabled one), in AlfaCRM's order."""
        branch = self.integration.alfacrm.branch_id
        return self._get(LEAD_STATUSES, lambda: _dumped(self._alfacrm().lead_statuses(branch)), refresh=refresh)

    def directory(
        self,
        *,
        teacher_ids: Iterable[int | None] = (),
        branch_ids: Iterable[int | None] = (),
        user_ids: Iterable[int | None] = (),
        source_ids: Iterable[int | None] = (),
        branch_hint: int | None = None,
    ) -> Directory:
        """Names for these teachers, branches, users (managers) and lead sources (others may be included)."""
        home = self.integration.alfacrm.branch_id

        def fetch_teachers() -> Records:
            # AlfaCRM lists a branch's teachers; the event's branch and the home branch cover the usual case
            cached = _records(self.store.integrations.cached(self.integration.id, TEACHERS)) or []
            by_id = {_id(t): t for t in cached}
            for branch in dict.fromkeys(b for b in (home, branch_hint) if b):
                for teacher in self._alfacrm().teachers(branch):
                    by_id[teacher.id] = teacher.model_dump(mode="json")
            return [t for i, t in by_id.items() if i is not None]

        return Directory(
            teachers=self._names(TEACHERS, fetch_teachers, teacher_ids),
            branches=self._names(BRANCHES, lambda: _dumped(self._alfacrm().branches()), branch_ids),
            users=self._names(USERS, lambda: _dumped(self._alfacrm().users(home)), user_ids),
            sources=self._names(LEAD_SOURCES, lambda: _dumped(self._alfacrm().lead_sources(home)), source_ids),
        )


def _id(record: JsonObject) -> int | None:
    try:
        return to_int(record.get("id"))
    except ValueError:
        return None


def _by_id(records: Records) -> dict[int, str]:
    out: dict[int, str] = {}
    for record in records:
        found = _id(record)
        if found is not None:
            out[found] = str(record.get("name") or "")
    return out
