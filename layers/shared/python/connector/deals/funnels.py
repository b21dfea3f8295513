"""The two UIS funnels ("Первая продажа", "Допродажи") and the deal user fields (teacher, branch).

`ensure_funnels` makes UIS match AlfaCRM's lead statuses and the integration's success/failure choice:
- a funnel that does not exist is created with all its stages (`duplicate_entity` = it exists: read it);
- a new status becomes a new in-process stage, a renamed or re-ordered one is updated;
- a stage no longer wanted (a status deleted, or now chosen as success/failure) is deleted when UIS
  allows it; UIS refuses while deals sit in it, and then it is kept (and not tried again);
- user fields are created once per integration.
What UIS has is remembered in `UIS#funnel#<funnel>` / `UIS#field#<name>` with a hash of the wanted
stages, so the uploader's call before each flush costs one DynamoDB read and no UIS point when nothing
changed (and nothing at all within a minute in a warm container: the runtime's `caches.funnels`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field

from connector.alfacrm.models import to_int
from connector.deals.lookups import Lookups
from connector.errors import UisValidationError
from connector.models.deals import (
    FAILED,
    FIRST_SALE,
    FUNNEL_NAMES,
    FUNNELS,
    NO_STATUS,
    SUCCESS,
    UPSELL,
    UPSELL_CANCELLED,
    UPSELL_NEW,
    UPSELL_PAID,
    USER_FIELDS,
)
from connector.models.raw import JsonValue
from connector.models.sync import CheckedFunnels, FunnelState, StageState, UserFieldState
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import DealsSettings, Integration
from connector.uis.client import UisClient
from connector.uis.points import UisPoints


@dataclass
class FunnelSync:
    """Which stage ext_ids UIS holds per funnel, and what the sync cost."""

    known: dict[str, set[str]] = field(default_factory=dict)
    changed: bool = False
    points: int = 0


def ensure_funnels(
    rt: Runtime, integration: Integration, *, force: bool = False, points: UisPoints | None = None
) -> FunnelSync:
    """Make the UIS funnels and user fields match AlfaCRM and the settings (see the module doc).

    `force` re-reads the lead statuses from AlfaCRM and the funnels from UIS instead of trusting the stored
    sync state — for activation and settings saves, and when a deal names a stage UIS does not know.
    `points`: the caller's metered UIS access (a flush); else the sync opens its own (purpose `deals`).
    """
    specs = funnel_specs(Lookups.of(rt, integration).lead_statuses(refresh=force), integration.settings.deals)
    wanted_hash = specs_hash(specs)
    memo = rt.caches.funnels.get(integration.id)
    if not force and memo is not None and memo.wanted_hash == wanted_hash:
        return FunnelSync(known={k: set(v) for k, v in memo.known.items()})
    state = rt.store.deals.uis_sync(integration.id)
    result = FunnelSync()
    with ExitStack() as scope:
        uis = points or scope.enter_context(rt.uis_points(integration, "deals"))
        before = uis.spent
        for funnel in FUNNELS:
            item = state.funnels.get(funnel)
            funnel_hash = specs_hash({funnel: specs[funnel]})
            if item is None or item.hash != funnel_hash or force:
                item = _sync_funnel(uis.client, funnel, specs[funnel], item, force=force)
                item.hash = funnel_hash
                rt.store.deals.put_funnel(integration.id, funnel, item)
                result.changed = True
            result.known[funnel] = set(item.stages)
        for name, label in USER_FIELDS.items():
            if name not in state.fields or force:
                _create_user_field(uis.client, name, label)
                rt.store.deals.put_user_field(integration.id, name, UserFieldState(name=label, data_type="string"))
                result.changed = True
        result.points = uis.spent - before
    if force and integration.funnel_sync is not None:
        rt.store.integrations.set_funnel_sync(integration.id, None)  # the sync a settings save owed is done
    known = {k: frozenset(v) for k, v in result.known.items()}
    rt.caches.funnels.put(integration.id, CheckedFunnels(wanted_hash=wanted_hash, known=known))
    if result.changed:
        logger.info("uis funnels synced", extra={"integration_id": integration.id, "points": result.points})
    return result


def _create_user_field(uis: UisClient, name: str, label: str) -> None:
    try:
        uis.create_deal_user_field(name, label, "string")
    except UisValidationError as exc:
        if exc.mnemonic != "duplicate_entity":
            raise


def _stage_map(specs: list[StageSpec]) -> dict[str, StageState]:
    return {s.ext_id: StageState(name=s.name, status=s.status, order=s.order) for s in specs}


def _read_funnel(uis: UisClient, funnel: str) -> dict[str, StageState] | None:
    """The stages UIS holds in this funnel (`get.sales_funnel`), or None when it has no such funnel."""
    for row in uis.get_sales_funnels(ext_id=funnel):
        if row.get("ext_id") != funnel:
            continue
        stages = row.get("stages")
        return {
            str(s.get("stage_ext_id")): StageState.model_validate(
                {"name": s.get("stage_name"), "status": s.get("stage_status"), "order": s.get("stage_order")}
            )
            for s in (stages if isinstance(stages, list) else [])
            if isinstance(s, dict)
        }
    return None


def _sync_funnel(
    uis: UisClient, funnel: str, specs: list[StageSpec], item: FunnelState | None, *, force: bool
) -> FunnelState:
    """Bring one funnel in UIS to `specs`; → the sync state to store (`stages` UIS holds, `kept` old ones)."""
    existing = dict(item.stages) if item and not force else _read_funnel(uis, funnel)
    if existing is None:
        existing = _create_funnel(uis, funnel, specs)
        if existing is None:
            return FunnelState(stages=_stage_map(specs), kept=[])
    for spec in specs:
        _update_stage(uis, funnel, spec, existing.get(spec.ext_id))
    return _drop_unwanted(uis, funnel, _stage_map(specs), existing, set(item.kept) if item else set())


def _create_funnel(uis: UisClient, funnel: str, specs: list[StageSpec]) -> dict[str, StageState] | None:
    """Create the funnel with all its stages (→ None); one made earlier is read instead (→ UIS's stages)."""
    in_process = [{"ext_id": s.ext_id, "name": s.name, "order": s.order} for s in specs if s.status == "in_process"]
    success = next(s for s in specs if s.status == "success")
    failed = next(s for s in specs if s.status == "failed")
    try:
        uis.create_sales_funnel(
            funnel,
            FUNNEL_NAMES[funnel],
            success={"ext_id": success.ext_id, "name": success.name},
            failed={"ext_id": failed.ext_id, "name": failed.name},
            in_process=in_process,
        )
        return None
    except UisValidationError as exc:
        if exc.mnemonic != "duplicate_entity":
            raise
    # created earlier (sync state lost, or a re-activation): take UIS's view and reconcile it
    return _read_funnel(uis, funnel) or {}


def _update_stage(uis: UisClient, funnel: str, spec: StageSpec, have: StageState | None) -> None:
    """A missing in-process stage is created, a renamed or re-ordered one updated."""
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
    elif have.name != spec.name or (spec.status == "in_process" and have.order != spec.order):
        order = spec.order if spec.status == "in_process" else None
        uis.update_sales_funnel_stage(funnel, spec.ext_id, name=spec.name, order=order)


def _drop_unwanted(
    uis: UisClient,
    funnel: str,
    wanted: dict[str, StageState],
    existing: dict[str, StageState],
    kept_before: set[str],
) -> FunnelState:
    """Delete the in-process stages no longer wanted; those UIS keeps (deals sit in them) stay, untried again."""
    kept: set[str] = set()
    stages = dict(wanted)
    for ext_id, have in existing.items():
        if ext_id in wanted or have.status != "in_process":
            continue
        if ext_id not in kept_before:
            try:
                uis.delete_sales_funnel_stage(funnel, ext_id)
                continue
            except UisValidationError:
                pass  # deals are in it (or it is the last one): UIS keeps it, and so do we
        kept.add(ext_id)
        stages[ext_id] = have
    return FunnelState(stages=stages, kept=sorted(kept))


# --- the stages the funnels should have -----------------------------------------------------------------
@dataclass(frozen=True)
class StageSpec:
    ext_id: str
    name: str
    status: str  # in_process | success | failed
    order: int | None = None


MAX_IN_PROCESS = 100


def funnel_specs(statuses: Iterable[Mapping[str, JsonValue]], settings: DealsSettings) -> dict[str, list[StageSpec]]:
    """The two funnels' stages. First sale: "Без статуса" first, then every AlfaCRM lead status that is
    neither success nor failure in AlfaCRM's order (weight), orders 10, 20, 30… (gaps for later inserts)."""
    chosen = set(settings.first_sale.success_status_ids) | set(settings.first_sale.failure_status_ids)
    ordered = sorted(
        (s for s in statuses if to_int(s.get("id")) not in chosen),
        key=lambda s: (to_int(s.get("weight")) or 0, to_int(s.get("id")) or 0),
    )
    in_process = [StageSpec(NO_STATUS, "Без статуса", "in_process", 10)]
    for status in ordered[: MAX_IN_PROCESS - 1]:
        order = 10 * (len(in_process) + 1)
        in_process.append(
            StageSpec(str(to_int(status["id"])), str(status.get("name") or status["id"]), "in_process", order)
        )
    return {
        FIRST_SALE: [
            *in_process,
            StageSpec(SUCCESS, "Успешная продажа", "success"),
            StageSpec(FAILED, "Отказ", "failed"),
        ],
        UPSELL: [
            StageSpec(UPSELL_NEW, "Новая оплата", "in_process", 10),
            StageSpec(UPSELL_PAID, "Оплачено", "success"),
            StageSpec(UPSELL_CANCELLED, "Отменено", "failed"),
        ],
    }


def specs_hash(specs: Mapping[str, list[StageSpec]]) -> str:
    raw = json.dumps({k: [s.__dict__ for s in v] for k, v in sorted(specs.items())}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]
