"""An integration's sealed credentials (`CREDENTIALS`, one item in its partition); `connector.secrets` seals them."""

from __future__ import annotations

from connector.models.credentials import SealedCredentials
from connector.store.base import DynamoTable, int_pk, load, model_item

CREDENTIALS = "CREDENTIALS"


class CredentialStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    def get(self, integration_id: str) -> SealedCredentials | None:
        return load(SealedCredentials, self.t.get(int_pk(integration_id), CREDENTIALS))

    def put(self, integration_id: str, sealed: SealedCredentials, *, if_absent: bool = False) -> bool:
        """Write the sealed document; `if_absent`: only when there is none yet (→ False if there is)."""
        item = {"pk": int_pk(integration_id), "sk": CREDENTIALS, **model_item(sealed)}
        return self.t.put(item, if_absent=if_absent)

    def delete(self, integration_id: str) -> None:
        self.t.delete(int_pk(integration_id), CREDENTIALS)
