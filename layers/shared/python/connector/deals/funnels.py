"""The two UIS funnels ("Первая продажа", "Допродажи") and the deal user fields (teacher, branch).

`ensure_funnels` makes UIS match AlfaCRM's lead statuses and the integration's success/failure choice:
- a funnel that does not exist is created with all its stages (`duplicate_entity` = it exists: read it);
- a new status becomes a new in-process stage, a renamed or re-ordered one is updated;
- a stage no longer wanted (a status deleted, or now chosen as success/failure) is deleted when UIS
  allows it; UIS refuses while deals sit in it, and then it is kept (and not tried again);
- user fields are created once per integration.
What UIS has is remembered in `UIS#funnel#<funnel>` / `UIS#field#<name>` with a hash of the wanted
stages, so the uploader's call before each flush costs one DynamoDB read and no UIS point when nothing
changed (and nothing at all within `MEMO_SECONDS` in a warm container).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.deals import rules
from connector.deals.lookups import Lookups
from connector.errors import UisValidationError
from connector.observability import logger
from connector.timeutil import utc_to_local, utcnow

if TYPE_CHECKING:
    from connector.ports import ClientFactory
    from connector.settings import Integration
    from connector.store import Store
    from connector.uis.client import UisClient

MEMO_SECONDS = 60.0
_memo: dict[str, tuple[float, str, dict[str, set[str]]]] = {}


@dataclass
class FunnelSync:
    """Which stage ext_ids UIS holds per funnel, and what the sync cost."""

    known: dict[str, set[str]] = field(default_factory=dict)
    changed: bool = False
    points: int = 0


def _wanted(integration: Integration, lookups: Lookups, *, refresh: bool) -> dict[str, list[rules.StageSpec]]:
    return rules.funnel_specs(lookups.lead_statuses(refresh=refresh), integration.settings.deals)


def ensure_funnels(
    integration: Integration,
    *,
    store: Store,
    clients: ClientFactory,
    force: bool = False,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = utcnow,
) -> FunnelSync:
    """Make the UIS funnels and user fields match AlfaCRM and the settings (see the module doc).

    `force` re-reads the lead statuses from AlfaCRM and the funnels from UIS instead of trusting the stored
    sync state — for activation and settings saves, and when a deal names a stage UIS does not know.
    """
    lookups = Lookups(integration, store=store, alfacrm=lambda: clients.alfacrm(integration))
    specs = _wanted(integration, lookups, refresh=force)
    wanted_hash = rules.specs_hash(specs)
    memo = _memo.get(integration.id)
    if not force and memo and memo[1] == wanted_hash and clock() - memo[0] < MEMO_SECONDS:
        return FunnelSync(known={k: set(v) for k, v in memo[2].items()})

    names = [f"funnel#{f}" for f in rules.FUNNELS] + [f"field#{n}" for n in rules.USER_FIELDS]
    state = store.deals.sync_items(integration.id, names)
    result = FunnelSync()
    uis: UisClient | None = None

    def client() -> UisClient:
        nonlocal uis
        if uis is None:
            uis = clients.uis(integration)
            result.points -= uis.calls
        return uis

    try:
        for funnel in rules.FUNNELS:
            item = state.get(f"funnel#{funnel}")
            funnel_hash = rules.specs_hash({funnel: specs[funnel]})
            if item and item.get("hash") == funnel_hash and not force:
                result.known[funnel] = set(item.get("stages", {}))
                continue
            stages = _sync_funnel(client(), funnel, specs[funnel], item, force=force)
            store.deals.put_sync(integration.id, f"funnel#{funnel}", {"hash": funnel_hash, **stages})
            result.known[funnel] = set(stages["stages"])
            result.changed = True
        for name, label in rules.USER_FIELDS.items():
            if f"field#{name}" in state and not force:
                continue
            try:
                client().create_deal_user_field(name, label, "string")
            except UisValidationError as exc:
                if exc.mnemonic != "duplicate_entity":
                    raise
            store.deals.put_sync(integration.id, f"field#{name}", {"name": label, "data_type": "string"})
            result.changed = True
    finally:
        if uis is not None:
            result.points += uis.calls
            if result.points:
                day = utc_to_local(now(), integration.timezone).date().isoformat()
                store.integrations.add_points(integration.id, day, result.points, purpose="deals")
    _memo[integration.id] = (clock(), wanted_hash, {k: set(v) for k, v in result.known.items()})
    if result.changed:
        logger.info("uis funnels synced", extra={"integration_id": integration.id, "points": result.points})
    return result


def forget_memo(integration_id: str | None = None) -> None:
    """Drop the in-container memo (tests; an admin settings save in the same container)."""
    if integration_id is None:
        _memo.clear()
    else:
        _memo.pop(integration_id, None)


def _stage_map(specs: list[rules.StageSpec]) -> dict[str, dict[str, Any]]:
    return {s.ext_id: {"name": s.name, "status": s.status, "order": s.order} for s in specs}


def _read_funnel(uis: UisClient, funnel: str) -> dict[str, dict[str, Any]] | None:
    for row in uis.get_sales_funnels(ext_id=funnel):
        if row.get("ext_id") == funnel:
            return {
                str(s["stage_ext_id"]): {
                    "name": s.get("stage_name"),
                    "status": s.get("stage_status"),
                    "order": s.get("stage_order"),
                }
                for s in row.get("stages") or []
            }
    return None


def _sync_funnel(
    uis: UisClient,
    funnel: str,
    specs: list[rules.StageSpec],
    item: dict[str, Any] | None,
    *,
    force: bool,
) -> dict[str, Any]:
    """Bring one funnel in UIS to `specs`; → the sync state to store (`stages` UIS holds, `kept` old ones)."""
    wanted = _stage_map(specs)
    kept_before = set(item.get("kept", [])) if item else set()
    existing: dict[str, dict[str, Any]] | None = None
    if item and not force:
        existing = {k: dict(v) for k, v in item.get("stages", {}).items()}
    else:
        existing = _read_funnel(uis, funnel)
    if existing is None:
        in_process = [{"ext_id": s.ext_id, "name": s.name, "order": s.order} for s in specs if s.status == "in_process"]
        success = next(s for s in specs if s.status == "success")
        failed = next(s for s in specs if s.status == "failed")
        try:
            uis.create_sales_funnel(
                funnel,
                rules.FUNNEL_NAMES[funnel],
                success={"ext_id": success.ext_id, "name": success.name},
                failed={"ext_id": failed.ext_id, "name": failed.name},
                in_process=in_process,
            )
            return {"stages": wanted, "kept": []}
        except UisValidationError as exc:
            if exc.mnemonic != "duplicate_entity":
                raise
            # created earlier (sync state lost, or a re-activation): take UIS's view and reconcile it
            existing = _read_funnel(uis, funnel) or {}

    for spec in specs:
        have = existing.get(spec.ext_id)
        if have is None and spec.status == "in_process":
            try:
                uis.create_sales_funnel_stage(funnel, spec.ext_id, spec.name, spec.order or 10)
            except UisValidationError as exc:
                if exc.mnemonic != "duplicate_entity":
                    raise
                uis.update_sales_funnel_stage(funnel, spec.ext_id, name=spec.name, order=spec.order)
        elif have is None:
            # the closing stages are fixed at creation; a funnel made elsewhere with other ids cannot be fixed
            logger.warning("uis funnel lacks a closing stage", extra={"funnel": funnel, "stage": spec.ext_id})
        elif have.get("name") != spec.name or (spec.status == "in_process" and have.get("order") != spec.order):
            order = spec.order if spec.status == "in_process" else None
            uis.update_sales_funnel_stage(funnel, spec.ext_id, name=spec.name, order=order)

    kept: set[str] = set()
    stages = dict(wanted)
    for ext_id, have in existing.items():
        if ext_id in wanted or have.get("status") != "in_process":
            continue
        if ext_id in kept_before:
            kept.add(ext_id)
        else:
            try:
                uis.delete_sales_funnel_stage(funnel, ext_id)
                continue
            except UisValidationError:
                # deals are in it (or it is the last one): UIS keeps it, and so do we
                kept.add(ext_id)
        stages[ext_id] = have
    return {"stages": stages, "kept": sorted(kept)}
