"""School access tokens: one hashed token per integration (issuing a new one replaces the old)."""

from __future__ import annotations

from typing import Any

from connector.store.base import DynamoTable, int_pk

ACCESS = "ACCESS"


class AccessStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    def replace(self, integration_id: str, token_hash: str, issued_at: str) -> None:
        """The one current token of the integration: a put over the old item revokes the old token."""
        self.t.put({"pk": int_pk(integration_id), "sk": ACCESS, "token_hash": token_hash, "issued_at": issued_at})

    def current(self, integration_id: str) -> dict[str, Any] | None:
        return self.t.get(int_pk(integration_id), ACCESS)
