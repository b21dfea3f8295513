"""Issue 9.12: a school's webhook URLs rotated, its credentials replaced, and the school removed with
everything it owns; school tokens reach only their own integration on these routes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from connector.errors import NotFound
from connector.models.events import ExecutionEvent
from connector.models.parked import ParkedItem
from connector.models.texts import ChatProgress
from connector.settings import Credentials
from connector.store.work import shard_of

from tests.api.builders import api_event
from tests.api.test_admin_api import AUTH, call, create_body
from tests.conftest import runtime
from tests.handlers import load_handler
from tools.sandboxes.alfacrm import DEFAULT_EMAIL

alfacrm_webhook = load_handler("alfacrm_webhook")
WEBHOOK = {"event": "update", "entity": "Customer", "entity_id": 5, "branch_id": 1, "fields_new": {}}


@pytest.fixture()
def school(served_sandboxes, lambda_context):
    status, body = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))
    assert status == 201, body
    return body


def hook(ctx, url: str) -> int:
    path = urlsplit(url).path.removeprefix("/prod")  # the stage is API Gateway's, not the function's
    return alfacrm_webhook(api_event("POST", path, body=WEBHOOK), ctx)["statusCode"]


def school_token(ctx, iid: str) -> dict[str, str]:
    token = call(ctx, "POST", f"/integrations/{iid}/access")[1]["token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_rotating_the_webhooks_stops_the_old_urls_and_the_new_ones_work(school, lambda_context):
    old = school["webhooks"]
    assert hook(lambda_context, old["alfacrm"]) == 200

    status, body = call(lambda_context, "POST", f"/integrations/{school['id']}/webhooks/rotate")

    assert status == 200, body
    new = body["webhooks"]
    assert new["alfacrm"] != old["alfacrm"] and new["uis"] != old["uis"]
    assert hook(lambda_context, old["alfacrm"]) == 404
    assert hook(lambda_context, new["alfacrm"]) == 200
    # the URLs shown again are the new ones
    assert call(lambda_context, "GET", f"/integrations/{school['id']}/webhooks")[1] == new


def sealed(secret_id: str) -> Credentials:
    """The credentials as a cold container opens them (the sealed item, through the secrets port)."""
    return runtime().secrets.credentials(secret_id)


def test_credentials_are_replaced_only_after_the_login_works(school, served_sandboxes, lambda_context):
    iid = school["id"]
    served_sandboxes["alfacrm"].add_account("second@school.ru", "second-key-123")
    secret = f"test/integrations/{iid}"
    before = sealed(secret)
    alfacrm = {"hostname": served_sandboxes["alfacrm_url"], "email": "second@school.ru", "branch_id": 1}

    status, body = call(
        lambda_context, "PUT", f"/integrations/{iid}/credentials", {"alfacrm": {**alfacrm, "api_key": "wrong"}}
    )
    assert status == 422 and body["error"]["code"] == "alfacrm_auth_failed"
    assert sealed(secret) == before

    status, body = call(lambda_context, "PUT", f"/integrations/{iid}/credentials", {})
    assert status == 422 and "alfacrm or the uis" in body["error"]["message"]

    status, body = call(
        lambda_context, "PUT", f"/integrations/{iid}/credentials", {"alfacrm": {**alfacrm, "api_key": "second-key-123"}}
    )
    assert status == 200, body
    assert body["alfacrm"]["email"] == "second@school.ru"
    assert "second-key-123" not in json.dumps(body)
    after = sealed(secret)
    assert after.alfacrm_api_key == "second-key-123"
    assert after.uis_access_token == before.uis_access_token  # the part not given is kept
    assert after.alfacrm_webhook_secret == before.alfacrm_webhook_secret  # the URLs did not change
    health = call(lambda_context, "GET", f"/integrations/{iid}/health")[1]
    assert health["credentials"]["alfacrm"]["state"] == "ok"
    # the integration works with them: a look-up logs in as the new user
    assert call(lambda_context, "GET", f"/integrations/{iid}/alfacrm/branches")[0] == 200
    served_sandboxes["alfacrm"].add_account(DEFAULT_EMAIL, "sandbox-api-key-5f2b9c0e7a1d")  # as it was


def test_a_new_uis_account_needs_the_components_the_settings_switch_on(school, served_sandboxes, lambda_context):
    """PUT /credentials checks the UIS components as creating the school did: a new token of an account
    without «Воронки продаж» is refused, and what is stored stays as it was."""
    iid = school["id"]
    secret = f"test/integrations/{iid}"
    before = sealed(secret)
    uis = {"api_url": served_sandboxes["uis_url"], "access_token": before.uis_access_token}
    served_sandboxes["uis"].set_components(disabled=["sales_funnel"])
    try:
        status, body = call(lambda_context, "PUT", f"/integrations/{iid}/credentials", {"uis": uis})
    finally:
        served_sandboxes["uis"].set_components()

    assert status == 422, body
    assert (body["error"]["code"], body["error"]["field"]) == ("uis_component_missing", "uis")
    assert "Воронки продаж" in body["error"]["message"]
    assert sealed(secret) == before


def test_removing_a_school_removes_its_secrets_every_item_it_owns_and_its_dead_letters(
    school, served_sandboxes, lambda_context, store, sqs, queue_urls, secretsmanager, dynamodb, table_names
):
    iid = school["id"]
    other = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))[1]["id"]
    call(lambda_context, "POST", f"/integrations/{iid}/access")
    store.texts.remember(iid, "CHAT#5", ChatProgress(customer_id=9))
    store.integrations.park(iid, ParkedItem(kind="text_event", key="chat5#lost_chat", payload={}, error="x"))
    store.integrations.park(other, ParkedItem(kind="text_event", key="chat5#lost_chat", payload={}, error="x"))
    ev = ExecutionEvent(at="2026-01-01T00:00:00.000Z", source="uis", kind="text_event", key="k", outcome="done")
    store.events.append({iid: [ev], other: [ev]})
    store.integrations.put_cached(iid, "branches", [{"id": 1}], 300)
    for owner in (iid, other):  # both schools due in the scheduler's work index
        store.work.schedule(owner, "upload", datetime(2026, 1, 1, tzinfo=UTC))
    for owner in (iid, other):
        body = json.dumps({"integration_id": owner, "event": "lost_chat", "payload": {"visitor_phone": "79161234567"}})
        sqs.send_message(QueueUrl=queue_urls["TextEventsDLQ"], MessageBody=body)

    status, body = call(lambda_context, "DELETE", f"/integrations/{iid}")

    assert status == 200, body
    removed = body["removed"]
    assert body["complete"] is True
    assert removed["integration"] == 1 and removed["secrets"] == 1 and removed["dead_letters"] == 1
    for kind in ("chats", "parked", "events", "caches", "access_token", "work_index"):
        assert removed[kind] >= 1, (kind, removed)
    # nothing of it is left: the partition is empty, the secret and the dead letter gone
    left = dynamodb.query(
        TableName=table_names["StateTable"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"INT#{iid}"}},
    )
    assert left["Items"] == []  # its sealed credentials (CREDENTIALS) too
    with pytest.raises(NotFound):
        sealed(f"test/integrations/{iid}")
    assert [s["Name"] for s in secretsmanager.list_secrets()["SecretList"]] == ["test/admin-token"]
    assert call(lambda_context, "GET", f"/integrations/{iid}")[0] == 404
    assert hook(lambda_context, school["webhooks"]["alfacrm"]) == 404
    # no tick finds it any more: its work-index entries are gone, the other school's stays
    due = store.work.due("upload", None, until="2026-01-02T00:00:00Z", limit=100)[0]
    due += store.work.due("upload", shard_of(iid), until="2026-01-02T00:00:00Z", limit=100)[0]
    due += store.work.due("upload", shard_of(other), until="2026-01-02T00:00:00Z", limit=100)[0]
    assert {e.integration_id for e in due} == {other}
    # the other school keeps everything, its dead letter included
    assert [p.key for p in store.integrations.parked(other)] == ["chat5#lost_chat"]
    assert len(store.events.recent(other, 10)) == 1
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_urls["TextEventsDLQ"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 1


def test_the_sweep_after_a_removal_takes_what_a_worker_wrote_meanwhile(school, lambda_context, store, sqs, queue_urls):
    iid = school["id"]
    assert call(lambda_context, "DELETE", f"/integrations/{iid}")[0] == 200
    # a worker still holding the record (another warm container) writes after the removal
    store.texts.remember(iid, "CHAT#7", ChatProgress(customer_id=3))
    jobs = load_handler("jobs")
    got = sqs.receive_message(QueueUrl=queue_urls["JobsQueue"], MaxNumberOfMessages=10, AttributeNames=["All"])
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
        for m in got["Messages"]
    ]
    assert [json.loads(r["body"])["job"] for r in records] == ["purge"]
    assert jobs({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert store.texts.chat_progress(iid, 7) == ChatProgress()


def test_school_tokens_reach_the_new_routes_of_their_own_integration_only(school, served_sandboxes, lambda_context):
    iid = school["id"]
    other = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))[1]["id"]
    mine = school_token(lambda_context, iid)
    routes = [
        ("GET", "health", None),
        ("GET", "events", None),
        ("POST", "replay", {"keys": ["nothing"]}),
        ("POST", "webhooks/rotate", None),
        ("PUT", "credentials", {}),
    ]
    for method, tail, body in routes:
        status, reply = call(lambda_context, method, f"/integrations/{other}/{tail}", body, headers=mine)
        assert status == 403, (method, tail, reply)
        status, reply = call(lambda_context, method, f"/integrations/{iid}/{tail}", body, headers=mine)
        assert status != 403, (method, tail, reply)
    assert call(lambda_context, "DELETE", f"/integrations/{other}", headers=mine)[0] == 403
    status, reply = call(lambda_context, "DELETE", f"/integrations/{iid}", headers=mine)
    assert status == 403 and "operator" in reply["error"]["message"]
    assert call(lambda_context, "GET", f"/integrations/{iid}", headers=AUTH)[0] == 200
