"""Hourly reconciliation: what webhooks missed, and funnels renamed in AlfaCRM.

AlfaCRM webhooks have no retries and no ordering guarantee, and a lost one is simply lost; AlfaCRM's
change log (`log/index`) still has the change. `reconcile_integration` is the per-school unit of work of the
fan-out's `reconcile` job (`connector.fanout`, hourly per integration with deals enabled):
1. lead statuses are re-read and `ensure_funnels` runs (a status renamed or added without a customer
   event would otherwise stay stale in UIS);
2. `log/index` for Customer and Pay is read since the stored watermark (`WM#alfacrm_log`), at most
   `MAX_PAGES` pages per entity per run; each change the customer's snapshot has not seen is sent to the
   deal events queue as the webhook it should have been, so the deal worker stays the only writer and the
   catch-up gets its retries and DLQ;
3. what the log missed as well: the customer and payment lists changed since a watermark, compared with the
   snapshots (`deals.reread`), each disagreement sent the same way.

Entries are read as clients of real accounts read them (`connector.alfacrm.models.LogEntry`: `event` 1/2/3,
fields as maps or lists of one-key maps) and turned into the webhook they stand for; one that does not read
as a change is skipped with a warning, never silently. The log's order is undocumented (the real export runs
newest first): it is detected and remembered. The first run only places the watermark at the current end:
history from before the integration existed is not replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from connector.alfacrm.client import AlfaCrmClient
from connector.alfacrm.models import LogEntry, WebhookEvent, to_int
from connector.deals import snapshots
from connector.deals.funnels import ensure_funnels
from connector.deals.lookups import Lookups
from connector.deals.reread import reread
from connector.fanout import RECONCILE_EVERY, Next, RemainingMs
from connector.models.messages import DealEventMessage
from connector.models.raw import JsonObject, JsonValue
from connector.models.sync import LogMark
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.store import Store
from connector.timeutil import to_iso

LOG_ENTITIES = ("Customer", "Pay")
MAX_PAGES = 20  # × 50 entries per entity per hour
PAGE_SIZE = 50

Sender = Callable[[list[DealEventMessage]], int]


@dataclass
class ReconcileReport:
    integration_id: str
    fed: int = 0
    pages: int = 0
    funnels_changed: bool = False
    error: str | None = None
    per_entity: dict[str, int] = field(default_factory=dict)
    list_filters: dict[str, str] = field(default_factory=dict)  # entity → whether `updated_at_from` was honoured


def reconcile_integration(
    rt: Runtime, integration: Integration, *, send: Sender | None = None, max_pages: int = MAX_PAGES
) -> ReconcileReport:
    """Funnels synced with AlfaCRM's statuses, then each change the log has and no snapshot saw, re-queued.

    `send` puts the messages on the deal events queue (a test drains them straight into the worker)."""
    send = send or rt.queues.send_deal_events
    report = ReconcileReport(integration.id)
    alfacrm = rt.clients.alfacrm(integration)
    Lookups.of(rt, integration, lambda: alfacrm).lead_statuses(refresh=True)
    report.funnels_changed = ensure_funnels(rt, integration).changed

    branch = integration.alfacrm.branch_id
    marks = rt.store.deals.log_marks(integration.id)
    received_at = to_iso(rt.now())
    fed: set[tuple[str, int]] = set()
    for entity in LOG_ENTITIES:
        entries, mark, pages = _read_log(alfacrm, entity, branch, marks.get(entity), max_pages)
        report.pages += pages
        unseen = _unseen(rt.store, integration.id, entity, as_webhooks(entries, branch))
        messages = [
            DealEventMessage(integration_id=integration.id, received_at=received_at, source="reconciler", event=e)
            for e in unseen
        ]
        if messages:
            send(messages)
        report.per_entity[entity] = len(messages)
        report.fed += len(messages)
        marks[entity] = mark
        # saved per entity: a failure on Pay keeps Customer's progress
        rt.store.deals.set_log_marks(integration.id, marks)
        fed |= {(entity, to_int(m.event.get("entity_id")) or 0) for m in messages}
    # what the log missed too: the lists changed since the watermark, read against the snapshots
    changed = reread(rt, integration, alfacrm, skip=fed)
    report.pages += changed.pages
    report.per_entity["lists"] = len(changed.events)
    report.list_filters = changed.filters
    if changed.events:
        send(
            [
                DealEventMessage(integration_id=integration.id, received_at=received_at, source="reconciler", event=e)
                for e in changed.events
            ]
        )
        report.fed += len(changed.events)
    if report.fed:
        logger.info("missed AlfaCRM changes re-queued", extra={"integration_id": integration.id, "count": report.fed})
    return report


# --- the log -----------------------------------------------------------------------------------------------
def _key(entry: Mapping[str, JsonValue]) -> tuple[str, int]:
    return str(entry.get("date_time") or entry.get("datetime") or ""), to_int(entry.get("id")) or 0


def _order(items: list[JsonObject]) -> str | None:
    if len(items) < 2 or _key(items[0]) == _key(items[-1]):
        return None
    return "desc" if _key(items[0]) > _key(items[-1]) else "asc"


def _read_log(
    alfacrm: AlfaCrmClient, entity: str, branch: int, mark: LogMark | None, max_pages: int
) -> tuple[list[JsonObject], LogMark, int]:
    """Entries newer than `mark` (oldest first), the new mark, and the pages read."""
    filters = {"entity": entity}
    first = alfacrm.index("log", filters, branch_id=branch, page=0)
    pages = 1
    order = (mark.order if mark else None) or _order(first.items)
    if mark is None:
        # first run: remember where the log ends now, replay nothing
        last_page = max((first.total - 1) // PAGE_SIZE, 0)
        items = first.items
        if order != "desc" and last_page > 0:
            items = alfacrm.index("log", filters, branch_id=branch, page=last_page).items
            pages += 1
        newest = max(items, key=_key) if items else None
        return [], _mark(newest, last_page if order != "desc" else 0, order), pages

    since = (mark.at, mark.id)
    found: list[JsonObject] = []
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
        page = mark.page
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
    new_mark = (
        _mark(newest, last_page, order) if newest else mark.model_copy(update={"page": last_page, "order": order})
    )
    return found, new_mark, pages


def _mark(entry: Mapping[str, JsonValue] | None, page: int, order: str | None) -> LogMark:
    at, log_id = _key(entry) if entry else ("", 0)
    return LogMark(at=at, id=log_id, page=page, order=order)


def as_webhooks(entries: list[JsonObject], branch: int) -> list[JsonObject]:
    """Log entries as the webhooks AlfaCRM would have sent for them (the backfill folds them the same way)."""
    out: list[JsonObject] = []
    for raw in entries:
        try:
            out.append(LogEntry.model_validate(raw).as_webhook(branch))
        except ValueError:
            logger.warning("alfacrm log entry not understood; skipped", extra={"log_id": raw.get("id")})
    return out


def _unseen(store: Store, integration_id: str, entity: str, events: list[JsonObject]) -> list[JsonObject]:
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
    return [raw for raw, event in parsed if snapshots.event_key(event) not in seen.get(event.entity_id, set())]


# --- the fan-out's reconcile job --------------------------------------------------------------------------
def reconcile_job(rt: Runtime, integration: Integration, remaining_ms: RemainingMs) -> Next:
    """The `reconcile` job's run for one school (`connector.fanout`), hourly."""
    if not integration.active or not integration.settings.deals.enabled:
        return Next(None)
    report = reconcile_integration(rt, integration)
    return Next(rt.now() + RECONCILE_EVERY, asdict(report))
