"""The only package that talks to DynamoDB. `Store` groups the subject stores over one table.

The container's store is the `Runtime`'s (`rt.store`); the memories it keeps (integration records, look-ups)
live in its subject stores, so a new `Store` starts cold. The deal and text stores (and their models, most of
the layer's import time) are imported at their first use: the webhook intakes and the pages never load them.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from connector.store.access import AccessStore
from connector.store.accounts import AccountStore
from connector.store.base import DynamoTable
from connector.store.credentials import CredentialStore
from connector.store.events import EventStore
from connector.store.integrations import IntegrationStore

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
    def deals(self) -> DealStore:
        from connector.store.deals import DealStore

        return DealStore(self.table)

    @cached_property
    def texts(self) -> TextStore:
        from connector.store.texts import TextStore

        return TextStore(self.table)

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
