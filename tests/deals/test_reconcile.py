"""The reconciler: lost webhooks come back from AlfaCRM's change log, renamed statuses reach UIS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from connector.deals import reread
from connector.deals.reconcile import ReconcileReport, reconcile_integration
from connector.deals.uploader import flush_integration
from connector.deals.views import deals_view
from connector.deals.worker import handle_deal_event
from connector.models.messages import DealEventMessage
from connector.runtime import Runtime
from connector.settings import Integration
from connector.store import Store
from connector.timeutil import to_iso

from tests.api.builders import stored_integration
from tests.deals.builders import INTEGRATION_ID, utc
from tests.deals.conftest import DEAL_SETTINGS, Captured
from tools.sandboxes.alfacrm import AlfaCrmSandbox, ManualClock
from tools.sandboxes.uis import UisSandbox

CONNECTED_ID = "0c0ffee0"


def test_a_lost_webhook_is_caught_up_from_the_change_log(alfacrm, captured, rt, store, integration, clock, uis, flush):
    fed: list[dict] = []

    def send(messages):
        # the deal events queue, drained straight into the worker
        for m in messages:
            fed.append(m)
            handle_deal_event(rt, m)
        return len(messages)

    def reconcile():
        return reconcile_integration(rt, integration, send=send)

    # Given an hour-old history the connector never needs to replay
    old = alfacrm.ui_create_customer({"name": "Старый лид", "is_study": 0, "lead_status_id": 1})
    captured.take()
    first = reconcile()
    assert first.fed == 0 and fed == []
    # And a lead whose status change webhook is lost
    clock.advance(600)
    lead = alfacrm.ui_create_customer({"name": "Вера", "is_study": 0, "lead_status_id": 1})
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 3})
    create, _lost = captured.take()
    handle_deal_event(rt, DealEventMessage(integration_id=INTEGRATION_ID, event=create))
    # When the reconciler runs
    report = reconcile()
    # Then only the missed change was fed back, and the deal took its step at AlfaCRM's time
    assert report.fed == 1 and fed[0].event["fields_new"] == {"lead_status_id": "3"}
    [deal] = [d for d in deals_view(store, INTEGRATION_ID) if d["ext_id"] == f"customer-{lead['id']}"]
    assert [(h["stage"], h["at"]) for h in deal["history"]] == [
        ("1", utc("2025-03-03 09:10:00")),
        ("3", utc("2025-03-03 09:20:00")),
    ]
    # And a third run finds nothing new
    assert reconcile().fed == 0
    assert old["id"] != lead["id"]


def test_a_status_renamed_in_alfacrm_is_renamed_in_uis(alfacrm, captured, deliver, flush, rt, integration, uis):
    alfacrm.ui_create_customer({"name": "Вера", "is_study": 0, "lead_status_id": 1})
    for body in captured.take():
        deliver(body)
    flush()
    assert uis.funnels["first_sale"]["stages"]["2"]["name"] == "Связались"
    alfacrm.lookups["lead-status"][2]["name"] = "Дозвонились"
    reconcile_integration(rt, integration, send=lambda m: 0)
    assert uis.funnels["first_sale"]["stages"]["2"]["name"] == "Дозвонились"
    assert len(uis.funnels) == 2


@pytest.fixture
def connected(store: Store, now: Callable[[], datetime]) -> Integration:
    """An integration created now (the sandbox's clock): what changes after it is the reconciler's to catch."""
    return stored_integration(
        store, integration_id=CONNECTED_ID, settings=DEAL_SETTINGS, created_at=to_iso(now() - timedelta(minutes=1))
    )


def test_changes_whose_webhooks_and_log_entries_were_lost_still_reach_uis_at_their_final_stage(
    alfacrm: AlfaCrmSandbox,
    captured: Captured,
    rt: Runtime,
    connected: Integration,
    clock: ManualClock,
    uis: UisSandbox,
) -> None:
    def arrived() -> None:
        for body in captured.take():
            handle_deal_event(rt, DealEventMessage(integration_id=CONNECTED_ID, event=body))

    def lost(log_entries: int, change: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A change whose webhook is lost on the way, and its first `log_entries` change-log entries too."""
        alfacrm.lose_next_log_entries(log_entries)
        record = change()
        captured.take()
        return record

    def reconcile() -> ReconcileReport:
        # the deal events queue, drained straight into the worker
        return reconcile_integration(rt, connected, send=lambda ms: [handle_deal_event(rt, m) for m in ms] and len(ms))

    # Given a connected school whose reconciler has run once (the log's end marked)
    assert reconcile().fed == 0
    clock.advance(600)
    # And changes whose webhooks were lost on the way, most of their change-log entries missing too
    seen = alfacrm.ui_create_customer({"name": "Вера", "is_study": 0, "lead_status_id": 1})
    arrived()
    lost(1, lambda: alfacrm.ui_update_customer(seen["id"], {"lead_status_id": 3}))
    clock.advance(60)
    unseen = lost(1, lambda: alfacrm.ui_create_customer({"name": "Олег", "is_study": 0, "lead_status_id": 2}))
    lost(1, lambda: alfacrm.ui_update_customer(unseen["id"], {"lead_status_id": 5}))  # refused: failed
    client = alfacrm.ui_create_customer({"name": "Анна", "is_study": 0, "lead_status_id": 1})
    arrived()
    lost(1, lambda: alfacrm.ui_update_customer(client["id"], {"is_study": 1}))  # converted: success
    first = lost(1, lambda: alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4500"}))
    clock.advance(60)
    won = alfacrm.ui_create_customer({"name": "Илья", "is_study": 0, "lead_status_id": 2})
    arrived()
    lost(0, lambda: alfacrm.ui_update_customer(won["id"], {"lead_status_id": 4}))  # the log kept this one
    upsell = lost(1, lambda: alfacrm.ui_create_pay({"customer_id": client["id"], "income": "3000"}))
    clock.advance(600)
    # When the reconciler runs and the uploader flushes
    report = reconcile()
    found = rt.store.integrations.get(CONNECTED_ID, fresh=True)
    assert found is not None
    flush_integration(rt, found)
    # Then every deal is in UIS at the stage AlfaCRM has it in, with its revenue
    stages = {ext_id: deal["path"][-1]["stage_ext_id"] for ext_id, deal in uis.deals.items()}
    assert stages == {
        f"customer-{seen['id']}": "3",
        f"customer-{unseen['id']}": "failed",
        f"customer-{client['id']}": "success",
        f"customer-{won['id']}": "success",
        f"pay-{upsell['id']}": "paid",
    }
    assert uis.deals[f"customer-{client['id']}"]["revenue"] == 4500
    assert uis.deals[f"pay-{upsell['id']}"]["revenue"] == 3000
    assert first["id"] != upsell["id"]
    # And the change log fed one of them, the lists the rest (the payment filter honoured, as one client says)
    assert report.per_entity["Customer"] == 1 and report.per_entity["lists"] == 5
    assert report.list_filters["pay"] == "honoured"
    # And the next run finds nothing left to feed
    clock.advance(3600)
    assert reconcile().fed == 0


def test_a_long_list_is_read_over_several_runs_from_its_cursor_and_each_pass_starts_at_the_last(
    alfacrm: AlfaCrmSandbox,
    captured: Captured,
    rt: Runtime,
    connected: Integration,
    clock: ManualClock,
    uis: UisSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reread, "MAX_PAGES", 2)
    fed: list[DealEventMessage] = []

    def reconcile() -> ReconcileReport:
        def send(messages: list[DealEventMessage]) -> int:
            fed.extend(messages)
            for m in messages:
                handle_deal_event(rt, m)
            return len(messages)

        return reconcile_integration(rt, connected, send=send)

    # Given a school with a lead from before the connector (the backfill's, not the reconciler's)
    (before,) = alfacrm.add_customers(1)
    alfacrm.customers[before]["created_at"] = alfacrm.customers[before]["updated_at"] = clock() - timedelta(days=30)
    # And 148 leads that arrived with the connector (an import: no webhook, no log entry)
    clock.advance(60)
    leads = alfacrm.add_customers(148)
    first = reconcile()
    # Then the first run reads two of the three pages (the customer list ignores `updated_at_from`: the old
    # lead is listed) and feeds the new leads among them
    assert first.list_filters["customer"] == "ignored"
    assert first.per_entity["lists"] == 99
    mark = rt.store.deals.reread_mark(CONNECTED_ID)
    assert mark.customer.started is not None and mark.customer.page == 1
    # And the next run resumes at its second page (read again) and reads the branch to its end
    assert reconcile().per_entity["lists"] == 49
    assert rt.store.deals.reread_mark(CONNECTED_ID).customer.filter == "ignored"
    # And the run after reads the account's other branch and ends the pass
    assert reconcile().per_entity["lists"] == 0
    done = rt.store.deals.reread_mark(CONNECTED_ID).customer
    assert done.started is None and done.since == mark.customer.started
    assert {int(str(m.event["entity_id"])) for m in fed} == set(leads)
    # And a change whose webhook is lost is caught by the next pass
    clock.advance(600)
    alfacrm.lose_next_log_entries(1)
    alfacrm.ui_update_customer(leads[-1], {"lead_status_id": 4})
    captured.take()
    fed.clear()
    runs = 0
    while not fed and runs < 4:  # the rest of a pass, then the next one (2 pages a run)
        reconcile()
        runs += 1
    assert [(m.event["entity_id"], m.event["fields_new"]) for m in fed] == [
        (leads[-1], {"is_study": "0", "lead_status_id": 4})  # no record carries an archive flag
    ]
    assert rt.store.deals.get_customers(CONNECTED_ID, [leads[-1]])[leads[-1]].current["lead_status_id"] == 4


def test_a_payment_deleted_while_its_webhook_was_lost_is_cancelled_in_uis_from_the_change_log(
    alfacrm, captured, deliver, flush, rt, integration, clock, uis
):
    """log/index entries carry `event` as an integer (3 = delete) and fields as maps or lists of one-key maps
    (aioalfacrm, Airumian/alfacrm, YegorPanin/alfacrm-client, KO_alfacrm_data): they must reach the worker."""
    alfacrm.configure({"log_fields_style": "map"})
    client = alfacrm.ui_create_customer({"name": "Инна", "is_study": 1})
    alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4000", "document_date": "2025-03-01"})
    extra = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "900", "document_date": "2025-03-02"})
    for body in captured.take():
        deliver(body)
    flush()

    def send(messages):
        for m in messages:
            handle_deal_event(rt, m)
        return len(messages)

    reconcile_integration(rt, integration, send=send)
    clock.advance(600)
    alfacrm.drop_next_deliveries(1)
    alfacrm.ui_delete_pay(extra["id"])

    report = reconcile_integration(rt, integration, send=send)
    flush()

    assert report.fed == 1
    assert [p["stage_ext_id"] for p in uis.deals[f"pay-{extra['id']}"]["path"]][-1] == "cancelled"


def test_a_lead_made_after_a_pass_at_its_watermarks_second_is_caught_by_the_next_pass(
    alfacrm, captured, rt, store, integration, uis, flush
):
    """`make chaos` (seed 9): the chat poller's pass, run after the reconciler's, found a lost chat and the
    text side made its lead; that lead's only webhook, its create, was lost. The next pass must re-queue it,
    even when the lead was written in the same second as the entry the watermark stands on."""
    fed: list[DealEventMessage] = []

    def send(messages):
        for m in messages:
            fed.append(m)
            handle_deal_event(rt, m)
        return len(messages)

    alfacrm.ui_create_customer({"name": "Старый лид", "is_study": 0, "lead_status_id": 1})
    captured.take()
    reconcile_integration(rt, integration, send=send)  # the first run marks where the log ends
    known = alfacrm.ui_create_customer({"name": "Вера", "is_study": 0, "lead_status_id": 1})
    for body in captured.take():
        handle_deal_event(rt, DealEventMessage(integration_id=INTEGRATION_ID, event=body))
    assert reconcile_integration(rt, integration, send=send).fed == 0  # the watermark: Вера's create
    # When the connector's own lead is made in that same second (the hand-driven clock stands still) and its
    # create webhook is lost
    lead = rt.clients.alfacrm(integration).create_customer(
        {"name": "Потерянный чат", "is_study": 0, "lead_status_id": 1, "phone": ["+79500000001"]}, branch_id=1
    )
    assert [b["event"] for b in captured.take()] == ["create"]  # lost
    # Then the next pass re-queues exactly that create, and its deal reaches UIS
    report = reconcile_integration(rt, integration, send=send)
    assert report.fed == 1 and fed[-1].event["entity_id"] == lead.id
    flush()
    assert {f"customer-{known['id']}", f"customer-{lead.id}"} <= {d["ext_id"] for d in uis.state()["deals"]}
