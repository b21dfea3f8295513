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
