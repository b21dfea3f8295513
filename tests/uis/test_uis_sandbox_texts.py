"""The sandbox's chats, requests, reports, notifications and JSON-RPC protocol edges."""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from connector.errors import UisValidationError

from tests.uis.builders import rpc

HOOK = "http://connector.test/hooks/uis/int-1/secret"
DAY_START, DAY_END = datetime(2025, 3, 10), datetime(2025, 3, 10, 23, 59, 59)

CHAT_FINISHED_KEYS = {
    "notification_name",
    "notification_time",
    "site_domain_name",
    "campaign_id",
    "campaign_name",
    "communication_id",
    "search_engine",
    "search_query",
    "session_id",
    "ua_client_id",
    "utm_campaign",
    "utm_content",
    "utm_medium",
    "utm_source",
    "utm_term",
    "chat_id",
    "tag_ids",
    "messages",
    "employee_full_name",
    "visitor_info",
    "status",
}


def _json_sent(outbox):
    return [json.loads(item["body"]) for item in outbox.sent]


# --- protocol -----------------------------------------------------------------------------------
def test_request_without_id_batch_and_unknown_method_are_refused(http):
    assert rpc(http, "get.sites", id=None)["error"]["code"] == -32600
    batch = http.post("/v2.0", json=[{"jsonrpc": "2.0", "id": 1, "method": "get.sites", "params": {}}]).json()
    assert batch["error"]["code"] == -32600
    assert rpc(http, "get.everything")["error"]["code"] == -32601
    assert http.post("/v2.0", content=b"{not json").json()["error"]["code"] == -32700


def test_errors_cost_no_points_and_successes_cost_one(http, sandbox):
    rpc(http, "get.sites", {"access_token": "wrong"})
    ok = rpc(http, "get.sites")
    assert sandbox.points_spent == 1
    assert ok["result"]["metadata"]["limits"]["minute_remaining"] == 199


# --- look-ups and reports -----------------------------------------------------------------------
def test_seeded_lookups_match_the_demo_school(client):
    assert {(s["domain_name"], s["name"]) for s in client.get_sites()} >= {
        ("school.ru", "Школа английского — основной сайт")
    }
    assert {c["type"] for c in client.get_chat_channels()} == {"comagic", "whatsapp", "telegram"}
    assert {t["name"] for t in client.get_tags()} == {"Лид", "Спам", "Пробное", "Целевой"}
    assert all({"id", "full_name"} <= set(e) for e in client.call("get.employees", {})["data"])


def test_chats_report_pages_until_a_short_page(client, sandbox):
    # Given five chats today (the seeded chat is two days old)
    started = [sandbox.start_chat(visitor_name=f"Гость {i}", chat_channel_type="whatsapp") for i in range(5)]

    # When the report is read two rows per page, until a short page (the poller's paging)
    rows: list[dict] = []
    page: list[dict] | None = None
    while page is None or len(page) == 2:
        page = client.get_chats_report(DAY_START, DAY_END, limit=2, offset=len(rows))
        rows += page

    # Then every chat comes back once, in order, across three pages (three points)
    assert [r["id"] for r in rows] == [c["id"] for c in started]
    assert sandbox.points_spent == 3
    assert {r["chat_channel_type"] for r in rows} == {"whatsapp"} and rows[0]["status"] == "new"


def test_chats_report_filters_with_trees_and_chooses_fields(client, sandbox):
    widget = sandbox.start_chat(site_id=17001, visitor_phone_number="79160000001")
    sandbox.start_chat(chat_channel_type="telegram")
    camp = sandbox.start_chat(site_id=17002)
    sandbox.take_chat(camp["id"], employee_id=12)

    flt = {
        "filters": [
            {"field": "chat_channel_type", "operator": "=", "value": "comagic"},
            {
                "filters": [
                    {"field": "status", "operator": "=", "value": "active"},
                    {"field": "site_id", "operator": "=", "value": 17001},
                ],
                "condition": "or",
            },
        ],
        "condition": "and",
    }
    rows = client.get_chats_report(DAY_START, DAY_END, filter=flt, fields=["id", "site_domain_name", "status"])

    assert rows == [
        {"id": widget["id"], "site_domain_name": "school.ru", "status": "new"},
        {"id": camp["id"], "site_domain_name": "camp.school.ru", "status": "active"},
    ]


def test_report_range_over_three_months_is_refused(client):
    with pytest.raises(UisValidationError) as caught:
        client.get_chats_report(datetime(2024, 11, 1), datetime(2025, 2, 2))
    assert caught.value.mnemonic == "date_interval_limit_reached"


def test_chat_messages_by_chat_and_by_range(client, sandbox):
    chat = sandbox.start_chat(message="Здравствуйте, есть группы для детей?")
    sandbox.take_chat(chat["id"], employee_id=11)
    sandbox.post_message(chat["id"], "Да, с 7 лет", source="operator")

    by_chat = list(client.iter_chat_messages_report(chat_id=chat["id"]))
    assert [(m["source"], m["text"], m["employee_full_name"]) for m in by_chat] == [
        ("visitor", "Здравствуйте, есть группы для детей?", None),
        ("operator", "Да, с 7 лет", "Анна Смирнова"),
    ]
    assert len(list(client.iter_chat_messages_report(date_from=DAY_START, date_till=DAY_END))) == 2
    with pytest.raises(UisValidationError) as caught:
        list(client.iter_chat_messages_report(date_from=datetime(2025, 1, 1), date_till=DAY_END))
    assert caught.value.mnemonic == "date_interval_limit_reached"


def test_offline_messages_report_carries_form_type_and_contacts(client, sandbox):
    sandbox.submit_request(
        form_type="custom", visitor_name="Ирина", visitor_phone_number="79265554433", text="Запишите на пробное"
    )

    [row] = client.get_offline_messages_report(DAY_START, DAY_END)

    assert (row["form_type"], row["visitor_name"], row["visitor_phone_number"], row["site_domain_name"]) == (
        "custom",
        "Ирина",
        "79265554433",
        "school.ru",
    )


def test_set_tag_communications_tags_the_chat(client, sandbox):
    chat = sandbox.start_chat()
    client.call(
        "set.tag_communications",
        {"communication_id": chat["communication_id"], "communication_type": "chat", "tag_id": 503},
    )
    [row] = client.get_chats_report(DAY_START, DAY_END)
    assert [t["tag_name"] for t in row["tags"]] == ["Пробное"]


# --- notifications ------------------------------------------------------------------------------
def test_chat_start_sends_nothing_and_finish_sends_the_default_post_body(sandbox, outbox):
    # Given chat_finished is configured as POST
    sandbox.configure_notification("chat_finished", HOOK)

    # When a chat starts, is taken, tagged and finished
    chat = sandbox.start_chat(visitor_name="Мария", visitor_phone_number="79161234567", message="Привет")
    assert outbox.sent == []
    sandbox.take_chat(chat["id"], employee_id=11)
    sandbox.post_message(chat["id"], "Добрый день!", source="operator")
    sandbox.tag_chat(chat["id"], 501)
    sandbox.finish_chat(chat["id"])

    # Then one POST carries exactly the default template's fields: no phone, site id or channel
    [body] = _json_sent(outbox)
    assert set(body) == CHAT_FINISHED_KEYS
    assert (body["chat_id"], body["communication_id"], body["status"]) == (
        chat["id"],
        chat["communication_id"],
        "succeed",
    )
    assert body["tag_ids"] == [501] and body["site_domain_name"] == "school.ru"
    assert body["visitor_info"] == {"visitor_name": "Мария", "visitor_id": chat["visitor_id"]}
    assert "Добрый день!" in body["messages"] and body["employee_full_name"] == "Анна Смирнова"
    assert outbox.sent[0]["headers"]["Content-Type"].startswith("application/json")
    assert sandbox.state()["chats"][-1]["status"] == "succeed"


def test_stringified_ids_and_tag_ids_as_a_comma_string(sandbox, outbox):
    sandbox.configure_notification("lost_chat", HOOK, stringify_ids=True, tag_ids_as_string=True)
    chat = sandbox.start_chat()
    sandbox.tag_chat(chat["id"], 501)
    sandbox.tag_chat(chat["id"], 503)

    sandbox.lose_chat(chat["id"])

    [body] = _json_sent(outbox)
    assert body["chat_id"] == str(chat["id"]) and body["communication_id"] == str(chat["communication_id"])
    assert body["tag_ids"] == "501,503"
    assert "status" not in body  # lost_chat's default body has no status


def test_get_notifications_put_the_template_in_the_query_string(sandbox, outbox):
    sandbox.configure_notification("chat_finished", HOOK + "?source=uis", method="GET")
    chat = sandbox.start_chat(visitor_name="Пётр")
    sandbox.tag_chat(chat["id"], 501)
    sandbox.tag_chat(chat["id"], 504)
    sandbox.finish_chat(chat["id"], status="refused")

    [sent] = outbox.sent
    query = parse_qs(urlsplit(sent["url"]).query, keep_blank_values=True)
    assert sent["method"] == "GET" and sent["body"] is None
    assert query["source"] == ["uis"] and query["chat_id"] == [str(chat["id"])]
    assert query["tag_ids"] == ["501,504"] and query["visitor_name"] == ["Пётр"] and query["status"] == ["refused"]
    assert query["search_query"] == [""]  # absent values are empty


def test_a_lost_notification_can_be_suppressed(sandbox, outbox):
    sandbox.configure_notification("lost_chat", HOOK)
    chat = sandbox.start_chat()

    sandbox.lose_chat(chat["id"], notify=False)

    assert outbox.sent == []
    assert sandbox.state()["chats"][-1]["status"] == "lost"


def test_set_and_unset_mark_send_the_call_oriented_default_with_chat_extras(sandbox, outbox):
    sandbox.configure_notification("set_mark", HOOK, extra_params=["communication_id", "communication_type", "chat_id"])
    sandbox.configure_notification("unset_mark", HOOK)
    chat = sandbox.start_chat(visitor_phone_number="79160000002")

    sandbox.tag_chat(chat["id"], 502)
    sandbox.untag_chat(chat["id"], 502)

    set_body, unset_body = _json_sent(outbox)
    assert set_body["tag_info"] == {"tag_id": 502, "tag_name": "Спам"}
    assert set_body["contact_info"]["contact_phone_number"] == "79160000002"
    assert (set_body["chat_id"], set_body["communication_type"]) == (chat["id"], "chat")
    assert "chat_id" not in unset_body and unset_body["tag_info"]["tag_id"] == 502
    assert sandbox.state()["chats"][-1]["tags"] == []


def test_request_sends_offline_message_with_visitor_block(sandbox, outbox):
    sandbox.configure_notification("offline_message", HOOK)

    request = sandbox.submit_request(
        site_id=17002,
        visitor_name="Ирина",
        visitor_phone_number="79265554433",
        visitor_email="irina@example.com",
        text="Есть места в лагере?",
    )

    [body] = _json_sent(outbox)
    assert body["offline_message_id"] == request["id"] and body["site_domain_name"] == "camp.school.ru"
    assert body["visitor"] == {
        "visitor_name": "Ирина",
        "visitor_phone_number": "79265554433",
        "visitor_email": "irina@example.com",
        "visitor_message": "Есть места в лагере?",
        "visitor_id": request["visitor_id"],
        "session_id": request["visitor_session_id"],
    }


def test_failed_delivery_is_recorded_not_raised(sandbox, outbox):
    sandbox.configure_notification("offline_message", HOOK)
    outbox.error = ConnectionError("connector is down")

    sandbox.submit_request(visitor_name="Ирина")

    [delivery] = sandbox.state()["deliveries"]
    assert delivery["status"] is None and "connector is down" in delivery["error"]


# --- control routes -----------------------------------------------------------------------------
def test_scenario_routes_drive_a_chat_and_the_state_shows_it(http, sandbox, outbox):
    http.post("/_sandbox/notifications", json={"event": "chat_finished", "url": HOOK, "stringify_ids": True})
    chat = http.post("/_sandbox/chats", json={"visitor_name": "Гость", "message": "Добрый день"}).json()
    http.post(f"/_sandbox/chats/{chat['id']}/take", json={"employee_id": 12})
    http.post(f"/_sandbox/chats/{chat['id']}/messages", json={"text": "Слушаю вас", "source": "operator"})
    http.post(f"/_sandbox/chats/{chat['id']}/tags", json={"tag_id": 503})
    http.post(f"/_sandbox/chats/{chat['id']}/finish", json={})

    state = http.get("/_sandbox/state").json()
    [stored] = [c for c in state["chats"] if c["id"] == chat["id"]]
    assert stored["status"] == "succeed" and len(stored["messages"]) == 2
    assert [d["event"] for d in state["deliveries"]] == ["chat_finished"]
    assert _json_sent(outbox)[0]["chat_id"] == str(chat["id"])
    assert http.post("/_sandbox/chats/1/take").status_code == 404


def test_fail_route_injects_limit_exceeded(http):
    http.post("/_sandbox/fail", json={"kind": "limit_exceeded", "count": 1})
    error = rpc(http, "get.sites")["error"]
    assert (error["code"], error["data"]["mnemonic"]) == (-32029, "limit_exceeded")
    assert error["data"]["metadata"]["limits"]["minute_remaining"] == 0
    assert "result" in rpc(http, "get.sites")
