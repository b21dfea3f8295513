"""School access tokens: one hashed token per integration (issuing a new one replaces the old)."""

from __future__ import annotations

from connector.models.access import SchoolToken
from connector.store.base import DynamoTable, int_pk, load, model_item

ACCESS = "ACCESS"


class AccessStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    def replace(self, integration_id: str, token: SchoolToken) -> None:
        """The one current token of the integration: a put over the old item revokes the old token."""
        self.t.put({"pk": int_pk(integration_id), "sk": ACCESS, **model_item(token)})

    def current(self, integration_id: str) -> SchoolToken | None:
        return load(SchoolToken, self.t.get(int_pk(integration_id), ACCESS))
