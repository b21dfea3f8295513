"""Backfill and the work index through the admin API: activation enrols a school's jobs and starts its first
backfill; `POST|GET /integrations/{id}/backfill` (contract.md "Additions"); school tokens see only their own."""

from __future__ import annotations

import pytest
from connector import fanout
from connector.deals.backfill import backfill_job
from connector.models.work import WORK_MESSAGE
from connector.runtime import container

from tests.api.test_access import issue, school_auth, two_schools  # noqa: F401 - a fixture
from tests.api.test_admin_api import call, create_body


@pytest.fixture()
def school(served_sandboxes, lambda_context):
    status, body = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))
    assert status == 201, body
    return body["id"]


def test_activation_enrols_the_schools_jobs_and_starts_its_first_backfill(school, lambda_context):
    work = container().store.work
    assert [work.get(school, job) for job in ("poll", "reconcile", "backfill")] == [None, None, None]
    # When the school is activated
    assert call(lambda_context, "POST", f"/integrations/{school}/activate") == (200, {"active": True})
    # Then its reconciliation and its backfill are due now (the default settings poll no chats)
    assert work.get(school, "reconcile") is not None and work.get(school, "backfill") is not None
    status, progress = call(lambda_context, "GET", f"/integrations/{school}/backfill")
    assert status == 200 and progress["state"] == "running" and progress["done"] == 0
    # And polling is enrolled once the settings ask for it, gone when they stop
    settings = {"texts": {"chats": {"enabled": True, "lost_chat_task": {"enabled": True}}}}
    assert call(lambda_context, "PUT", f"/integrations/{school}/settings", settings)[0] == 200
    assert work.get(school, "poll") is not None
    assert call(lambda_context, "POST", f"/integrations/{school}/deactivate")[0] == 200
    assert [work.get(school, job) for job in ("poll", "reconcile")] == [None, None]


def test_a_backfill_runs_through_the_fan_out_chunk_after_chunk(school, lambda_context, sqs):
    rt = container()
    call(lambda_context, "POST", f"/integrations/{school}/activate")
    # When the backfill schedule ticks, the school's work item goes on the reconciler's queue
    assert fanout.tick(rt, "backfill", at=rt.now()).schools == 1
    url = rt.queues.work_queue_url("backfill")
    [message] = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
    assert message["Attributes"]["MessageGroupId"] == school
    # And a chunk with time for one page leaves the next chunk queued at once (the chain), the tick kept off
    budget = iter([300_000, 0])
    outcome = fanout.handle_work(
        rt,
        WORK_MESSAGE.validate_json(message["Body"]),
        runners={"backfill": backfill_job},
        remaining_ms=lambda: next(budget),
    )
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert outcome.status == "done" and outcome.detail["state"] == "running"
    [chained] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert fanout.tick(rt, "backfill", at=rt.now()).schools == 0  # leased while the chain runs
    # Then the next chunk finishes it, and the school leaves the backfill index
    outcome = fanout.handle_work(
        rt,
        WORK_MESSAGE.validate_json(chained["Body"]),
        runners={"backfill": backfill_job},
        remaining_ms=lambda: 300_000,
    )
    assert outcome.detail["state"] == "done" and outcome.status == "removed"
    _, progress = call(lambda_context, "GET", f"/integrations/{school}/backfill")
    assert progress["state"] == "done" and progress["done"] == progress["total"] > 0 and progress["eta_s"] is None


@pytest.mark.parametrize(
    "body, field",
    [
        ({"date_from": "2025-03-01", "date_to": "2025-01-01"}, "body"),
        ({"date_from": "01.03.2025"}, "date_from"),
        ({"date_from": "2025-02-30"}, "date_from"),
        ({"since": "2025-01-01"}, "since"),
    ],
)
def test_a_bad_date_range_is_a_422_naming_the_field_and_starts_nothing(school, lambda_context, body, field):
    call(lambda_context, "POST", f"/integrations/{school}/activate")
    container().store.backfill.save(school, container().store.backfill.get(school).model_copy(update={"state": "done"}))  # type: ignore[union-attr]
    status, reply = call(lambda_context, "POST", f"/integrations/{school}/backfill", body)
    assert status == 422, reply
    assert reply["error"]["code"] == "validation_failed" and reply["error"]["field"] == field
    assert call(lambda_context, "GET", f"/integrations/{school}/backfill")[1]["state"] == "done"


def test_a_backfill_with_a_range_answers_202_and_an_inactive_school_gets_a_422(school, lambda_context):
    status, reply = call(lambda_context, "POST", f"/integrations/{school}/backfill", {"date_from": "2025-01-01"})
    assert status == 422 and "activate" in reply["error"]["message"]
    call(lambda_context, "POST", f"/integrations/{school}/activate")
    container().store.backfill.save(school, container().store.backfill.get(school).model_copy(update={"state": "done"}))  # type: ignore[union-attr]
    status, reply = call(lambda_context, "POST", f"/integrations/{school}/backfill", {"date_from": "2025-01-01"})
    assert status == 202 and reply["state"] == "running" and set(reply) >= {"state", "done", "total", "eta_s"}
    assert container().store.backfill.get(school).range.date_from.isoformat() == "2025-01-01"  # type: ignore[union-attr]
    # (no body at all: the whole history)
    assert call(lambda_context, "POST", f"/integrations/{school}/backfill")[0] == 202


def test_a_school_token_reaches_its_own_backfill_only(two_schools, lambda_context):  # noqa: F811
    mine, other = two_schools
    _, body = issue(lambda_context, mine)
    me = school_auth(body["token"])
    assert call(lambda_context, "GET", f"/integrations/{mine}/backfill", headers=me)[0] == 200
    assert call(lambda_context, "GET", f"/integrations/{other}/backfill", headers=me)[0] == 403
    assert call(lambda_context, "POST", f"/integrations/{other}/backfill", headers=me)[0] == 403
