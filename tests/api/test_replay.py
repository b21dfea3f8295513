"""Admin replay: what failed goes back to its queue, for this integration only."""

from __future__ import annotations

import json

from connector.models.parked import ParkedItem

from tests.api.builders import api_event, reply_json, stored_integration
from tests.conftest import ADMIN_TOKEN
from tests.handlers import load_handler

admin_api = load_handler("admin_api")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def drain(sqs, url):
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_replay_requeues_parked_events_and_this_integrations_dead_letters(store, sqs, queue_urls, lambda_context):
    """Given a parked text event and dead letters of two integrations, when the school's admin replays,
    then its parked event and its dead letter are back on their queues, with a replay nonce, the parked
    list is empty, and the other integration's dead letter is still in the DLQ."""
    mine = stored_integration(store)
    stored_integration(store, integration_id="0f0f0f0f")
    text_message = {"integration_id": mine.id, "event": "offline_message", "payload": {"offline_message_id": "7"}}
    parked_item = ParkedItem(kind="text_event", key="om7", payload=text_message, error="lead refused: dob required")
    store.integrations.park(mine.id, parked_item)
    dead_mine = {"integration_id": mine.id, "event": {"entity": "Customer", "entity_id": 5}}
    dead_other = {"integration_id": "0f0f0f0f", "event": {"entity": "Customer", "entity_id": 9}}
    for body in (dead_mine, dead_other):
        sqs.send_message(QueueUrl=queue_urls["DealEventsDLQ"], MessageBody=json.dumps(body))

    parked = admin_api(api_event("GET", f"/integrations/{mine.id}/parked", headers=AUTH), lambda_context)
    assert [p["error"] for p in reply_json(parked)["items"]] == ["lead refused: dob required"]

    reply = admin_api(api_event("POST", f"/integrations/{mine.id}/replay", headers=AUTH), lambda_context)
    assert reply["statusCode"] == 200
    body = reply_json(reply)
    assert body["replayed"] == {"deal": 0, "deal_event": 0, "text_event": 1}
    assert body["kept"] == [] and body["dead_letters_redriven"] == 1
    assert body["dead_letters"]["state"] == "done" and body["dead_letters"]["moved"] == 1

    [requeued_text] = drain(sqs, queue_urls["TextEventsQueue"])
    assert requeued_text["payload"] == text_message["payload"] and requeued_text["replay"]
    assert drain(sqs, queue_urls["DealEventsQueue"]) == [dead_mine]
    # the other integration's dead letter stays in the DLQ (hidden for the replay's 30 s receive)
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_urls["DealEventsDLQ"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 1
    parked = admin_api(api_event("GET", f"/integrations/{mine.id}/parked", headers=AUTH), lambda_context)
    assert reply_json(parked)["items"] == []


def sqs_event(*bodies: str, receive_count: int = 1) -> dict:
    """An SQS event for a worker, its records' bodies as SQS gives them: strings."""
    records = []
    for i, body in enumerate(bodies):
        records.append(
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"rh-{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1741944005123"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:test-TextEventsQueue",
                "awsRegion": "eu-central-1",
            }
        )
    return {"Records": records}


CHATS_ON = {"texts": {"chats": {"enabled": True}}}


def test_replay_with_a_text_event_the_worker_parked_answers_and_still_redrives_the_dead_letters(
    store, sqs, queue_urls, lambda_context
):
    """Issue 9, defect 1. Given a text event the text worker itself parked from its SQS record (a body
    string, as SQS delivers it) and a dead letter of the same school, when the school replays, then the
    reply is a 200 (not the 502 of a string spread as a map), the parked event is back on the text queue as
    a message and the dead letter is back on the deal queue."""
    mine = stored_integration(store, settings=CHATS_ON)
    broken = {"integration_id": mine.id, "event": "chat_finished", "source": "notification", "payload": {"x": 1}}
    worker = load_handler("text_worker")
    assert worker(sqs_event(json.dumps(broken)), lambda_context) == {"batchItemFailures": []}
    [item] = store.integrations.parked(mine.id)
    assert item.kind == "text_event"
    dead = {"integration_id": mine.id, "event": {"entity": "Customer", "entity_id": 5}}
    sqs.send_message(QueueUrl=queue_urls["DealEventsDLQ"], MessageBody=json.dumps(dead))

    reply = admin_api(api_event("POST", f"/integrations/{mine.id}/replay", headers=AUTH), lambda_context)

    assert reply["statusCode"] == 200, reply
    assert reply_json(reply)["replayed"]["text_event"] == 1
    assert reply_json(reply)["dead_letters_redriven"] == 1
    [requeued] = drain(sqs, queue_urls["TextEventsQueue"])
    assert requeued["payload"] == {"x": 1} and requeued["event"] == "chat_finished" and requeued["replay"]
    assert drain(sqs, queue_urls["DealEventsQueue"]) == [dead]


def test_replay_reads_an_item_parked_with_a_string_payload_and_keeps_one_no_worker_could_read(
    store, sqs, queue_urls, lambda_context
):
    """Items the pre-core text worker parked hold the SQS body as a string: replay reads it as the JSON
    message it is. A payload that is no message at all stays parked (its error shown), and neither stops
    the school's dead-letter redrive."""
    mine = stored_integration(store, settings=CHATS_ON)
    legacy = json.dumps({"integration_id": mine.id, "event": "lost_chat", "payload": {"chat_id": 7}})
    store.integrations.park(mine.id, ParkedItem(kind="text_event", key="chat7#lost_chat", payload=legacy, error="x"))
    store.integrations.park(mine.id, ParkedItem(kind="text_event", key="junk", payload="not json {", error="y"))
    store.integrations.park(mine.id, ParkedItem(kind="deal_event", key="d", payload=[1, 2], error="z"))
    dead = {"integration_id": mine.id, "event": {"entity": "Pay", "entity_id": 8}}
    sqs.send_message(QueueUrl=queue_urls["DealEventsDLQ"], MessageBody=json.dumps(dead))

    reply = admin_api(api_event("POST", f"/integrations/{mine.id}/replay", headers=AUTH), lambda_context)

    assert reply["statusCode"] == 200, reply
    body = reply_json(reply)
    assert body["replayed"] == {"deal": 0, "deal_event": 0, "text_event": 1}
    assert body["dead_letters_redriven"] == 1
    assert sorted(body["kept"]) == ["deal_event#d", "text_event#junk"]
    [requeued] = drain(sqs, queue_urls["TextEventsQueue"])
    assert requeued["payload"] == {"chat_id": 7} and requeued["replay"]
    assert drain(sqs, queue_urls["DealEventsQueue"]) == [dead]
    assert sorted(i.key for i in store.integrations.parked(mine.id)) == ["d", "junk"]
