"""Integrations, their settings, cached look-ups, parked items and UIS points spent."""

from __future__ import annotations

import time

from connector.memo import Memo
from connector.models.lookups import CachedLookup
from connector.models.parked import ParkedItem
from connector.models.raw import JsonObject
from connector.models.sync import FunnelSyncPending
from connector.settings import AlfaCrmAccount, Integration, SettingsDocument, UisAccount
from connector.store.base import DynamoTable, int_pk, is_expired, load, model_item

META = "META"
INTEGRATION_MEMORY_SECONDS = 10.0
POINTS_TTL_SECONDS = 90 * 86400
_NOT_POINTS = frozenset({"pk", "sk", "expires_at"})


class IntegrationStore:
    """Integration records are read on every event: they are kept in memory for a few seconds (a write
    through this store drops its copy; another container sees a change within `memory_ttl` seconds)."""

    def __init__(self, table: DynamoTable, *, memory_ttl: float = INTEGRATION_MEMORY_SECONDS) -> None:
        self.t = table
        self._records: Memo[str, Integration] = Memo(memory_ttl)
        self._lookups: Memo[tuple[str, str], list[JsonObject]] = Memo(0, clock=time.time)

    # --- integrations -------------------------------------------------------------------------
    def create(self, integration: Integration) -> None:
        item = {
            "pk": int_pk(integration.id),
            "sk": META,
            "gsi1pk": "INTEGRATIONS",
            "gsi1sk": integration.id,
            "version": 1,
            **model_item(integration),
        }
        self.t.put(item, if_absent=True)
        self._records.drop(integration.id)

    def get(self, integration_id: str, *, fresh: bool = False) -> Integration | None:
        hit = None if fresh else self._records.get(integration_id)
        if hit is not None:
            return hit
        integration = load(Integration, self.t.get(int_pk(integration_id), META))
        if integration is None:
            self._records.drop(integration_id)
            return None
        self._records.put(integration_id, integration)
        return integration

    def all(self) -> list[Integration]:
        return [Integration.model_validate(i) for i in self.t.query_gsi("INTEGRATIONS")]

    def list_active(self) -> list[Integration]:
        return [i for i in self.all() if i.active]

    def save_settings(self, integration_id: str, settings: SettingsDocument) -> None:
        self.t.update_fields(int_pk(integration_id), META, {"settings": model_item(settings)})
        self._records.drop(integration_id)

    def set_webhook_hashes(self, integration_id: str, alfacrm_hash: str, uis_hash: str) -> None:
        fields = {"alfacrm_webhook_secret_hash": alfacrm_hash, "uis_webhook_secret_hash": uis_hash}
        self.t.update_fields(int_pk(integration_id), META, fields)
        self._records.drop(integration_id)

    def set_accounts(
        self, integration_id: str, *, alfacrm: AlfaCrmAccount | None = None, uis: UisAccount | None = None
    ) -> None:
        """The record's AlfaCRM and/or UIS account blocks (no secrets in them); a block not given is kept."""
        blocks = {name: model_item(block) for name, block in (("alfacrm", alfacrm), ("uis", uis)) if block is not None}
        self.t.update_fields(int_pk(integration_id), META, blocks)
        self._records.drop(integration_id)

    def remove(self, integration_id: str) -> None:
        """The record goes first: intakes answer 404 and workers skip its events from here on."""
        self.t.delete(int_pk(integration_id), META)
        self._records.drop(integration_id)

    def parked_count(self, integration_id: str) -> int:
        return self.t.count_gsi(f"PARKED#{integration_id}")

    def set_funnel_sync(self, integration_id: str, pending: FunnelSyncPending | None) -> None:
        """Record (or clear, None) the funnel sync a settings save still owes UIS."""
        if pending is None:
            self.t.update_fields(int_pk(integration_id), META, {}, remove=["funnel_sync"])
        else:
            self.t.update_fields(int_pk(integration_id), META, {"funnel_sync": model_item(pending)})
        self._records.drop(integration_id)

    def save_alfacrm_account(self, integration_id: str, account: AlfaCrmAccount) -> None:
        """The record's `alfacrm` block (no secrets in it), e.g. once the API user's id is known."""
        self.t.update_fields(int_pk(integration_id), META, {"alfacrm": model_item(account)})
        self._records.drop(integration_id)

    def set_active(self, integration_id: str, active: bool) -> bool:
        done = self.t.update_fields(int_pk(integration_id), META, {"active": active})
        self._records.drop(integration_id)
        return done

    # --- look-up cache (DynamoDB + memory) --------------------------------------------------------
    def cached(self, integration_id: str, name: str) -> list[JsonObject] | None:
        """A cached look-up (lead statuses, branches, teachers…) or None when absent or expired."""
        hit = self._lookups.get((integration_id, name))
        if hit is not None:
            return hit
        item = self.t.get(int_pk(integration_id), f"CACHE#{name}", consistent=False)
        if item is None or is_expired(item):
            return None
        try:
            entry = load(CachedLookup, item)
        except ValueError:
            return None  # an older shape under this name: a miss, overwritten by the next fetch
        assert entry is not None
        self._lookups.put((integration_id, name), entry.value, until=float(entry.expires_at))
        return entry.value

    def put_cached(self, integration_id: str, name: str, value: list[JsonObject], ttl_seconds: int) -> None:
        entry = CachedLookup(value=value, expires_at=int(time.time()) + ttl_seconds)
        self.t.put({"pk": int_pk(integration_id), "sk": f"CACHE#{name}", **model_item(entry)})
        self._lookups.put((integration_id, name), entry.value, until=float(entry.expires_at))

    # --- parked items ---------------------------------------------------------------------------
    def park(self, integration_id: str, item: ParkedItem) -> None:
        """Something that failed for a reason a retry will not fix: visible and replayable."""
        parked = item.model_copy(update={"parked_at": int(time.time())})
        self.t.put(
            {
                "pk": int_pk(integration_id),
                "sk": f"PARKED#{item.kind}#{item.key}",
                "gsi1pk": f"PARKED#{integration_id}",
                "gsi1sk": f"{item.kind}#{item.key}",
                **model_item(parked),
            }
        )

    def parked(self, integration_id: str) -> list[ParkedItem]:
        return [ParkedItem.model_validate(i) for i in self.t.query_gsi(f"PARKED#{integration_id}")]

    def unpark(self, integration_id: str, kind: str, key: str) -> None:
        self.t.delete(int_pk(integration_id), f"PARKED#{kind}#{key}")

    # --- UIS points spent per day (the ledger connector.uis.points writes) --------------------------
    def add_points(self, integration_id: str, day: str, points: int, purpose: str) -> int:
        return self.t.add_counter(
            int_pk(integration_id), f"BUDGET#{day}", purpose, points, ttl_seconds=POINTS_TTL_SECONDS
        )

    def points(self, integration_id: str, day: str) -> dict[str, int]:
        item = self.t.get(int_pk(integration_id), f"BUDGET#{day}", consistent=False) or {}
        return _points(item)

    def recent_points(self, integration_id: str, days: int = 7) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for item in self.t.query(int_pk(integration_id), "BUDGET#", forward=False, limit=days):
            out[str(item["sk"]).removeprefix("BUDGET#")] = _points(item)
        return out


def _points(item: JsonObject) -> dict[str, int]:
    return {k: int(v) for k, v in item.items() if k not in _NOT_POINTS and isinstance(v, int | float)}
