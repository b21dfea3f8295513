"""Issue 9.10, 9.11, 9.13: a school's health, its execution log, replay of one parked item, and a dead-letter
redrive that goes on in the background — through the handlers, as an operator or the page sees them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from connector import replay as replay_module
from connector.alfacrm.client import AlfaCrmClient
from connector.models.events import DeadLetterMark
from connector.models.parked import ParkedItem
from connector.observability import SERVICE, MaskingFormatter
from connector.retry import RateLimiter, RetryPolicy

from tests.api.builders import api_event, reply_json, stored_integration
from tests.api.test_replay import AUTH, drain, sqs_event
from tests.handlers import load_handler
from tests.texts.conftest import Factory
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL
from tools.sandboxes.uis import DEFAULT_TOKEN

admin_api = load_handler("admin_api")
text_worker = load_handler("text_worker")
deal_worker = load_handler("deal_worker")
jobs = load_handler("jobs")
REQUESTS_FOR_SCHOOL_RU = {"texts": {"requests": {"enabled": True, "filters": {"sites": ["school.ru"]}}}}


@contextmanager
def log_lines() -> Iterator[io.StringIO]:
    """The connector's log lines, as CloudWatch would get them, while the block runs."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(MaskingFormatter())
    target = logging.getLogger(SERVICE)
    target.addHandler(handler)
    try:
        yield buffer
    finally:
        target.removeHandler(handler)


def get(ctx, path, **query):
    reply = admin_api(api_event("GET", path, headers=AUTH, query={k: str(v) for k, v in query.items()} or None), ctx)
    return reply["statusCode"], reply_json(reply)


def post(ctx, path, body=None):
    reply = admin_api(api_event("POST", path, headers=AUTH, body=body), ctx)
    return reply["statusCode"], reply_json(reply)


def request_body(iid: str, om: int, site: str = "other.ru") -> str:
    # every fact the filters and the lead need given (empty ones too): nothing is read from UIS
    payload = {
        "offline_message_id": om,
        "communication_id": 90 + om,
        "site_domain_name": site,
        "site_id": None,
        "visitor_phone_number": "79161234567",
        "visitor_email": None,
    }
    return json.dumps(
        {"integration_id": iid, "event": "offline_message", "received_at": "2026-11-30T10:00:00Z", "payload": payload}
    )


def test_the_execution_log_says_which_filter_skipped_a_request_newest_first(store, lambda_context):
    school = stored_integration(store, settings=REQUESTS_FOR_SCHOOL_RU)
    bodies = [request_body(school.id, om) for om in (1, 2, 3)]
    assert text_worker(sqs_event(*bodies), lambda_context) == {"batchItemFailures": []}

    status, body = get(lambda_context, f"/integrations/{school.id}/events", limit=2)

    assert status == 200, body
    items = body["items"]
    assert [i["key"] for i in items] == ["om3", "om2"]  # newest first, `limit` of them
    for item in items:
        assert item["source"] == "uis" and item["kind"] == "text_event" and item["outcome"] == "skipped"
        assert item["reason"] == "site other.ru is not in the request filter"
    assert get(lambda_context, f"/integrations/{school.id}/events", limit=0)[0] == 422
    assert get(lambda_context, "/integrations/0badbad0/events")[0] == 404


def test_a_batch_of_one_school_costs_one_log_write(store, lambda_context):
    school = stored_integration(store, settings=REQUESTS_FOR_SCHOOL_RU)
    before = store.table.calls
    text_worker(sqs_event(*(request_body(school.id, om) for om in range(10))), lambda_context)
    writes = [i for i in store.table.query(f"INT#{school.id}", "EVT#")]
    assert len(writes) == 1 and len(writes[0]["entries"]) == 10
    assert store.table.calls - before < 40  # the log is not one write per record (ten records, one item)


def test_health_shows_the_last_webhook_and_notification_counts_and_the_last_error(
    store, lambda_context, sqs, queue_urls
):
    school = stored_integration(store, settings=REQUESTS_FOR_SCHOOL_RU)
    text_worker(sqs_event(request_body(school.id, 1)), lambda_context)
    store.integrations.park(school.id, ParkedItem(kind="deal", key="first_sale#7", payload={}, error="refused"))
    broken = json.dumps({"integration_id": school.id, "event": "chat_finished", "payload": {"x": 1}})
    text_worker(sqs_event(broken), lambda_context)  # chats are off: skipped

    status, health = get(lambda_context, f"/integrations/{school.id}/health")

    assert status == 200, health
    assert health["last_uis_notification_at"] == "2026-11-30T10:00:00Z"
    assert health["last_alfacrm_webhook_at"] is None and health["last_upload_at"] is None
    assert (health["pending_deals"], health["parked"], health["dead_letters"]) == (0, 1, 0)
    assert health["status"] == "attention"
    assert health["credentials"]["alfacrm"]["state"] == "unknown"
    assert health["funnel_sync"] is None and health["redrive"] is None


def test_a_record_failing_its_last_receive_counts_as_the_schools_dead_letter_until_a_replay(
    store, lambda_context, sqs, queue_urls, container_runtime
):
    """SQS cannot count per school: the worker marks a record that fails at its last allowed receive."""
    school = stored_integration(store, settings=REQUESTS_FOR_SCHOOL_RU)
    other = stored_integration(store, integration_id="0f0f0f0f", settings=REQUESTS_FOR_SCHOOL_RU)
    # AlfaCRM unreachable (nothing listens on port 9): a request that needs it fails, and SQS would retry it
    down = AlfaCrmClient(
        "http://127.0.0.1:9", "api@school.ru", "k", retry=RetryPolicy(attempts=1), limiter=RateLimiter(0)
    )
    container_runtime.clients = Factory(down, None)  # type: ignore[arg-type]
    failing = request_body(school.id, 5, site="school.ru")
    fine = request_body(other.id, 6)
    reply = text_worker(sqs_event(failing, fine, receive_count=5), lambda_context)
    assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == ["m-0"]
    reply = text_worker(sqs_event(failing, fine, receive_count=4), lambda_context)  # not its last receive
    assert get(lambda_context, f"/integrations/{school.id}/health")[1]["dead_letters"] == 1
    assert get(lambda_context, f"/integrations/{other.id}/health")[1]["dead_letters"] == 0
    events = get(lambda_context, f"/integrations/{school.id}/events")[1]["items"]
    assert events[0]["outcome"] == "failed"

    # SQS moved it to the DLQ keeping its message id; the replay moves it back and clears the mark
    sqs.send_message(QueueUrl=queue_urls["TextEventsDLQ"], MessageBody=failing)
    [dead] = sqs.receive_message(QueueUrl=queue_urls["TextEventsDLQ"], VisibilityTimeout=0)["Messages"]
    store.events.clear_dead_letters(school.id)
    store.events.mark_dead_letter(school.id, DeadLetterMark(queue="text", message_id=dead["MessageId"], at="x"))
    status, body = post(lambda_context, f"/integrations/{school.id}/replay")
    assert status == 200 and body["dead_letters_redriven"] == 1
    assert get(lambda_context, f"/integrations/{school.id}/health")[1]["dead_letters"] == 0


def test_broken_credentials_show_in_health_raise_one_metric_and_name_the_school_in_the_log(
    served_sandboxes, lambda_context, capsys
):
    sb = served_sandboxes
    create = {
        "name": "Школа",
        "alfacrm": {"hostname": sb["alfacrm_url"], "email": DEFAULT_EMAIL, "api_key": DEFAULT_API_KEY},
        "uis": {"api_url": sb["uis_url"], "access_token": DEFAULT_TOKEN},
    }
    iid = reply_json(admin_api(api_event("POST", "/integrations", headers=AUTH, body=create), lambda_context))["id"]
    assert (
        get(lambda_context, f"/integrations/{iid}/health", check="true")[1]["credentials"]["alfacrm"]["state"] == "ok"
    )
    sb["alfacrm"].add_account(DEFAULT_EMAIL, "rotated-by-the-school")  # the school changed its API key
    try:
        capsys.readouterr()
        with log_lines() as logged:
            status, health = get(lambda_context, f"/integrations/{iid}/health", check="true")
        out = logged.getvalue() + capsys.readouterr().out  # the log lines, and the metrics (EMF on stdout)
        assert status == 200, health
        assert health["credentials"]["alfacrm"]["state"] == "failing"
        assert health["status"] == "failing"
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        [failing] = [line for line in lines if line.get("message") == "integration failing"]
        assert failing["integration_id"] == iid and failing["system"] == "alfacrm"
        [metric] = [line for line in lines if "IntegrationsFailing" in line]
        dimensions = metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        assert dimensions == [["service"]]  # no per-school dimension
        # the state stays visible without a live check
        assert get(lambda_context, f"/integrations/{iid}/health")[1]["credentials"]["alfacrm"]["state"] == "failing"
    finally:
        sb["alfacrm"].add_account(DEFAULT_EMAIL, DEFAULT_API_KEY)


def test_one_parked_item_is_replayed_by_its_key_and_an_unknown_key_is_named(store, lambda_context, sqs, queue_urls):
    school = stored_integration(store)
    for om in (7, 8):
        message = {"integration_id": school.id, "event": "offline_message", "payload": {"offline_message_id": om}}
        store.integrations.park(school.id, ParkedItem(kind="text_event", key=f"om{om}", payload=message, error="e"))
    sqs.send_message(QueueUrl=queue_urls["DealEventsDLQ"], MessageBody=json.dumps({"integration_id": school.id}))

    status, body = post(lambda_context, f"/integrations/{school.id}/replay", {"keys": ["text_event#om8"]})

    assert status == 200, body
    assert body["replayed"]["text_event"] == 1 and body["dead_letters_redriven"] == 0
    [requeued] = drain(sqs, queue_urls["TextEventsQueue"])
    assert requeued["payload"] == {"offline_message_id": 8}
    assert [p.key for p in store.integrations.parked(school.id)] == ["om7"]
    assert drain(sqs, queue_urls["DealEventsQueue"]) == []  # a keyed replay leaves the dead letters alone

    status, body = post(lambda_context, f"/integrations/{school.id}/replay", {"keys": ["om7", "om9"]})
    assert status == 422 and body["error"]["field"] == "keys[1]"
    assert [p.key for p in store.integrations.parked(school.id)] == ["om7"]  # nothing done


def test_a_long_redrive_goes_on_in_the_background_and_reports_its_progress(
    store, lambda_context, sqs, queue_urls, monkeypatch
):
    school = stored_integration(store)
    for n in range(3):
        body = json.dumps({"integration_id": school.id, "event": {"entity": "Customer", "entity_id": n}})
        sqs.send_message(QueueUrl=queue_urls["DealEventsDLQ"], MessageBody=body)
    monkeypatch.setattr(replay_module, "SYNC_REDRIVE_SECONDS", 0.0)  # the request's share is spent at once

    status, body = post(lambda_context, f"/integrations/{school.id}/replay")

    assert status == 200, body
    assert body["dead_letters"]["state"] == "running" and body["dead_letters_redriven"] == 0
    assert get(lambda_context, f"/integrations/{school.id}/health")[1]["redrive"]["state"] == "running"
    got = sqs.receive_message(QueueUrl=queue_urls["JobsQueue"], AttributeNames=["All"])["Messages"]
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m["Attributes"],
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:test-JobsQueue",
            "awsRegion": "eu-central-1",
        }
        for m in got
    ]
    assert jobs({"Records": records}, lambda_context) == {"batchItemFailures": []}

    redrive = get(lambda_context, f"/integrations/{school.id}/health")[1]["redrive"]
    assert redrive["state"] == "done" and redrive["moved"] == 3
    assert len(drain(sqs, queue_urls["DealEventsQueue"])) == 3


@pytest.mark.parametrize("limit", [201, -1])
def test_the_log_limit_is_bounded(store, lambda_context, limit):
    school = stored_integration(store)
    assert get(lambda_context, f"/integrations/{school.id}/events", limit=limit)[0] == 422
