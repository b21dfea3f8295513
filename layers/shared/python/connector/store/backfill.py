"""A backfill's progress and cursor (`BACKFILL` under the integration's partition, one per integration)."""

from __future__ import annotations

from connector.models.work import BackfillState
from connector.store.base import DynamoTable, int_pk, load, model_item

BACKFILL = "BACKFILL"


class BackfillStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    def get(self, integration_id: str) -> BackfillState | None:
        return load(BackfillState, self.t.get(int_pk(integration_id), BACKFILL))

    def save(self, integration_id: str, state: BackfillState) -> BackfillState:
        """Write if nobody did since `state` was read (its `version`; 0 = absent) → the stored copy;
        ConcurrentUpdate otherwise (a restart or another chunk got there first)."""
        saved = state.model_copy(update={"version": state.version + 1})
        item = {"pk": int_pk(integration_id), "sk": BACKFILL, **model_item(saved)}
        self.t.put(item, expected_version=state.version)
        return saved
