"""Deal state in DynamoDB: customer snapshots, payment pointers, deals with their upload state, UIS sync
state (funnels, user fields, contacts) and the reconciler's watermark. Keys: docs/internals.md.

Read-modify-write items carry `version`; writes are conditional on it, so two workers on one customer
never lose each other's facts (`update_customer` re-reads and retries on ConcurrentUpdate).
A deal is pending while it carries `gsi1pk = PENDING#<integration_id>`: the uploader lists pending deals
through the GSI and clears the mark with a conditional write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from connector.models.deals import FUNNELS, USER_FIELDS, CustomerSnapshot, DealRecord, DealRef
from connector.models.sync import FunnelState, LogMark, ResyncMark, UisSyncState, UserFieldState
from connector.store.base import KEYS, DynamoTable, Item, int_pk, load, model_item, on_conflict
from connector.store.unit import UnitTable

UPDATE_ATTEMPTS = 6
_UNREAD = object()


def _cust_sk(customer_id: int) -> str:
    return f"CUST#{customer_id}"


def _pay_sk(pay_id: int) -> str:
    return f"PAY#{pay_id}"


def _deal_sk(funnel: str, ext_id: str) -> str:
    return f"DEAL#{funnel}#{ext_id}"


def pending_pk(integration_id: str) -> str:
    return f"PENDING#{integration_id}"


class DealStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    # --- customer snapshots ------------------------------------------------------------------------
    def get_customer(self, integration_id: str, customer_id: int) -> CustomerSnapshot | None:
        return load(CustomerSnapshot, self.t.get(int_pk(integration_id), _cust_sk(customer_id)))

    def get_customers(self, integration_id: str, customer_ids: Iterable[int]) -> dict[int, CustomerSnapshot]:
        pk = int_pk(integration_id)
        items = self.t.batch_get([(pk, _cust_sk(c)) for c in customer_ids])
        snaps = [CustomerSnapshot.model_validate(i) for i in items]
        return {s.customer_id: s for s in snaps}

    def save_customer(self, integration_id: str, snapshot: CustomerSnapshot) -> CustomerSnapshot:
        """Write the snapshot if nobody else did since it was read (→ the stored copy, version bumped)."""
        saved = snapshot.model_copy(update={"version": snapshot.version + 1})
        item = {"pk": int_pk(integration_id), "sk": _cust_sk(snapshot.customer_id), **model_item(saved)}
        self.t.put(item, expected_version=snapshot.version)
        return saved

    def update_customer(
        self,
        integration_id: str,
        customer_id: int,
        change: Callable[[CustomerSnapshot | None], CustomerSnapshot],
        *,
        current: CustomerSnapshot | object | None = _UNREAD,
    ) -> tuple[CustomerSnapshot, bool]:
        """Read, change, write conditionally; on a lost race read again and re-apply (a few times).

        `current`: the snapshot the caller has just read (saves the first read). → (the stored snapshot,
        whether it was written). An unchanged snapshot is not written.
        """

        def step(attempt: int) -> tuple[CustomerSnapshot, bool]:
            read = self.get_customer(integration_id, customer_id) if attempt or current is _UNREAD else current
            assert read is None or isinstance(read, CustomerSnapshot)
            updated = change(read)
            if read is not None and _same(read, updated):
                return read, False
            return self.save_customer(integration_id, updated.model_copy(update={"version": _v(read)})), True

        return on_conflict(step, attempts=UPDATE_ATTEMPTS, what=f"customer {customer_id}")

    def prefetch_event(
        self, integration_id: str, *, customer_ids: Iterable[int], pay_ids: Iterable[int], once_id: str | None
    ) -> Item | None:
        """A unit of work's first read (`Store.unit_of_work`): the snapshots, their UIS links and the payment
        pointers one event needs, and its idempotency record, in one request (→ the record, if any)."""
        assert isinstance(self.t, UnitTable), "prefetch_event() is for a unit of work"
        pk = int_pk(integration_id)
        keys = [(pk, sk) for c in customer_ids for sk in (_cust_sk(c), f"CUSTCOMM#{c}")]
        keys += [(pk, _pay_sk(p)) for p in pay_ids]
        return self.t.prefetch(keys, once_id=once_id)

    # --- payment → customer pointers --------------------------------------------------------------
    def pay_owner(self, integration_id: str, pay_id: int) -> int | None:
        item = self.t.get(int_pk(integration_id), _pay_sk(pay_id)) or {}
        owner = item.get("customer_id")
        return owner if isinstance(owner, int) else None

    def pay_owners(self, integration_id: str, pay_ids: Iterable[int]) -> dict[int, int]:
        pk = int_pk(integration_id)
        items = self.t.batch_get([(pk, _pay_sk(p)) for p in pay_ids])
        return {
            pay: owner
            for i in items
            if isinstance(pay := i.get("pay_id"), int) and isinstance(owner := i.get("customer_id"), int)
        }

    def set_pay_owner(self, integration_id: str, pay_id: int, customer_id: int) -> None:
        # last writer wins on purpose: the owner comes from a fresh AlfaCRM read either way
        self.t.put({"pk": int_pk(integration_id), "sk": _pay_sk(pay_id), "pay_id": pay_id, "customer_id": customer_id})

    # --- deals --------------------------------------------------------------------------------------
    def get_deal(self, integration_id: str, funnel: str, ext_id: str) -> DealRecord | None:
        return load(DealRecord, self.t.get(int_pk(integration_id), _deal_sk(funnel, ext_id)))

    def get_deals(self, integration_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], DealRecord]:
        """Consistent batch read (the uploader must see the latest `uploaded` rows, not a stale GSI copy)."""
        pk = int_pk(integration_id)
        items = self.t.batch_get([(pk, _deal_sk(f, e)) for f, e in keys])
        deals = [DealRecord.model_validate(i) for i in items]
        return {d.key: d for d in deals}

    def save_deal(self, integration_id: str, deal: DealRecord) -> DealRecord:
        """Conditional on `deal.version` (0 = must not exist); marks/unmarks pending from `upload_state`."""
        saved = deal.model_copy(update={"version": deal.version + 1})
        item: Item = {
            "pk": int_pk(integration_id),
            "sk": _deal_sk(deal.funnel, deal.ext_id),
            **model_item(saved),
            "updated_at": int(time.time()),
        }
        if saved.upload_state == "pending":
            item["gsi1pk"] = pending_pk(integration_id)
            item["gsi1sk"] = f"{deal.funnel}#{deal.ext_id}"
        self.t.put(item, expected_version=deal.version)
        return saved

    def delete_deal(self, integration_id: str, funnel: str, ext_id: str, *, expected_version: int) -> None:
        """Delete the deal only if it is still the version the caller read (→ ConcurrentUpdate otherwise).

        Gone already counts as done: whoever deleted it decided the same.
        """
        self.t.delete_if_version(int_pk(integration_id), _deal_sk(funnel, ext_id), expected_version=expected_version)

    def pending_count(self, integration_id: str) -> int:
        return self.t.count_gsi(pending_pk(integration_id))

    def pending_keys(self, integration_id: str, *, limit: int | None = None) -> list[tuple[str, str]]:
        out = []
        for item in self.t.query_gsi(pending_pk(integration_id), limit=limit):
            funnel, _, ext_id = str(item["gsi1sk"]).partition("#")
            out.append((funnel, ext_id))
        return out

    def mark_pending(self, integration_id: str, ref: DealRef) -> bool:
        """Queue the deal for the next upload (admin replay of a parked deal). False if there is no such deal.

        The version is bumped so an upload in flight cannot clear this mark.
        """

        def step(_: int) -> bool:
            deal = self.get_deal(integration_id, ref.funnel, ref.ext_id)
            if deal is None:
                return False
            # a fresh start: the contact gets its attempts again, a postponed deal goes at the next flush
            fresh = {"upload_state": "pending", "contact_failures": 0, "retry_at": None}
            self.save_deal(integration_id, deal.model_copy(update=fresh))
            return True

        return on_conflict(step, attempts=UPDATE_ATTEMPTS, what=f"deal {ref.funnel}#{ref.ext_id}")

    def list_deals(self, integration_id: str, funnel: str | None = None) -> list[DealRecord]:
        prefix = f"DEAL#{funnel}#" if funnel else "DEAL#"
        return [DealRecord.model_validate(i) for i in self.t.query(int_pk(integration_id), prefix)]

    # --- UIS sync state -------------------------------------------------------------------------------
    def uis_sync(self, integration_id: str) -> UisSyncState:
        """Both funnels' and every user field's `UIS#…` item, in one read."""
        names = [f"funnel#{f}" for f in FUNNELS] + [f"field#{n}" for n in USER_FIELDS]
        items = self._sync_items(integration_id, names)
        state = UisSyncState()
        for name, item in items.items():
            kind, _, key = name.partition("#")
            if kind == "funnel":
                state.funnels[key] = FunnelState.model_validate(item)
            elif kind == "field":
                state.fields[key] = UserFieldState.model_validate(item)
        return state

    def put_funnel(self, integration_id: str, funnel: str, state: FunnelState) -> None:
        self._put_sync(integration_id, f"funnel#{funnel}", model_item(state))

    def put_user_field(self, integration_id: str, name: str, state: UserFieldState) -> None:
        self._put_sync(integration_id, f"field#{name}", model_item(state))

    def resync_mark(self, integration_id: str) -> ResyncMark | None:
        """The last forced sync that did not cure a sync problem (`UIS#resync`), if any."""
        return load(ResyncMark, self._sync_items(integration_id, ["resync"]).get("resync"))

    def put_resync_mark(self, integration_id: str, mark: ResyncMark) -> None:
        self._put_sync(integration_id, "resync", model_item(mark))

    def contact_hashes(self, integration_id: str, ext_ids: Iterable[str]) -> dict[str, str]:
        items = self._sync_items(integration_id, [f"contact#{e}" for e in ext_ids])
        return {name.removeprefix("contact#"): str(i.get("hash")) for name, i in items.items()}

    def put_contact_hashes(self, integration_id: str, hashes: dict[str, str]) -> None:
        pk = int_pk(integration_id)
        now = int(time.time())
        self.t.put_many([{"pk": pk, "sk": f"UIS#contact#{e}", "hash": h, "synced_at": now} for e, h in hashes.items()])

    def uis_employees(self, integration_id: str, ext_ids: Iterable[str]) -> set[str]:
        """Which of these deal employees UIS has (`UIS#employee#<ext_id>`, written once created)."""
        items = self._sync_items(integration_id, [f"employee#{e}" for e in ext_ids])
        return {name.removeprefix("employee#") for name in items}

    def put_uis_employees(self, integration_id: str, ext_ids: Iterable[str]) -> None:
        pk = int_pk(integration_id)
        now = int(time.time())
        self.t.put_many([{"pk": pk, "sk": f"UIS#employee#{e}", "synced_at": now} for e in ext_ids])

    def _sync_items(self, integration_id: str, names: Iterable[str]) -> dict[str, Item]:
        pk = int_pk(integration_id)
        items = self.t.batch_get([(pk, f"UIS#{n}") for n in names])
        return {str(i["sk"]).removeprefix("UIS#"): i for i in items}

    def _put_sync(self, integration_id: str, name: str, value: Item) -> None:
        self.t.put({**value, "pk": int_pk(integration_id), "sk": f"UIS#{name}", "synced_at": int(time.time())})

    # --- the reconciler's log marks ------------------------------------------------------------------
    def log_marks(self, integration_id: str) -> dict[str, LogMark]:
        """`WM#alfacrm_log`: how far `log/index` was read, per entity (empty before the first run)."""
        item = self.t.get(int_pk(integration_id), "WM#alfacrm_log") or {}
        return {k: LogMark.model_validate(v) for k, v in item.items() if k not in KEYS and isinstance(v, dict)}

    def set_log_marks(self, integration_id: str, marks: dict[str, LogMark]) -> None:
        body = {entity: model_item(mark) for entity, mark in marks.items()}
        self.t.put({**body, "pk": int_pk(integration_id), "sk": "WM#alfacrm_log", "updated_at": int(time.time())})


def _v(snapshot: CustomerSnapshot | None) -> int:
    return snapshot.version if snapshot is not None else 0


def _same(a: CustomerSnapshot, b: CustomerSnapshot) -> bool:
    return a.model_dump(exclude={"version"}) == b.model_dump(exclude={"version"})
