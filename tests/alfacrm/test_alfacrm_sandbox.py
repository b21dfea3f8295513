"""The AlfaCRM sandbox behaves like AlfaCRM: webhook bodies, search defaults, paging, auth, control routes."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from connector.alfacrm.models import WebhookEvent
from connector.errors import AlfaCrmValidationError

from tests.alfacrm.conftest import HOST
from tools.sandboxes.alfacrm import (
    API_USER_ID,
    DEFAULT_API_KEY,
    DEFAULT_EMAIL,
    MANAGER_USER_ID,
    AlfaCrmSandbox,
    main,
)
from tools.sandboxes.common import ServedApp

HOOK = "https://connector.test/hooks/alfacrm/int-1/secret"


def _bodies(inbox) -> list[dict]:
    return [json.loads(item["body"]) for item in inbox.sent]


def _login(api: httpx.Client) -> dict[str, str]:
    token = api.post("/v2api/auth/login", json={"email": DEFAULT_EMAIL, "api_key": DEFAULT_API_KEY}).json()["token"]
    return {"X-ALFACRM-TOKEN": token}


# --- webhooks ------------------------------------------------------------------------------------------------


def test_given_a_customer_trigger_when_a_manager_creates_a_lead_then_alfacrm_posts_raw_json_as_a_form(
    sandbox, inbox, clock
):
    # Given a trigger on branch 1 for customers and payments
    sandbox.add_webhook(1, HOOK, ["Customer", "Pay"])

    # When a manager creates a lead in the UI
    lead = sandbox.ui_create_customer({"name": "Лид с сайта", "phone": ["+7(999)111-22-33"], "lead_status_id": 1})

    # Then one delivery: a form content type carrying a compact JSON body
    (sent,) = inbox.sent
    assert sent["method"] == "POST" and sent["url"] == HOOK
    assert sent["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert b'"fields_old":[]' in sent["body"] and b'"fields_rel":[]' in sent["body"]
    body = json.loads(sent["body"])
    assert body == {
        "branch_id": 1,
        "event": "create",
        "entity": "Customer",
        "entity_id": lead["id"],
        "fields_old": [],
        "fields_new": {"name": "Лид с сайта", "phone": ["+7(999)111-22-33"], "lead_status_id": "1"},
        "fields_rel": [],
        "user_id": MANAGER_USER_ID,
        "datetime": clock().strftime("%Y-%m-%d %H:%M:%S"),
    }
    assert sandbox.deliveries[0]["status"] == 200


def test_given_a_lead_when_its_status_changes_then_only_changed_fields_old_typed_new_as_strings(sandbox, inbox, clock):
    sandbox.add_webhook(1, HOOK)
    clock.advance(3600)

    sandbox.ui_update_customer(2, {"lead_status_id": "3", "name": "Петров Илья", "note": "Записан на субботу"})

    (body,) = _bodies(inbox)
    assert body["event"] == "update" and body["entity_id"] == 2
    assert body["fields_old"] == {"lead_status_id": 2, "note": ""}  # database values; name unchanged → absent
    assert body["fields_new"] == {"lead_status_id": "3", "note": "Записан на субботу"}
    assert body["datetime"] == "2025-03-03 11:00:00"


def test_given_a_payment_when_its_amount_is_edited_then_the_update_lacks_the_customer(sandbox, inbox):
    sandbox.add_webhook(1, HOOK, ["Pay"])

    sandbox.ui_update_pay(1, {"income": "5000", "note": "Абонемент 1"})

    (body,) = _bodies(inbox)
    assert body["entity"] == "Pay" and body["event"] == "update"
    assert body["fields_old"] == {"income": "4500.00"} and body["fields_new"] == {"income": "5000"}
    assert "customer_id" not in body["fields_new"]


def test_given_a_payment_when_created_and_deleted_then_create_carries_the_branch_and_delete_the_old_values(
    sandbox, inbox
):
    sandbox.add_webhook(2, HOOK, ["Pay"])

    pay = sandbox.ui_create_pay({"customer_id": 3, "income": "3200", "document_date": "2025-03-03"}, branch_id=2)
    sandbox.ui_delete_pay(pay["id"])

    created, deleted = _bodies(inbox)
    assert created["fields_new"] == {
        "customer_id": "3",
        "income": "3200",
        "document_date": "2025-03-03",
        "branch_id": 2,
    }
    assert deleted["event"] == "delete" and deleted["fields_new"] == []
    assert deleted["fields_old"]["income"] == "3200.00" and deleted["fields_old"]["customer_id"] == 3
    assert pay["id"] not in sandbox.pays


def test_given_a_change_made_through_the_api_when_delivered_then_user_id_is_the_api_user(sandbox, inbox, client):
    sandbox.add_webhook(1, HOOK, ["Customer"])

    lead = client.create_customer({"name": "Из чата", "phone": ["+79990000001"]}, branch_id=1)

    (body,) = _bodies(inbox)
    assert body["user_id"] == API_USER_ID and body["entity_id"] == lead.id


def test_given_archiving_a_lead_when_delivered_then_an_update_with_the_reject_reason(sandbox, inbox):
    sandbox.add_webhook(1, HOOK, ["Customer"])

    sandbox.ui_archive_customer(2, reason_id=2)

    (body,) = _bodies(inbox)
    assert body["event"] == "update"
    # no archive flag shows anywhere; the reason does (KO_alfacrm_data: refusals as lead_reject_id)
    assert body["fields_new"] == {"lead_reject_id": "2"}
    assert "removed" not in sandbox.state()["customers"][1]


def test_given_a_restored_lead_when_delivered_then_the_reason_is_cleared(sandbox, inbox):
    sandbox.add_webhook(1, HOOK, ["Customer"])
    sandbox.ui_archive_customer(2, reason_id=2)
    sandbox.ui_restore_customer(2)
    assert [b["fields_new"] for b in _bodies(inbox)] == [{"lead_reject_id": "2"}, {"lead_reject_id": ""}]


def test_given_an_account_showing_an_archive_flag_when_archiving_then_records_and_webhooks_carry_it(sandbox, inbox):
    sandbox.configure({"archive_flag_in_records": True})
    sandbox.add_webhook(1, HOOK, ["Customer"])
    sandbox.ui_archive_customer(2, reason_id=2)
    (body,) = _bodies(inbox)
    assert body["fields_new"] == {"removed": "1", "lead_reject_id": "2"}
    assert sandbox.state()["customers"][1]["removed"] == 1


def test_given_old_style_captures_when_branch_id_is_omitted_then_the_consumer_finds_it_in_fields_new(sandbox, inbox):
    sandbox.configure({"omit_webhook_branch_id": True})
    sandbox.add_webhook(2, HOOK, ["Pay"])

    sandbox.ui_create_pay({"customer_id": 3, "income": "100"}, branch_id=2)

    (body,) = _bodies(inbox)
    assert "branch_id" not in body
    assert WebhookEvent.model_validate(body).branch_for(default=1) == 2


def test_given_triggers_per_branch_when_a_change_happens_in_another_branch_then_nothing_is_sent(sandbox, inbox):
    sandbox.add_webhook(2, HOOK, ["Customer"])
    sandbox.ui_update_customer(1, {"note": "Только филиал 1"})
    assert inbox.sent == []


def test_given_the_receiver_is_down_when_delivering_then_the_failure_is_recorded_not_raised(sandbox, inbox):
    sandbox.add_webhook(1, HOOK, ["Customer"])
    inbox.error = httpx.ConnectError("connection refused")

    sandbox.ui_update_customer(1, {"note": "Смена"})

    (delivery,) = sandbox.state()["deliveries"]
    assert delivery["status"] is None and "ConnectError" in delivery["error"]
    assert sandbox.customers[1]["note"] == "Смена"  # the change itself happened


def test_given_lost_deliveries_when_reconciling_then_the_change_log_still_lists_them(sandbox, inbox, client):
    sandbox.add_webhook(1, HOOK, ["Customer"])
    sandbox.drop_next_deliveries(1)

    sandbox.ui_update_customer(2, {"lead_status_id": 4})

    assert inbox.sent == []
    rows = list(client.iter_all("log", {"entity": "Customer"}, branch_id=1))
    # newest first, event as an integer, fields as a list of one-key maps (see the sandbox's module doc)
    assert rows[0]["entity_id"] == 2 and rows[0]["event"] == 2
    assert rows[0]["fields_new"] == [{"lead_status_id": "4"}] and rows[0]["fields_old"] == [{"lead_status_id": 2}]


def test_given_map_style_log_fields_when_listing_the_log_then_fields_are_maps(sandbox, client):
    sandbox.configure({"log_fields_style": "map"})
    sandbox.ui_update_customer(2, {"lead_status_id": 4})
    sandbox.ui_create_pay({"customer_id": 2, "income": "100"})
    [update] = client.index("log", {"entity": "Customer"}, branch_id=1).items
    [create] = client.index("log", {"entity": "Pay"}, branch_id=1).items
    assert (update["event"], update["fields_new"]) == (2, {"lead_status_id": "4"})
    assert create["event"] == 1 and create["fields_old"] == []


@pytest.mark.parametrize(
    ("mode", "query", "found"),
    [
        ("digits_substring", "9161234568", True),
        ("digits", "9161234568", False),
        ("digits", "89161234568", True),
        ("exact", "+79161234568", False),
        ("exact", "89161234568", True),
    ],
)
def test_given_a_phone_search_mode_when_searching_then_the_server_matches_that_way(sandbox, client, mode, query, found):
    sandbox.configure({"phone_search": mode})  # Петров Илья is stored as "89161234568"
    items = client.index("customer", {"phone": query, "is_study": 2}, branch_id=1).items
    assert bool(items) is found


def test_given_comments_need_an_author_when_none_is_sent_then_alfacrm_refuses_with_200(sandbox, client):
    sandbox.configure({"comment_requires_user_id": True})
    with pytest.raises(AlfaCrmValidationError) as caught:
        client.add_comment(2, "Привет", branch_id=1)
    assert caught.value.field == "user_id"
    client.add_comment(2, "Привет", branch_id=1, user_id=2)
    assert sandbox.state()["communications"][-1]["user_id"] == 2


def test_pay_items_carry_their_pay_types(client):
    items = client.index("pay-item", {}, branch_id=1).items
    assert {i["name"]: i["pay_type_ids"] for i in items}["Учебные материалы"] == [1, 9]


@pytest.mark.parametrize("body_key", ["fields_old", "fields_new", "fields_rel"])
def test_every_delivered_body_parses_as_a_webhook_event(sandbox, inbox, body_key):
    sandbox.add_webhook(1, HOOK)
    sandbox.ui_create_customer({"name": "А"})
    sandbox.ui_update_customer(1, {"note": "Б"})
    sandbox.ui_create_pay({"customer_id": 1, "income": "1"})
    for body in _bodies(inbox):
        event = WebhookEvent.model_validate(body)
        assert isinstance(getattr(event, body_key), dict)
        assert event.branch_for(default=99) == 1


# --- the API's behaviour ------------------------------------------------------------------------------------------


def test_given_no_is_study_filter_when_listing_customers_then_clients_only_and_archived_hidden(api, clock):
    headers = _login(api)

    def names(filters: dict) -> list[str]:
        clock.advance(1)  # stay under the 5 requests/s burst limit
        reply = api.post("/v2api/1/customer/index", json=filters, headers=headers).json()
        return [item["name"] for item in reply["items"]]

    assert names({}) == ["Смирнова Анна Сергеевна"]
    assert names({"is_study": 0}) == ["Петров Илья"]
    assert names({"is_study": 2}) == ["Смирнова Анна Сергеевна", "Петров Илья"]
    assert names({"is_study": 2, "removed": 1}) == ["Смирнова Анна Сергеевна", "Петров Илья", "Иванова Мария"]
    assert names({"is_study": 2, "removed": 2}) == ["Иванова Мария"]


def test_given_a_record_when_listed_then_money_and_ids_come_as_strings_and_dates_in_both_formats(api):
    headers = _login(api)
    customer = api.post("/v2api/1/customer/index", json={"id": 1}, headers=headers).json()["items"][0]
    pay = api.post("/v2api/1/pay/index", json={"id": 1}, headers=headers).json()["items"][0]
    assert customer["balance"] == "4500.00" and customer["dob"] == "12.05.2014"
    assert customer["phone"] == ["+7(916)123-45-67"] and customer["created_at"].count(":") == 2
    assert pay["income"] == "4500.00" and pay["customer_id"] == "1"
    assert len(pay["document_date"].split(".")) == 3


def test_given_more_than_50_records_when_asking_for_a_bigger_page_then_50_anyway(clock, inbox):
    sandbox = AlfaCrmSandbox(clock=clock, sender=inbox, seed=False)
    sandbox.add_customers(75)
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox.app), base_url=HOST) as api:
        headers = _login(api)
        first = api.post("/v2api/1/customer/index", json={"is_study": 2, "page_size": 100}, headers=headers).json()
        second = api.post("/v2api/1/customer/index", json={"is_study": 2, "page": 1}, headers=headers).json()
    assert (first["total"], first["count"], first["page"]) == (75, 50, 0)
    assert (second["count"], second["page"]) == (25, 1)


def test_given_a_token_older_than_15_minutes_when_used_then_401(api, clock):
    headers = _login(api)
    assert api.post("/v2api/branch/index", json={}, headers=headers).status_code == 200
    clock.advance(timedelta(minutes=15).total_seconds())
    reply = api.post("/v2api/branch/index", json={}, headers=headers)
    assert reply.status_code == 401 and reply.json()["status"] == 401


def test_given_bad_credentials_when_logging_in_then_403_access_denied(api):
    reply = api.post("/v2api/auth/login", json={"email": DEFAULT_EMAIL, "api_key": "nope"})
    assert reply.status_code == 403 and reply.json()["message"] == "Access Denied"


def test_given_a_communication_without_its_owner_in_the_query_when_created_then_refused(api):
    headers = _login(api)
    reply = api.post("/v2api/1/communication/create", json={"comment": "x"}, headers=headers)
    assert reply.status_code == 400


def test_given_more_than_five_requests_in_a_second_when_sent_then_429(api):
    headers = _login(api)  # the login is the first request of the second
    statuses = [api.post("/v2api/branch/index", json={}, headers=headers).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]


# --- control routes and serving ---------------------------------------------------------------------------


def test_given_the_control_routes_when_driving_a_scenario_over_http_then_state_shows_the_outcome(sandbox, inbox, api):
    assert (
        api.post("/_sandbox/webhooks", json={"branch_id": 1, "url": HOOK, "entities": ["Customer"]}).status_code == 200
    )

    created = api.post("/_sandbox/ui/customer/create?branch_id=1", json={"name": "Лид из UI", "is_study": 0}).json()
    api.post(f"/_sandbox/ui/customer/update?id={created['model']['id']}", json={"lead_status_id": 2})
    api.post(f"/_sandbox/ui/customer/archive?id={created['model']['id']}", json={})
    api.post("/_sandbox/fail", json={"status": 500, "count": 1})

    state = api.get("/_sandbox/state").json()
    assert state["customers"][-1]["name"] == "Лид из UI" and state["customers"][-1]["lead_reject_id"] == 1
    assert [d["body"]["event"] for d in state["deliveries"]] == ["create", "update", "update"]
    assert api.post("/v2api/auth/login", json={}).status_code == 500  # the injected failure
    assert api.post("/_sandbox/expire-tokens").json() == {"ok": True}


def test_given_the_sandbox_served_on_a_port_when_a_client_logs_in_over_tcp_then_it_works(sandbox):
    served = ServedApp(sandbox.app).start()
    try:
        reply = httpx.post(f"{served.url}/v2api/auth/login", json={"email": DEFAULT_EMAIL, "api_key": DEFAULT_API_KEY})
    finally:
        served.stop()
    assert reply.status_code == 200 and len(reply.json()["token"]) == 32


def test_main_parses_its_port_option():
    with pytest.raises(SystemExit):
        main(["--help"])
