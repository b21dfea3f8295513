"""Backfill on connect: the school's existing leads, clients and payments become deals, so its first report in
UIS is not empty (`POST /integrations/{id}/backfill`, and the first activation).

A backfill is a per-school job of the fan-out (`connector.fanout`, job `backfill`, on the reconciler's queue:
one chunk at a time per school). Each chunk reads AlfaCRM's lists page by page — first every branch's
customers (leads and clients, archived included), then every branch's payments, then every branch's change
log of customers (`log/index`, at most `MAX_LOG_PAGES` pages) — within the Lambda's time
(`CHUNK_MARGIN_MS` kept for the write-back), storing its cursor (`BackfillState`: phase, branch, page) after
every page, so the next chunk, or a retry after a crash, resumes where it stopped.

AlfaCRM's ~4 requests per second per account are shared with live traffic: every read goes through the
account-wide limiter every container shares (`rt.alfacrm_limiter`), and one chunk runs at a time per school
at the container's own spacing (`ALFACRM_RPS`, 2 by default), so at least half the budget stays for webhooks.

Starting one and its progress (`connector.deals.backfill_state`) need none of the reading, so the admin API
loads them alone. What a record becomes (the same snapshot writes and deal derivation as a webhook, `deals.worker`):
- a customer no snapshot knows yet: a snapshot as read, created at AlfaCRM's `created_at`, so its deal starts
  at its real creation time, in its current stage; a customer a webhook (or an earlier chunk) has already
  recorded is left as it is — live events know more than a list does, and nothing is written twice;
- a payment its customer's snapshot does not hold yet: added as created on its `document_date` (AlfaCRM's
  lists carry no creation time for payments); a payment whose customer has no snapshot (outside the date
  range) is not imported;
- a change-log entry of a customer with a snapshot: its facts (status, conversion, archiving) folded in with
  the log's own time, as the reconciler feeds a missed webhook, so a lead converted last month shows its
  stages at the times they happened, not all at its creation. The log's order is not documented (newest
  first in real exports): the cap keeps the pages read first.
The date range (`date_from`, `date_to`, inclusive) selects customers by `created_at` and payments by
`document_date`; a customer without `created_at` is imported only when no range is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime
from datetime import time as day_start

from connector.alfacrm.client import ALL_CUSTOMERS, AlfaCrmClient
from connector.alfacrm.models import Customer, Pay, WebhookEvent, parse_listed
from connector.deals import snapshots
from connector.deals.reconcile import as_webhooks
from connector.deals.worker import deal_context, refresh_deals
from connector.errors import ConcurrentUpdate, ConnectorError
from connector.fanout import BACKFILL_LEASE, Next, RemainingMs
from connector.models.deals import CustomerSnapshot
from connector.models.raw import JsonObject
from connector.models.work import BackfillState
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.timeutil import local_to_utc, to_iso

PAGE_SIZE = 50  # AlfaCRM's fixed page size
CHUNK_MARGIN_MS = 30_000  # left of the Lambda's time when a chunk stops starting pages
MAX_FAILURES = 8  # consecutive failed chunks before the backfill is given up (failed, restartable)
MAX_LOG_PAGES = 200  # × 50 change-log entries per backfill, every branch together
NEXT_PHASE = {"customers": "pays", "pays": "log", "log": "done"}
LOG_FILTER = {"entity": "Customer"}
# what each phase reads: the entity and the `index` filters
LISTS: dict[str, tuple[str, dict[str, object]]] = {
    "customers": ("customer", dict(ALL_CUSTOMERS)),
    "pays": ("pay", {}),
    "log": ("log", dict(LOG_FILTER)),
}


def run_chunk(rt: Runtime, integration: Integration, *, remaining_ms: Callable[[], int]) -> BackfillState:
    """Read pages until the Lambda's time runs short or the backfill is done; the cursor is saved per page.

    A ConnectorError (AlfaCRM unavailable, credentials) counts a failure and goes up, so the fan-out backs off;
    after `MAX_FAILURES` in a row the backfill ends `failed` (restartable by the admin route)."""
    state = rt.store.backfill.get(integration.id)
    if state is None or state.state != "running":
        return state or BackfillState()
    chunk = _Chunk(rt, integration, state)
    try:
        chunk.run(remaining_ms)
    except ConcurrentUpdate:
        # restarted (or another chunk wrote) meanwhile: that state is the one that goes on
        return rt.store.backfill.get(integration.id) or chunk.state
    except ConnectorError as exc:
        chunk.fail(exc)
        if chunk.state.state != "failed":
            raise
    return chunk.state


class _Chunk:
    def __init__(self, rt: Runtime, integration: Integration, state: BackfillState) -> None:
        self.rt = rt
        self.integration = integration
        self.state = state
        self.alfacrm: AlfaCrmClient = rt.clients.alfacrm(integration)
        self.ctx = deal_context(rt, integration, self.alfacrm)
        self.clock = time.monotonic

    def run(self, remaining_ms: Callable[[], int]) -> None:
        if not self.state.branches:
            self._plan()
        while self.state.phase != "done" and remaining_ms() > CHUNK_MARGIN_MS:
            began = self.clock()
            read, imported = self._page()
            self.state.done += read
            self.state.imported += imported
            self.state.seconds = round(self.state.seconds + self.clock() - began, 3)
            self.state.failures, self.state.error = 0, None
            if self.state.phase == "done":
                self.state.state = "done"
                self.state.finished_at = to_iso(self.rt.now())
            self._save()
        if self.state.state == "done":
            logger.info(
                "backfill done",
                extra={"integration_id": self.integration.id, "read": self.state.done, "imported": self.state.imported},
            )

    def fail(self, exc: ConnectorError) -> None:
        self.state.failures += 1
        self.state.error = exc.message
        if self.state.failures >= MAX_FAILURES:
            self.state.state = "failed"
            self.state.finished_at = to_iso(self.rt.now())
        logger.warning(
            "backfill chunk failed",
            extra={"integration_id": self.integration.id, "code": exc.code, "failures": self.state.failures},
        )
        self._save()

    def _save(self) -> None:
        self.state.updated_at = to_iso(self.rt.now())
        self.state = self.rt.store.backfill.save(self.integration.id, self.state)

    # --- the plan: every branch, and how many records there are ---------------------------------------
    def _plan(self) -> None:
        own = self.integration.alfacrm.branch_id
        listed = [b.id for b in self.alfacrm.branches() if b.is_active]
        self.state.branches = list(dict.fromkeys([own, *listed]))
        total = 0
        for branch in self.state.branches:
            total += self.alfacrm.index("customer", ALL_CUSTOMERS, branch_id=branch, page=0).total
            total += self.alfacrm.index("pay", {}, branch_id=branch, page=0).total
            log = self.alfacrm.index("log", LOG_FILTER, branch_id=branch, page=0).total
            total += min(log, MAX_LOG_PAGES * PAGE_SIZE)
        self.state.total = total
        self._save()

    # --- one page ---------------------------------------------------------------------------------------
    def _page(self) -> tuple[int, int]:
        """Read the cursor's page, fold it in, move the cursor; → (records read, records imported)."""
        st = self.state
        branch = st.branches[st.branch_index]
        entity, filters = LISTS[st.phase]
        page = self.alfacrm.index(entity, filters, branch_id=branch, page=st.page)
        read_at = to_iso(self.rt.now())
        if st.phase == "customers":
            imported = self._customers(page.items, read_at)
        elif st.phase == "pays":
            imported = self._pays(page.items, branch, read_at)
        else:
            st.log_pages += 1
            self._log(page.items, branch)
            imported = 0  # history of records imported already
        last = len(page.items) < PAGE_SIZE or (st.page + 1) * PAGE_SIZE >= page.total
        if last or (st.phase == "log" and st.log_pages >= MAX_LOG_PAGES):
            self._next_branch()
        else:
            st.page += 1
        return len(page.items), imported

    def _next_branch(self) -> None:
        st = self.state
        st.page = 0
        st.branch_index += 1
        if st.branch_index >= len(st.branches) or (st.phase == "log" and st.log_pages >= MAX_LOG_PAGES):
            st.branch_index = 0
            st.phase = NEXT_PHASE[st.phase]  # type: ignore[assignment]

    def _customers(self, items: list[JsonObject], read_at: str) -> int:
        records = [
            c for c in parse_listed(Customer, items) if self._in_range(c.created_at.date() if c.created_at else None)
        ]
        known = self.rt.store.deals.get_customers(self.integration.id, [c.id for c in records])
        imported = 0
        for customer in records:
            if customer.id in known:
                continue
            snap, written = self._create_snapshot(customer, read_at)
            if written:
                refresh_deals(self.ctx, snap, snap.first_seen_at)
                imported += 1
        return imported

    def _create_snapshot(self, customer: Customer, read_at: str) -> tuple[CustomerSnapshot, bool]:
        tz = self.integration.timezone
        at = to_iso(local_to_utc(customer.created_at, tz)) if customer.created_at else read_at
        listed = WebhookEvent(event="update", entity="Customer", entity_id=customer.id)

        def create(current: CustomerSnapshot | None) -> CustomerSnapshot:
            if current is not None:
                return current  # a webhook got there first: it knows more than a list does
            base = snapshots.new_snapshot(customer.id, at)
            return snapshots.observe_customer(base, listed, customer, at=at, read_at=read_at, tz=tz)

        return self.rt.store.deals.update_customer(self.integration.id, customer.id, create, current=None)

    def _pays(self, items: list[JsonObject], branch: int, read_at: str) -> int:
        pays = [p for p in parse_listed(Pay, items) if p.customer_id and self._in_range(p.document_date)]
        snaps = self.rt.store.deals.get_customers(self.integration.id, {p.customer_id for p in pays if p.customer_id})
        imported = 0
        for pay in pays:
            snap = snaps.get(pay.customer_id or 0)
            if snap is None or str(pay.id) in snap.pays:
                continue  # no deal customer for it (outside the range), or recorded already
            updated, written = self._add_pay(snap, pay, read_at)
            if written:
                self.rt.store.deals.set_pay_owner(self.integration.id, pay.id, snap.customer_id)
                refresh_deals(self.ctx, updated, updated.pays[str(pay.id)].created_at, branch_hint=branch)
                snaps[snap.customer_id] = updated
                imported += 1
        return imported

    def _add_pay(self, snap: CustomerSnapshot, pay: Pay, read_at: str) -> tuple[CustomerSnapshot, bool]:
        tz = self.integration.timezone
        day = pay.document_date
        at = to_iso(local_to_utc(datetime.combine(day, day_start()), tz)) if day else read_at
        listed = WebhookEvent(event="create", entity="Pay", entity_id=pay.id)

        def add(current: CustomerSnapshot | None) -> CustomerSnapshot:
            base = current or snap
            if str(pay.id) in base.pays:
                return base
            return snapshots.observe_pay(base, listed, pay, at=at, read_at=read_at)

        return self.rt.store.deals.update_customer(self.integration.id, snap.customer_id, add, current=snap)

    def _log(self, items: list[JsonObject], branch: int) -> int:
        """Fold the page's customer changes into the snapshots that exist (→ customers whose deals moved)."""
        tz = self.integration.timezone
        events: dict[int, list[tuple[WebhookEvent, str]]] = {}
        for item in as_webhooks(items, branch):
            try:
                event = WebhookEvent.model_validate(item)
                at = snapshots.event_time(event, None, tz)
            except ValueError:
                continue
            if event.entity == "Customer" and self._in_range(event.datetime.date() if event.datetime else None):
                events.setdefault(event.entity_id, []).append((event, at))
        known = self.rt.store.deals.get_customers(self.integration.id, events)
        moved = 0
        for customer_id, snap in known.items():
            unseen = [(e, at) for e, at in events[customer_id] if snapshots.event_key(e) not in snap.seen]
            moved += bool(unseen) and self._fold_log(snap, unseen, branch)
        return moved

    def _fold_log(self, snap: CustomerSnapshot, unseen: list[tuple[WebhookEvent, str]], branch: int) -> bool:
        tz = self.integration.timezone

        def fold(current: CustomerSnapshot | None) -> CustomerSnapshot:
            folded = current or snap
            for event, at in unseen:
                folded = snapshots.observe_customer(folded, event, None, at=at, read_at=at, tz=tz)
            return folded

        updated, written = self.rt.store.deals.update_customer(
            self.integration.id, snap.customer_id, fold, current=snap
        )
        if written:
            refresh_deals(self.ctx, updated, max(at for _, at in unseen), branch_hint=branch)
        return written

    def _in_range(self, day: date | None) -> bool:
        span = self.state.range
        if day is None:
            return span.date_from is None and span.date_to is None
        return (span.date_from is None or day >= span.date_from) and (span.date_to is None or day <= span.date_to)


# --- the fan-out's backfill job ---------------------------------------------------------------------------
def backfill_job(rt: Runtime, integration: Integration, remaining_ms: RemainingMs) -> Next:
    """The `backfill` job's run for one school (`connector.fanout`): a chunk, chained to the next until done."""
    state = run_chunk(rt, integration, remaining_ms=remaining_ms)
    detail = state.progress()
    if state.state == "running":
        return Next(rt.now() + BACKFILL_LEASE, detail, chain=True)
    return Next(None, detail)
