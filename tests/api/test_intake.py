"""Webhook intakes: what reaches the queues (or does not) for what AlfaCRM and UIS really send."""

from __future__ import annotations

import json

import pytest

from tests.api.builders import ALFA_SECRET, UIS_SECRET, api_event, reply_json, stored_integration
from tests.handlers import load_handler

alfacrm_hook = load_handler("alfacrm_webhook")
uis_hook = load_handler("uis_webhook")

PAY_CREATE = {
    "branch_id": 1,
    "event": "create",
    "entity": "Pay",
    "entity_id": 1601,
    "fields_old": [],
    "fields_new": {"customer_id": "145", "income": "5000", "document_date": "25.11.2026"},
    "fields_rel": [],
    "user_id": 2,
    "datetime": "2026-11-25 10:15:00",
}


def queued(sqs, url: str) -> list[dict]:
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_alfacrm_webhook_with_form_content_type_is_queued_for_the_deal_worker(store, sqs, queue_urls, lambda_context):
    """Given an active integration, when AlfaCRM posts raw JSON under a form Content-Type,
    then the event is on the deal queue exactly as received and the reply is 200."""
    stored_integration(store)
    event = api_event(
        "POST",
        f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}",
        body=PAY_CREATE,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    reply = alfacrm_hook(event, lambda_context)
    assert reply["statusCode"] == 200
    assert reply_json(reply)["queued"] is True
    [message] = queued(sqs, queue_urls["DealEventsQueue"])
    assert message["integration_id"] == "0a1b2c3d"
    assert message["event"] == PAY_CREATE


def test_base64_body_from_api_gateway_is_decoded(store, sqs, queue_urls, lambda_context):
    stored_integration(store)
    event = api_event("POST", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}", body=PAY_CREATE, base64_body=True)
    assert alfacrm_hook(event, lambda_context)["statusCode"] == 200
    assert queued(sqs, queue_urls["DealEventsQueue"])[0]["event"]["entity_id"] == 1601


@pytest.mark.parametrize(
    "integration_id, secret", [("0a1b2c3d", "wrong" * 7), ("ffffffff", ALFA_SECRET), ("0a1b2c3d", UIS_SECRET)]
)
def test_wrong_secret_or_unknown_integration_is_404_and_nothing_is_stored(
    store, sqs, queue_urls, lambda_context, integration_id, secret
):
    stored_integration(store)
    event = api_event("POST", f"/hooks/alfacrm/{integration_id}/{secret}", body=PAY_CREATE)
    reply = alfacrm_hook(event, lambda_context)
    assert reply["statusCode"] == 404
    assert reply_json(reply)["error"]["code"] == "not_found"
    assert queued(sqs, queue_urls["DealEventsQueue"]) == []


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"event": "create", "entity": "Pay"}).encode(), "entity_id"),
        (json.dumps({**PAY_CREATE, "event": "explode"}).encode(), "event"),
    ],
)
def test_malformed_alfacrm_body_is_400_naming_the_problem(store, sqs, queue_urls, lambda_context, raw, reason):
    stored_integration(store)
    reply = alfacrm_hook(api_event("POST", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}", raw=raw), lambda_context)
    assert reply["statusCode"] == 400
    assert reason in reply_json(reply)["error"]["message"]
    assert queued(sqs, queue_urls["DealEventsQueue"]) == []


def test_oversized_body_is_400(store, sqs, queue_urls, lambda_context):
    stored_integration(store)
    big = {**PAY_CREATE, "fields_new": {"note": "x" * (300 * 1024)}}
    reply = alfacrm_hook(api_event("POST", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}", body=big), lambda_context)
    assert reply["statusCode"] == 400
    assert reply_json(reply)["error"]["code"] == "payload_too_large"
    assert queued(sqs, queue_urls["DealEventsQueue"]) == []


def test_inactive_integration_answers_200_and_enqueues_nothing(store, sqs, queue_urls, lambda_context):
    stored_integration(store, active=False)
    reply = alfacrm_hook(api_event("POST", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}", body=PAY_CREATE), lambda_context)
    assert reply["statusCode"] == 200
    assert reply_json(reply) == {"ok": True, "queued": False, "reason": "integration inactive"}
    assert queued(sqs, queue_urls["DealEventsQueue"]) == []


def test_entities_other_than_customer_and_pay_are_acknowledged_not_queued(store, sqs, queue_urls, lambda_context):
    stored_integration(store)
    lesson = {**PAY_CREATE, "entity": "Lesson"}
    reply = alfacrm_hook(api_event("POST", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}", body=lesson), lambda_context)
    assert reply["statusCode"] == 200
    assert queued(sqs, queue_urls["DealEventsQueue"]) == []


def test_uis_post_notification_is_queued_with_its_event(store, sqs, queue_urls, lambda_context):
    stored_integration(store)
    body = {
        "notification_name": "Завершение чата",
        "chat_id": 778,
        "communication_id": "9911",
        "tag_ids": "1,2",
        "visitor_info": {"visitor_name": "Анна", "visitor_id": 5},
        "status": "succeed",
    }
    event = api_event("POST", f"/hooks/uis/0a1b2c3d/{UIS_SECRET}", body=body, query={"event": "chat_finished"})
    reply = uis_hook(event, lambda_context)
    assert reply["statusCode"] == 200
    [message] = queued(sqs, queue_urls["TextEventsQueue"])
    assert message["event"] == "chat_finished"
    assert message["method"] == "POST"
    assert message["payload"] == body


def test_uis_get_notification_takes_the_query_string(store, sqs, queue_urls, lambda_context):
    stored_integration(store)
    query = {
        "event": "offline_message",
        "offline_message_id": "501",
        "visitor_phone_number": "79161234567",
        "site_domain_name": "school.ru",
    }
    reply = uis_hook(api_event("GET", f"/hooks/uis/0a1b2c3d/{UIS_SECRET}", query=query), lambda_context)
    assert reply["statusCode"] == 200
    [message] = queued(sqs, queue_urls["TextEventsQueue"])
    assert message["event"] == "offline_message"
    assert message["payload"] == {
        "offline_message_id": "501",
        "visitor_phone_number": "79161234567",
        "site_domain_name": "school.ru",
    }


def test_uis_unknown_event_name_is_400(store, sqs, queue_urls, lambda_context):
    stored_integration(store)
    event = api_event("POST", f"/hooks/uis/0a1b2c3d/{UIS_SECRET}", body={"chat_id": 1}, query={"event": "party"})
    reply = uis_hook(event, lambda_context)
    assert reply["statusCode"] == 400
    assert reply_json(reply)["error"]["field"] == "event"
    assert queued(sqs, queue_urls["TextEventsQueue"]) == []


def test_uis_secret_is_not_the_alfacrm_secret(store, sqs, queue_urls, lambda_context):
    stored_integration(store)
    reply = uis_hook(api_event("POST", f"/hooks/uis/0a1b2c3d/{ALFA_SECRET}", body={"chat_id": 1}), lambda_context)
    assert reply["statusCode"] == 404


@pytest.mark.parametrize(
    "handler, method, path, status",
    [
        (alfacrm_hook, "GET", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}", 405),
        (alfacrm_hook, "POST", "/hooks/alfacrm/0a1b2c3d", 404),
        (uis_hook, "DELETE", f"/hooks/uis/0a1b2c3d/{UIS_SECRET}", 405),
    ],
)
def test_unknown_route_or_method_on_a_hook_answers_in_the_contract_error_shape(
    store, sqs, queue_urls, lambda_context, handler, method, path, status
):
    stored_integration(store)
    reply = handler(api_event(method, path, body={"event": "create"}), lambda_context)
    body = reply_json(reply)
    assert reply["statusCode"] == status
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["code"] == ("not_found" if status == 404 else "method_not_allowed")
    assert sqs.receive_message(QueueUrl=queue_urls["DealEventsQueue"]).get("Messages") is None
    assert sqs.receive_message(QueueUrl=queue_urls["TextEventsQueue"]).get("Messages") is None
