"""The reconciler's second net: AlfaCRM's customer and payment lists, changed since a watermark, compared with
the snapshots, catch what both the webhooks and the change log missed (issue 9.9).

Each entity has a pass (`ListPass` in `WM#reread`): it reads `index` with `updated_at_from` = the day of the
watermark (`since`: when the last complete pass began), every branch of the account, page by page, at most
`MAX_PAGES` pages per entity per run; a run that stops mid-list resumes there at the next run (the last page
read once more, in case a record went and the rest moved up). When the pass has read every branch to its end,
its own start becomes the new watermark. The first pass's watermark is the integration's creation: what
changed before it is the backfill's.

The filter (docs/external-apis.md, "Changed since a watermark"): `updated_at_from` on `pay/index` is listed by
one public client (YegorPanin/alfacrm-client `PayFilter`, days as `dd.mm.yyyy`), unverified against a server;
for `customer/index` no public client lists it, it is assumed from the same search models. AlfaCRM ignores a
filter it does not know, so nothing here depends on it being honoured: ignored, a pass is a full re-read of the
list at `MAX_PAGES` pages a run (a list of N pages every N / `MAX_PAGES` hours), honoured, a pass is the few
pages that changed. Which of the two an account does is seen in the records' own `updated_at` and kept in the
pass (`filter`).

A record that disagrees with its snapshot becomes the webhook it should have been (source `reconciler`) on
the deal queue, so the deal worker stays the only writer (it re-reads the entity): a customer whose stage
fields (`is_study`, `lead_status_id`, the archive flag) differ, a payment whose amount or customer differ, and
— created after the integration was — a customer or payment no snapshot knows (older ones are the
backfill's). The event carries the record's values at its `updated_at` (else the time of the read), so the
deal takes the step at AlfaCRM's time. Deletions cannot show in a list (a deleted record is simply not
there): only a delete webhook or the change log ends a deal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as day_start

from connector.alfacrm.client import ALL_CUSTOMERS, AlfaCrmClient
from connector.alfacrm.models import Customer, Pay, parse_listed, to_decimal
from connector.models.deals import CustomerSnapshot
from connector.models.raw import JsonObject
from connector.models.sync import ListPass
from connector.runtime import Runtime
from connector.settings import Integration
from connector.timeutil import LOCAL_FORMAT, from_iso, utc_to_local

MAX_PAGES = 20  # × 50 records per entity per run, every branch together (≥ 2: a resumed page is read again)
PAGE_SIZE = 50
FIRST_PASS = timedelta(days=1)  # watermark of an integration with no creation time: the last day
ENTITIES: dict[str, dict[str, object]] = {"customer": dict(ALL_CUSTOMERS), "pay": {}}


@dataclass
class RereadReport:
    events: list[JsonObject] = field(default_factory=list)
    pages: int = 0
    filters: dict[str, str] = field(default_factory=dict)  # entity → honoured | ignored (as far as seen)
    passes_done: int = 0


def reread(
    rt: Runtime, integration: Integration, alfacrm: AlfaCrmClient, *, skip: set[tuple[str, int]]
) -> RereadReport:
    """Webhook-shaped events for the changed records that disagree with their snapshots.

    `skip`: (entity, id) already fed this run from the change log."""
    mark = rt.store.deals.reread_mark(integration.id)
    now = utc_to_local(rt.now(), integration.timezone)
    report = RereadReport()
    branches: list[int] | None = None
    for entity, filters in ENTITIES.items():
        state: ListPass = getattr(mark, entity)
        if state.started is None:
            branches = branches or _branches(integration, alfacrm)
            state = _begin(state, integration, branches, now)
        items, pages, finished = _read(alfacrm, entity, filters, state)
        report.pages += pages
        # one record older than the filter's day proves it ignored; a page of recent records proves nothing
        seen = _filter_seen(entity, items, state)
        state.filter = "ignored" if "ignored" in (seen, state.filter) else seen or state.filter
        found = _customers(rt, integration, items, now) if entity == "customer" else _pays(rt, integration, items, now)
        report.events += [e for e in found if (str(e["entity"]), int(str(e["entity_id"]))) not in skip]
        if finished:
            state = ListPass(since=state.started, filter=state.filter)
            report.passes_done += 1
        setattr(mark, entity, state)
        if state.filter:
            report.filters[entity] = state.filter
    rt.store.deals.set_reread_mark(integration.id, mark)
    return report


# --- the pass ------------------------------------------------------------------------------------------------
def _branches(integration: Integration, alfacrm: AlfaCrmClient) -> list[int]:
    own = integration.alfacrm.branch_id
    return list(dict.fromkeys([own, *(b.id for b in alfacrm.branches() if b.is_active)]))


def _begin(state: ListPass, integration: Integration, branches: list[int], now: datetime) -> ListPass:
    since = state.since
    if since is None:
        created = _created(integration)
        since = (created or now - FIRST_PASS).strftime(LOCAL_FORMAT)
    return ListPass(since=since, started=now.strftime(LOCAL_FORMAT), branches=branches, filter=state.filter)


def _read(
    alfacrm: AlfaCrmClient, entity: str, filters: dict[str, object], state: ListPass
) -> tuple[list[JsonObject], int, bool]:
    """Pages of the pass from its cursor (moved on in `state`) → (records, pages read, pass finished)."""
    wanted = {**filters, **_since_filter(state.since)}
    items: list[JsonObject] = []
    pages = 0
    while state.branch < len(state.branches):
        reply = alfacrm.index(entity, wanted, branch_id=state.branches[state.branch], page=state.page)
        pages += 1
        items += reply.items
        if len(reply.items) < PAGE_SIZE or (state.page + 1) * PAGE_SIZE >= reply.total:
            state.branch, state.page = state.branch + 1, 0
        elif pages >= MAX_PAGES:
            break  # this page is read again next run: a record gone meanwhile moves the rest up
        else:
            state.page += 1
        if pages >= MAX_PAGES:
            break
    return items, pages, state.branch >= len(state.branches)


def _since_filter(since: str | None) -> dict[str, object]:
    if since is None:
        return {}
    return {"updated_at_from": datetime.strptime(since, LOCAL_FORMAT).strftime("%d.%m.%Y")}


def _filter_seen(entity: str, items: list[JsonObject], state: ListPass) -> str | None:
    """What the records' `updated_at` says of the filter: one older than its day means AlfaCRM ignored it."""
    if state.since is None or not items:
        return None
    day = datetime.strptime(state.since, LOCAL_FORMAT).date()
    records = parse_listed(Customer, items) if entity == "customer" else parse_listed(Pay, items)
    stamps = [r.updated_at for r in records if r.updated_at is not None]
    if not stamps:
        return None
    return "ignored" if any(s.date() < day for s in stamps) else "honoured"


# --- what disagrees ------------------------------------------------------------------------------------------
def _event(
    integration: Integration, entity: str, entity_id: int, kind: str, fields: JsonObject, at: datetime
) -> JsonObject:
    return {
        "branch_id": integration.alfacrm.branch_id,
        "event": kind,
        "entity": entity,
        "entity_id": entity_id,
        "fields_old": [],
        "fields_new": fields,
        "fields_rel": [],
        "user_id": None,
        "datetime": at.strftime(LOCAL_FORMAT),
    }


def _created(integration: Integration) -> datetime | None:
    """When the integration was created, local: records created later are the reconciler's, older the backfill's."""
    return utc_to_local(from_iso(integration.created_at), integration.timezone) if integration.created_at else None


def _customers(rt: Runtime, integration: Integration, items: list[JsonObject], now: datetime) -> list[JsonObject]:
    records = {c.id: c for c in parse_listed(Customer, items)}
    snaps = rt.store.deals.get_customers(integration.id, records)
    since = _created(integration)
    events = []
    for customer in records.values():
        snap = snaps.get(customer.id)
        fields: JsonObject = {"is_study": "1" if customer.is_study else "0", "lead_status_id": customer.lead_status_id}
        if customer.removed is not None:
            fields["removed"] = "1" if customer.removed else "0"
        if snap is None:
            created = customer.created_at
            if since is not None and created is not None and created >= since:
                events.append(_event(integration, "Customer", customer.id, "create", fields, created))
        elif _customer_differs(customer, snap):
            events.append(_event(integration, "Customer", customer.id, "update", fields, customer.updated_at or now))
    return events


def _customer_differs(customer: Customer, snap: CustomerSnapshot) -> bool:
    current = snap.current
    if bool(customer.is_study) != bool(current.get("is_study")) or customer.lead_status_id != current.get(
        "lead_status_id"
    ):
        return True
    return customer.removed is not None and "removed" in snap.current_keys and customer.removed != current["removed"]


def _pays(rt: Runtime, integration: Integration, items: list[JsonObject], now: datetime) -> list[JsonObject]:
    pays = {p.id: p for p in parse_listed(Pay, items) if p.customer_id}
    owners = rt.store.deals.pay_owners(integration.id, pays)
    snaps = rt.store.deals.get_customers(integration.id, set(owners.values()))
    since = _created(integration)
    events = []
    for pay in pays.values():
        owner = owners.get(pay.id)
        info = snaps[owner].pays.get(str(pay.id)) if owner in snaps else None
        fields: JsonObject = {"customer_id": str(pay.customer_id), "income": str(pay.income)}
        if info is None:
            # a payment's records carry days at most: its creation day, else its document date
            day = (pay.created_at.date() if pay.created_at else None) or pay.document_date
            if since is not None and day is not None and day >= since.date():
                events.append(_event(integration, "Pay", pay.id, "create", fields, max(_midnight(day), since)))
        elif owner != pay.customer_id or to_decimal(info.income) != pay.income:
            # `updated_at` is a day: its midnight could come before the payment's creation, so the read's time
            events.append(_event(integration, "Pay", pay.id, "update", fields, now))
    return events


def _midnight(day: date) -> datetime:
    return datetime.combine(day, day_start())
