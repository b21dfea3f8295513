"""Sealed credentials (`CREDENTIALS`, one item in each integration's partition) and the stack's wrapped data
keys (`CREDKEY` / `V#<version>`, outside every partition); `connector.secrets` seals and opens them."""

from __future__ import annotations

from connector.models.credentials import SealedCredentials, WrappedDataKey
from connector.store.base import DynamoTable, int_pk, load, model_item

CREDENTIALS = "CREDENTIALS"
DATA_KEYS = "CREDKEY"


class CredentialStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    def get(self, integration_id: str) -> SealedCredentials | None:
        return load(SealedCredentials, self.t.get(int_pk(integration_id), CREDENTIALS))

    def put(self, integration_id: str, sealed: SealedCredentials, *, if_absent: bool = False) -> bool:
        """Write the sealed document; `if_absent`: only when there is none yet (→ False if there is)."""
        item = {"pk": int_pk(integration_id), "sk": CREDENTIALS, **model_item(sealed)}
        return self.t.put(item, if_absent=if_absent)

    def delete(self, integration_id: str) -> bool:
        """→ whether there was a sealed item to delete."""
        return self.t.delete_existing(int_pk(integration_id), CREDENTIALS)

    def data_key(self, version: int) -> WrappedDataKey | None:
        return load(WrappedDataKey, self.t.get(DATA_KEYS, f"V#{version}"))

    def add_data_key(self, version: int, wrapped: WrappedDataKey) -> bool:
        """The first writer of a version wins (→ False for the others: they read the winner's)."""
        return self.t.put({"pk": DATA_KEYS, "sk": f"V#{version}", **model_item(wrapped)}, if_absent=True)
