"""Issue 9, defect 4: `PUT /settings` has one outcome when the UIS funnel sync fails after the save.

Chosen: the settings are saved (what the school typed is not lost) and the sync is pending: the reply is 200
with the stored document, `GET /integrations/{id}` and the page show `funnel_sync.state = "pending"` with the
error, and the next flush retries the sync (with backoff) until UIS takes it. The other outcome, "not saved",
would have to undo a write after a remote failure and would lose the school's typing for a UIS outage.
"""

from __future__ import annotations

import pytest

from tests.api.test_admin_api import call, create_body
from tests.handlers import load_handler

uploader = load_handler("deal_uploader")


@pytest.fixture()
def active(served_sandboxes, lambda_context):
    status, body = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))
    assert status == 201, body
    assert call(lambda_context, "POST", f"/integrations/{body['id']}/activate")[0] == 200
    return body["id"]


def _first_sale_stages(uis) -> list[str]:
    [funnel] = [f for f in uis.state()["funnels"] if f.get("ext_id") == "first_sale"]
    return list(funnel["stages"])


def test_a_failed_funnel_sync_after_a_save_keeps_the_settings_and_shows_the_sync_pending(
    active, served_sandboxes, lambda_context
):
    uis = served_sandboxes["uis"]
    statuses = call(lambda_context, "GET", f"/integrations/{active}/alfacrm/lead-statuses")[1]["items"]
    chosen = statuses[1]["id"]
    assert str(chosen) in _first_sale_stages(uis)  # an ordinary stage before the change
    settings = {"deals": {"first_sale": {"success_status_ids": [chosen], "failure_status_ids": []}}}

    # When UIS fails the funnel sync that follows the save
    uis.fail("error", count=1, method="get.sales_funnel", code=-32008, mnemonic="component_disabled")
    status, body = call(lambda_context, "PUT", f"/integrations/{active}/settings", settings)

    # Then the reply is the stored document, and the integration shows the sync pending with its error
    assert status == 200, body
    assert body["deals"]["first_sale"]["success_status_ids"] == [chosen]
    shown = call(lambda_context, "GET", f"/integrations/{active}")[1]
    assert shown["settings"]["deals"]["first_sale"]["success_status_ids"] == [chosen]
    assert shown["funnel_sync"]["state"] == "pending"
    assert "component_disabled" in shown["funnel_sync"]["error"]
    assert str(chosen) in _first_sale_stages(uis)  # UIS still has the old stages

    # When the uploader runs (UIS is back), the sync is retried: UIS gets the new stages, nothing is pending
    assert uploader({"source": "aws.scheduler"}, lambda_context)
    shown = call(lambda_context, "GET", f"/integrations/{active}")[1]
    assert shown["funnel_sync"] is None
    assert str(chosen) not in _first_sale_stages(uis)


def test_a_sync_that_keeps_failing_is_retried_with_backoff_not_every_minute(active, served_sandboxes, lambda_context):
    uis = served_sandboxes["uis"]
    statuses = call(lambda_context, "GET", f"/integrations/{active}/alfacrm/lead-statuses")[1]["items"]
    settings = {"deals": {"first_sale": {"success_status_ids": [statuses[2]["id"]], "failure_status_ids": []}}}
    uis.fail("error", count=2, method="get.sales_funnel", code=-32008, mnemonic="component_disabled")
    assert call(lambda_context, "PUT", f"/integrations/{active}/settings", settings)[0] == 200

    uploader({"source": "aws.scheduler"}, lambda_context)  # the retry fails too
    pending = call(lambda_context, "GET", f"/integrations/{active}")[1]["funnel_sync"]
    assert pending["attempts"] == 2 and pending["retry_at"] > pending["since"]
    spent = uis.state()["points_spent"]
    uploader({"source": "aws.scheduler"}, lambda_context)  # a minute has not passed: no UIS call
    assert uis.state()["points_spent"] == spent
    assert call(lambda_context, "GET", f"/integrations/{active}")[1]["funnel_sync"]["attempts"] == 2
