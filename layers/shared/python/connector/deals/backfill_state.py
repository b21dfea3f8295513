"""A school's backfill as the admin API sees it: started (its state saved, its job due now) and its progress.

The reading itself is `connector.deals.backfill`, which the reconciler's function loads; these need only the
store, so the admin API starts a backfill without loading the AlfaCRM client or the deal pipeline.
"""

from __future__ import annotations

from connector.models.raw import JsonObject
from connector.models.work import BackfillRange, BackfillState
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.timeutil import to_iso


def start(rt: Runtime, integration: Integration, span: BackfillRange, *, first_only: bool = False) -> BackfillState:
    """Start a backfill (→ its state). A running one is not restarted; `first_only`: only if none ever ran."""
    current = rt.store.backfill.get(integration.id) or BackfillState()
    if current.state == "running" or (first_only and current.state != "idle"):
        return current
    now = to_iso(rt.now())
    state = BackfillState(state="running", range=span, started_at=now, updated_at=now, version=current.version)
    saved = rt.store.backfill.save(integration.id, state)
    rt.store.work.schedule(integration.id, "backfill", rt.now())
    logger.info("backfill started", extra={"integration_id": integration.id, "range": span.model_dump(mode="json")})
    return saved


def progress(rt: Runtime, integration_id: str) -> JsonObject:
    return (rt.store.backfill.get(integration_id) or BackfillState()).progress()
