"""Hourly reconciliation: what webhooks missed, and funnels renamed in AlfaCRM.

AlfaCRM webhooks have no retries and no ordering guarantee, and a lost one is simply lost; AlfaCRM's
change log (`log/index`) still has the change. Per active integration with deals enabled:
1. lead statuses are re-read and `ensure_funnels` runs (a status renamed or added without a customer
   event would otherwise stay stale in UIS);
2. `log/index` for Customer and Pay is read since the stored watermark (`WM#alfacrm_log`), at most
   `MAX_PAGES` pages per entity per run; each change the customer's snapshot has not seen is sent to the
   deal events queue as the webhook it should have been, so the deal worker stays the only writer and the
   catch-up gets its retries and DLQ.

Entries are read as clients of real accounts read them (`connector.alfacrm.models.LogEntry`: `event` 1/2/3,
fields as maps or lists of one-key maps) and turned into the webhook they stand for; one that does not read
as a change is skipped with a warning, never silently. The log's order is undocumented (the real export runs
newest first): it is detected and remembered. The first run only places the watermark at the current end:
history from before the integration existed is not replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.alfacrm.models import LogEntry, WebhookEvent, to_int
from connector.deals import rules
from connector.deals.funnels import ensure_funnels
from connector.deals.lookups import Lookups
from connector.errors import ConnectorError
from connector.observability import logger
from connector.timeutil import to_iso, utcnow

if TYPE_CHECKING:
    from connector.alfacrm.client import AlfaCrmClient
    from connector.ports import ClientFactory
    from connector.settings import Integration
    from connector.store import Store

WATERMARK = "alfacrm_log"
LOG_ENTITIES = ("Customer", "Pay")
MAX_PAGES = 20  # × 50 entries per entity per hour
PAGE_SIZE = 50

Sender = Callable[[list[dict[str, Any]]], int]


@dataclass
class ReconcileReport:
    integration_id: str
    fed: int = 0
    pages: int = 0
    funnels_changed: bool = False
    error: str | None = None
    per_entity: dict[str, int] = field(default_factory=dict)


def _queue_sender(messages: list[dict[str, Any]]) -> int:
    from connector import queues
    from connector.config import env

    return queues.send_many(env().deal_events_queue_url, messages) if messages else 0


def reconcile_all(
    *,
    store: Store | None = None,
    clients: ClientFactory | None = None,
    send: Sender | None = None,
    now: Callable[[], datetime] = utcnow,
    max_pages: int = MAX_PAGES,
) -> list[ReconcileReport]:
    from connector.ports import default_clients
    from connector.store import default_store

    store = store or default_store()
    clients = clients or default_clients
    send = send or _queue_sender
    reports = []
    for integration in store.integrations.list_active():
        if not integration.settings.deals.enabled:
            continue
        try:
            reports.append(
                reconcile_integration(
                    integration, store=store, clients=clients, send=send, now=now, max_pages=max_pages
                )
            )
        except ConnectorError as exc:
            logger.warning("reconcile failed", extra={"integration_id": integration.id, "code": exc.code})
            reports.append(ReconcileReport(integration.id, error=exc.message))
    return reports


def reconcile_integration(
    integration: Integration,
    *,
    store: Store,
    clients: ClientFactory,
    send: Sender,
    now: Callable[[], datetime] = utcnow,
    max_pages: int = MAX_PAGES,
) -> ReconcileReport:
    report = ReconcileReport(integration.id)
    alfacrm = clients.alfacrm(integration)
    Lookups(integration, store=store, alfacrm=lambda: alfacrm).lead_statuses(refresh=True)
    report.funnels_changed = ensure_funnels(integration, store=store, clients=clients, now=now).changed

    branch = integration.alfacrm.branch_id
    marks = dict(store.deals.watermark(integration.id, WATERMARK) or {})
    received_at = to_iso(now())
    for entity in LOG_ENTITIES:
        entries, mark, pages = _read_log(alfacrm, entity, branch, marks.get(entity), max_pages)
        report.pages += pages
        events = _as_webhooks(entries, branch)
        unseen = _unseen(store, integration.id, entity, events)
        messages = [
            {"integration_id": integration.id, "received_at": received_at, "source": "reconciler", "event": e}
            for e in unseen
        ]
        if messages:
            send(messages)
        report.per_entity[entity] = len(messages)
        report.fed += len(messages)
        marks[entity] = mark
        # saved per entity: a failure on Pay keeps Customer's progress
        store.deals.set_watermark(integration.id, WATERMARK, marks)
    if report.fed:
        logger.info("missed AlfaCRM changes re-queued", extra={"integration_id": integration.id, "count": report.fed})
    return report


# --- the log -----------------------------------------------------------------------------------------------
def _key(entry: Mapping[str, Any]) -> tuple[str, int]:
    return str(entry.get("date_time") or entry.get("datetime") or ""), to_int(entry.get("id")) or 0


def _order(items: list[dict[str, Any]]) -> str | None:
    if len(items) < 2 or _key(items[0]) == _key(items[-1]):
        return None
    return "desc" if _key(items[0]) > _key(items[-1]) else "asc"


def _read_log(
    alfacrm: AlfaCrmClient, entity: str, branch: int, mark: Mapping[str, Any] | None, max_pages: int
) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Entries newer than `mark` (oldest first), the new mark, and the pages read."""
    filters = {"entity": entity}
    first = alfacrm.index("log", filters, branch_id=branch, page=0)
    pages = 1
    order = (mark or {}).get("order") or _order(first.items)
    if mark is None:
        # first run: remember where the log ends now, replay nothing
        last_page = max((first.total - 1) // PAGE_SIZE, 0)
        items = first.items
        if order != "desc" and last_page > 0:
            items = alfacrm.index("log", filters, branch_id=branch, page=last_page).items
            pages += 1
        newest = max(items, key=_key) if items else None
        return [], _mark(newest, last_page if order != "desc" else 0, order), pages

    since = (str(mark.get("at") or ""), int(mark.get("id") or 0))
    found: list[dict[str, Any]] = []
    if order == "desc":
        page, items = 0, first.items
        while items:
            found += [i for i in items if _key(i) > since]
            if any(_key(i) <= since for i in items) or pages >= max_pages or len(items) < PAGE_SIZE:
                break
            page += 1
            items = alfacrm.index("log", filters, branch_id=branch, page=page).items
            pages += 1
        last_page = 0
    else:
        page = int(mark.get("page") or 0)
        items = first.items if page == 0 else alfacrm.index("log", filters, branch_id=branch, page=page).items
        pages += page != 0
        last_page = page
        while items:
            found += [i for i in items if _key(i) > since]
            last_page = page
            if len(items) < PAGE_SIZE or pages >= max_pages:
                break
            page += 1
            items = alfacrm.index("log", filters, branch_id=branch, page=page).items
            pages += 1
    found.sort(key=_key)
    newest = found[-1] if found else None
    new_mark = _mark(newest, last_page, order) if newest else {**mark, "page": last_page, "order": order}
    return found, new_mark, pages


def _mark(entry: Mapping[str, Any] | None, page: int, order: str | None) -> dict[str, Any]:
    at, log_id = _key(entry) if entry else ("", 0)
    return {"at": at, "id": log_id, "page": page, "order": order}


def _as_webhooks(entries: list[dict[str, Any]], branch: int) -> list[dict[str, Any]]:
    """Log entries as the webhooks AlfaCRM would have sent for them."""
    out = []
    for raw in entries:
        try:
            out.append(LogEntry.model_validate(raw).as_webhook(branch))
        except ValueError:
            logger.warning("alfacrm log entry not understood; skipped", extra={"log_id": raw.get("id")})
    return out


def _unseen(store: Store, integration_id: str, entity: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes whose snapshot has not recorded them (their webhook never arrived)."""
    parsed = []
    for raw in events:
        try:
            parsed.append((raw, WebhookEvent.model_validate(raw)))
        except ValueError:
            continue
    if not parsed:
        return []
    ids = {e.entity_id for _, e in parsed}
    seen: dict[int, set[str]] = {}
    if entity == "Customer":
        for cid, snap in store.deals.get_customers(integration_id, ids).items():
            seen[cid] = set(snap.seen)
    else:
        owners = store.deals.pay_owners(integration_id, ids)
        snaps = store.deals.get_customers(integration_id, set(owners.values()))
        for pay_id, cid in owners.items():
            info = snaps[cid].pays.get(str(pay_id)) if cid in snaps else None
            seen[pay_id] = set(info.seen) if info else set()
    return [raw for raw, event in parsed if rules.event_key(event) not in seen.get(event.entity_id, set())]
