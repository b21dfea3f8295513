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
    assert reply_json(reply) == {"replayed": {"deal": 0, "deal_event": 0, "text_event": 1}, "dead_letters_redriven": 1}

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
