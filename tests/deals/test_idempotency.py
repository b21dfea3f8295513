"""A webhook delivered twice costs one AlfaCRM read: the second delivery is answered from the idempotency table."""

from __future__ import annotations

import copy
import json

from connector.deals.views import deals_view

from tests.deals.test_handlers import INTEGRATION_ID, accounts, event  # noqa: F401  (fixture)
from tests.handlers import load_handler


def alfacrm_requests(sandbox) -> int:
    return sandbox.stats["requests"]


def test_a_repeated_delivery_reads_alfacrm_once_and_changes_nothing(accounts, lambda_context, store):  # noqa: F811
    alfacrm, _uis = accounts
    worker = load_handler("deal_worker")
    sqs_event = event("deal_worker_sqs.json")

    assert worker(sqs_event, lambda_context) == {"batchItemFailures": []}
    after_first = alfacrm_requests(alfacrm)
    deals_first = deals_view(store, INTEGRATION_ID)

    # the same deliveries again, with new SQS ids and receive times, as SQS or AlfaCRM would re-send them
    again = copy.deepcopy(sqs_event)
    for record in again["Records"]:
        record["messageId"] += "-again"
        body = json.loads(record["body"])
        body["received_at"] = "2030-01-01T00:00:00Z"
        record["body"] = json.dumps(body, ensure_ascii=False)
    assert worker(again, lambda_context) == {"batchItemFailures": []}
    assert alfacrm_requests(alfacrm) == after_first
    assert deals_view(store, INTEGRATION_ID) == deals_first


def test_a_replayed_event_runs_again(accounts, lambda_context):  # noqa: F811
    alfacrm, _uis = accounts
    worker = load_handler("deal_worker")
    sqs_event = event("deal_worker_sqs.json")
    worker(sqs_event, lambda_context)
    before = alfacrm_requests(alfacrm)
    replayed = copy.deepcopy(sqs_event)
    for record in replayed["Records"]:
        body = json.loads(record["body"])
        body["replay"] = "r1"
        record["body"] = json.dumps(body, ensure_ascii=False)
    assert worker(replayed, lambda_context) == {"batchItemFailures": []}
    assert alfacrm_requests(alfacrm) > before
