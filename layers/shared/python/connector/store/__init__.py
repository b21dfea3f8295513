"""The only package that talks to DynamoDB. `Store` groups the subject stores over one table.

The container's store is the `Runtime`'s (`rt.store`); the memories it keeps (integration records, look-ups)
live in its subject stores, so a new `Store` starts cold. The deal and text stores (and their models, most of
the layer's import time) are imported at their first use: the webhook intakes and the pages never load them.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import TYPE_CHECKING

from connector.store.access import AccessStore
from connector.store.accounts import AccountStore
from connector.store.backfill import BackfillStore
from connector.store.base import DynamoTable
from connector.store.credentials import CredentialStore
from connector.store.events import EventStore
from connector.store.integrations import IntegrationStore
from connector.store.unit import OnceRecord, UnitTable
from connector.store.work import WorkIndex

if TYPE_CHECKING:
    from connector.store.deals import DealStore
    from connector.store.texts import TextStore


class Store:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    @cached_property
    def integrations(self) -> IntegrationStore:
        return IntegrationStore(self.table)

    @cached_property
    def work(self) -> WorkIndex:
        """The per-school work index the scheduler ticks read (`connector.fanout`)."""
        return WorkIndex(self.table)

    @cached_property
    def deals(self) -> DealStore:
        from connector.store.deals import DealStore

        # a deal marked pending makes its integration due for an upload
        return DealStore(self.table, work=self.work)

    @cached_property
    def texts(self) -> TextStore:
        from connector.store.texts import TextStore

        return TextStore(self.table)

    @cached_property
    def backfill(self) -> BackfillStore:
        return BackfillStore(self.table)

    @cached_property
    def events(self) -> EventStore:
        return EventStore(self.table)

    @cached_property
    def access(self) -> AccessStore:
        return AccessStore(self.table)

    @cached_property
    def credentials(self) -> CredentialStore:
        return CredentialStore(self.table)

    @cached_property
    def accounts(self) -> AccountStore:
        return AccountStore(self.table)

    @property
    def calls(self) -> int:
        return self.table.calls

    def unit_of_work(self, idempotency_table: str) -> Store:
        """A store for one event (`connector.store.unit`): its reads from one batch, its writes in one
        transaction at `commit`. The integration store (and its memory) is shared; the deal and text stores
        are copies on the unit's table (a subclass a test installed stays), and so is the work index a deal
        turning pending marks (its memory of marks shared)."""
        unit = Store(UnitTable(self.table, idempotency_table))
        unit.integrations = self.integrations
        for name in ("deals", "texts"):
            subject = copy.copy(getattr(self, name))
            subject.t = unit.table
            setattr(unit, name, subject)
        unit.deals.work = unit.deals.work.on(unit.table)
        unit.work = unit.deals.work
        return unit

    def commit(self, once: OnceRecord | None = None) -> None:
        """Send a unit of work's writes (`unit_of_work`), all or nothing, with the event's idempotency record."""
        table = self.table
        assert isinstance(table, UnitTable), "commit() is for a unit of work"
        table.commit(once)
