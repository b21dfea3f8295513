"""Integrations, their settings, cached look-ups, parked items and UIS points spent."""

from __future__ import annotations

import builtins
import time
from typing import Any

from connector.settings import AlfaCrmAccount, Integration, SettingsDocument
from connector.store.base import DynamoTable, int_pk, is_expired

META = "META"

# Process-wide, so a write through any Store instance invalidates every reader in this container (the
# local stack runs all functions in one process). Across Lambda containers a change shows within
# `memory_ttl` seconds.
_MEMO: dict[tuple[str, str], tuple[float, Integration]] = {}


def clear_memo() -> None:
    _MEMO.clear()


class IntegrationStore:
    """Integration records are read on every event: keep them in memory for a few seconds."""

    def __init__(self, table: DynamoTable, *, memory_ttl: float = 10.0) -> None:
        self.t = table
        self.memory_ttl = memory_ttl
        self._lookups: dict[tuple[str, str], tuple[float, Any]] = {}

    # --- integrations -------------------------------------------------------------------------
    def create(self, integration: Integration) -> None:
        item = {
            "pk": int_pk(integration.id),
            "sk": META,
            "gsi1pk": "INTEGRATIONS",
            "gsi1sk": integration.id,
            "version": 1,
            **integration.model_dump(mode="json"),
        }
        self.t.put(item, if_absent=True)
        _MEMO.pop((self.t.name, integration.id), None)

    def get(self, integration_id: str, *, fresh: bool = False) -> Integration | None:
        now = time.monotonic()
        hit = _MEMO.get((self.t.name, integration_id))
        if hit and not fresh and now - hit[0] < self.memory_ttl:
            return hit[1]
        item = self.t.get(int_pk(integration_id), META)
        if item is None:
            _MEMO.pop((self.t.name, integration_id), None)
            return None
        integration = Integration.model_validate(item)
        _MEMO[(self.t.name, integration_id)] = (now, integration)
        return integration

    def all(self) -> list[Integration]:
        return [Integration.model_validate(i) for i in self.t.query_gsi("INTEGRATIONS")]

    def list_active(self) -> list[Integration]:
        return [i for i in self.all() if i.active]

    def save_settings(self, integration_id: str, settings: SettingsDocument) -> None:
        self.t.update_fields(int_pk(integration_id), META, {"settings": settings.model_dump(mode="json")})
        _MEMO.pop((self.t.name, integration_id), None)

    def save_alfacrm_account(self, integration_id: str, account: AlfaCrmAccount) -> None:
        """The record's `alfacrm` block (no secrets in it), e.g. once the API user's id is known."""
        self.t.update_fields(int_pk(integration_id), META, {"alfacrm": account.model_dump(mode="json")})
        _MEMO.pop((self.t.name, integration_id), None)

    def set_active(self, integration_id: str, active: bool) -> bool:
        done = self.t.update_fields(int_pk(integration_id), META, {"active": active})
        _MEMO.pop((self.t.name, integration_id), None)
        return done

    # --- look-up cache (DynamoDB + memory) --------------------------------------------------------
    def cached(self, integration_id: str, name: str) -> Any | None:
        """A cached look-up (lead statuses, branches, teachers…) or None when absent or expired."""
        now = time.time()
        hit = self._lookups.get((integration_id, name))
        if hit and hit[0] > now:
            return hit[1]
        item = self.t.get(int_pk(integration_id), f"CACHE#{name}", consistent=False)
        if item is None or is_expired(item, now):
            return None
        self._lookups[(integration_id, name)] = (float(item["expires_at"]), item["value"])
        return item["value"]

    def put_cached(self, integration_id: str, name: str, value: Any, ttl_seconds: int) -> None:
        expires = int(time.time()) + ttl_seconds
        self.t.put({"pk": int_pk(integration_id), "sk": f"CACHE#{name}", "value": value, "expires_at": expires})
        self._lookups[(integration_id, name)] = (float(expires), value)

    def drop_cached(self, integration_id: str, name: str) -> None:
        self.t.delete(int_pk(integration_id), f"CACHE#{name}")
        self._lookups.pop((integration_id, name), None)

    # --- parked items ---------------------------------------------------------------------------
    def park(
        self, integration_id: str, kind: str, key: str, *, payload: Any, error: str, code: str | None = None
    ) -> None:
        """Something that failed for a reason a retry will not fix: visible and replayable."""
        self.t.put(
            {
                "pk": int_pk(integration_id),
                "sk": f"PARKED#{kind}#{key}",
                "gsi1pk": f"PARKED#{integration_id}",
                "gsi1sk": f"{kind}#{key}",
                "kind": kind,
                "key": key,
                "payload": payload,
                "error": error,
                "code": code,
                "parked_at": int(time.time()),
            }
        )

    def parked(self, integration_id: str) -> builtins.list[dict[str, Any]]:
        return [
            {k: i.get(k) for k in ("kind", "key", "payload", "error", "code", "parked_at")}
            for i in self.t.query_gsi(f"PARKED#{integration_id}")
        ]

    def unpark(self, integration_id: str, kind: str, key: str) -> None:
        self.t.delete(int_pk(integration_id), f"PARKED#{kind}#{key}")

    # --- UIS points spent per day -----------------------------------------------------------------
    def add_points(self, integration_id: str, day: str, points: int, purpose: str = "total") -> int:
        return self.t.add_counter(int_pk(integration_id), f"BUDGET#{day}", purpose, points, ttl_seconds=90 * 86400)

    def points(self, integration_id: str, day: str) -> dict[str, int]:
        item = self.t.get(int_pk(integration_id), f"BUDGET#{day}", consistent=False) or {}
        return {k: int(v) for k, v in item.items() if k not in {"pk", "sk", "expires_at"}}

    def recent_points(self, integration_id: str, days: int = 7) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for item in self.t.query(int_pk(integration_id), "BUDGET#", forward=False, limit=days):
            out[item["sk"].removeprefix("BUDGET#")] = {
                k: int(v) for k, v in item.items() if k not in {"pk", "sk", "expires_at"}
            }
        return out
