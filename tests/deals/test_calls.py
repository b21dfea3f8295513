"""Issue 12.5, calls at the floor: what one AlfaCRM webhook costs in DynamoDB requests through the deal worker
(the handler as on Lambda, moto, the served sandboxes): the state and the idempotency record read in one
batch, the account's request budget, the customer's deals, one transaction of every write."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from connector.deals.views import deals_view
from connector.deals.worker import handle_deal_event_once
from connector.retry import ChainedLimiter
from connector.runtime import Runtime
from connector.store import Store
from connector.store.deals import DealStore
from connector.store.ratelimit import SharedWindowLimiter
from connector.store.work import AT_ONCE

from tests.conftest import runtime
from tests.deals.builders import message
from tests.deals.test_handlers import INTEGRATION_ID, accounts, event  # noqa: F401  (fixture)
from tests.deals.test_worker import history
from tests.handlers import load_handler


@pytest.fixture
def dynamodb_calls(container_runtime: Runtime) -> Iterator[list[str]]:
    """Every DynamoDB request the container's runtime makes (both of its handles), by operation."""
    seen: list[str] = []
    clients = [container_runtime.aws.dynamodb.meta.client, container_runtime.aws.dynamodb_client]

    def count(event_name: str, **_: Any) -> None:
        seen.append(event_name.rsplit(".", 1)[-1])

    for client in clients:
        client.meta.events.register("before-call.dynamodb", count)
    yield seen
    for client in clients:
        client.meta.events.unregister("before-call.dynamodb", count)


def deliveries(bodies: list[dict[str, Any]], template: dict[str, Any]) -> dict[str, Any]:
    record = template["Records"][0]
    records = [{**copy.deepcopy(record), "messageId": f"m{i}", "body": json.dumps(b)} for i, b in enumerate(bodies)]
    return {"Records": records}


def pay_webhook(alfacrm: Any, customer_id: int, income: str) -> dict[str, Any]:
    pay = alfacrm.ui_create_pay({"customer_id": customer_id, "income": income, "document_date": "2025-03-20"})
    fields = {"customer_id": str(customer_id), "income": income, "branch_id": 1}
    return {
        "integration_id": INTEGRATION_ID,
        "received_at": "2025-03-20T09:00:00Z",
        "event": {"event": "create", "entity": "Pay", "entity_id": pay["id"], "fields_old": [], "fields_new": fields,
                  "user_id": 2, "datetime": "2025-03-20 12:00:00"},
    }  # fmt: skip


def test_a_deal_webhook_costs_at_most_four_dynamodb_requests_and_a_duplicate_one(
    accounts,  # noqa: F811
    lambda_context,
    store,
    dynamodb_calls,
    container_runtime,
):
    """Given a warm worker (the sample events processed: its token, look-ups and integration record), when
    three clients pay again (upsell deals) in one SQS batch, then the worker makes at most 4 DynamoDB requests
    per webhook, plus the one execution-log write of the invocation (per school, `connector.eventlog`); the
    same webhook delivered again costs one request per delivery and no AlfaCRM read. The school's upload entry,
    settled since the warm-up, is marked again by the first deal turning pending, inside that transaction."""
    alfacrm, _ = accounts
    # no 429 for the warm-up's burst (a retried read is a second request, and a second budget slot)
    alfacrm.configure({"burst_limit": 1000})
    # the account-wide AlfaCRM budget on, as in production (the suite runs without): a request each read
    rt = container_runtime
    rt.alfacrm_limiter = ChainedLimiter(rt.alfacrm_spacing, SharedWindowLimiter(rt.store.table, 100))
    sample = event("deal_worker_sqs.json")
    worker = load_handler("deal_worker")
    assert worker(sample, lambda_context) == {"batchItemFailures": []}
    webhooks = [pay_webhook(alfacrm, customer, income) for customer, income in ((1, "3000"), (2, "3100"), (1, "3200"))]
    steady = deliveries(webhooks, sample)
    rt.store.work.remove(INTEGRATION_ID, "upload")  # the uploader found nothing pending (the mark is due again)

    dynamodb_calls.clear()
    assert worker(steady, lambda_context) == {"batchItemFailures": []}
    assert len(dynamodb_calls) <= 4 * len(webhooks) + 1, dynamodb_calls
    assert dynamodb_calls.count("UpdateItem") == len(webhooks)  # the budget's slot per AlfaCRM read
    entry = store.work.get(INTEGRATION_ID, "upload")
    assert entry is not None and entry.due == AT_ONCE  # the pending deals made the school due
    # the payments count (deals carry them): nothing was skipped to get there
    revenues = [d["revenue"] for d in deals_view(store, INTEGRATION_ID)]
    assert {3000, 3100, 3200} <= set(revenues)

    dynamodb_calls.clear()
    reads = alfacrm.stats["requests"]
    again = copy.deepcopy(steady)
    for record in again["Records"]:
        record["messageId"] += "-again"
    assert worker(again, lambda_context) == {"batchItemFailures": []}
    assert dynamodb_calls.count("BatchGetItem") == len(webhooks)
    assert len(dynamodb_calls) <= len(webhooks) + 1  # and the invocation's execution-log write
    assert alfacrm.stats["requests"] == reads


# --- the unit of work's races -------------------------------------------------------------------------------
class DealsReadBeforeAnother(DealStore):
    """A deal store whose read of a customer's deals lets another delivery run right after it (once; the hook
    is shared by the unit of work's copies of this store)."""

    def __init__(self, table: Any, hook: list[Any]) -> None:
        super().__init__(table)
        self.hook = hook

    def get_deals(self, integration_id, keys):
        found = super().get_deals(integration_id, keys)
        if self.hook:
            self.hook.pop()()
        return found


def racing_runtime(store: Store, clients: Any, now: Any, meanwhile: Any) -> Runtime:
    racing = Store(store.table)
    racing.deals = DealsReadBeforeAnother(store.table, [meanwhile])
    return runtime(store=racing, clients=clients, now=now)


def test_a_delivery_that_loses_its_commit_to_another_delivery_of_the_same_webhook_writes_nothing_twice(
    alfacrm, captured, store, clients, now, rt, integration
):
    """Given two deliveries of one webhook in flight at once (SQS at-least-once), when the second commits while
    the first holds what it read, then the first's transaction fails on the idempotency record, writes
    nothing, and ends done: the deal has one history, and no further AlfaCRM read was made."""
    lead = alfacrm.ui_create_customer({"name": "Лена", "is_study": 0, "lead_status_id": 1})
    [body] = captured.take()
    reads: list[int] = []
    same = message(body)

    def meanwhile() -> None:
        reads.append(alfacrm.stats["customer/index"])
        handle_deal_event_once(rt, same)

    first = handle_deal_event_once(racing_runtime(store, clients, now, meanwhile), same)
    assert first.status == "done"
    assert alfacrm.stats["customer/index"] == reads[0] + 1  # the concurrent one's read; none again after it
    [deal] = [d for d in deals_view(store, INTEGRATION_ID) if d["ext_id"] == f"customer-{lead['id']}"]
    assert [s for s, _ in history(deal)] == ["1"]


def test_a_delivery_that_loses_a_race_on_the_snapshot_runs_again_without_reading_alfacrm_again(
    alfacrm, captured, deliver, store, clients, now, integration, clock
):
    """Given a customer's status change being processed, when another webhook of that customer commits first,
    then the first's transaction fails on the snapshot's version and the event runs again on the new state
    with the AlfaCRM read it made: both changes are in the deal, one AlfaCRM read for the event."""
    lead = alfacrm.ui_create_customer({"name": "Лена", "is_study": 0, "lead_status_id": 1})
    deliver(captured.take()[0])
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 3})
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"is_study": 1})
    status, converted = captured.take()
    before: list[int] = []

    def meanwhile() -> None:
        before.append(alfacrm.stats["customer/index"])
        deliver(converted)

    outcome = handle_deal_event_once(racing_runtime(store, clients, now, meanwhile), message(status))
    assert outcome.status == "done"
    assert alfacrm.stats["customer/index"] == before[0] + 1  # only the other webhook's read
    [deal] = [d for d in deals_view(store, INTEGRATION_ID) if d["ext_id"] == f"customer-{lead['id']}"]
    assert [s for s, _ in history(deal)] == ["1", "3", "success"]
