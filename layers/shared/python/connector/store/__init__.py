"""The only package that talks to DynamoDB. `Store` groups the subject stores over one table."""

from __future__ import annotations

from functools import cached_property

from connector.store.access import AccessStore
from connector.store.base import DynamoTable
from connector.store.deals import DealStore
from connector.store.integrations import IntegrationStore, clear_memo
from connector.store.texts import TextStore


class Store:
    def __init__(self, table: DynamoTable | None = None) -> None:
        self.table = table or DynamoTable()

    @cached_property
    def integrations(self) -> IntegrationStore:
        return IntegrationStore(self.table)

    @cached_property
    def deals(self) -> DealStore:
        return DealStore(self.table)

    @cached_property
    def texts(self) -> TextStore:
        return TextStore(self.table)

    @cached_property
    def access(self) -> AccessStore:
        return AccessStore(self.table)

    @property
    def calls(self) -> int:
        return self.table.calls


_default: Store | None = None


def default_store() -> Store:
    """One store per container, created lazily (after the environment is set)."""
    global _default
    if _default is None:
        _default = Store()
    return _default


def reset_default_store() -> None:
    global _default
    _default = None
    clear_memo()
