"""The reconciler: lost webhooks come back from AlfaCRM's change log, renamed statuses reach UIS."""

from __future__ import annotations

from connector.deals.reconcile import reconcile_integration
from connector.deals.views import deals_view
from connector.deals.worker import handle_deal_event
from connector.models.messages import DealEventMessage

from tests.deals.builders import INTEGRATION_ID, utc


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
