"""The operator's tools through the local stack against the sandboxes (issue 9.10-9.13): a webhook for a
customer AlfaCRM does not list yet is parked and shows in health and the execution log, is replayed by its
key once AlfaCRM has the customer, the webhook URLs are rotated, the logins checked, and the school removed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _webhook(customer_id: int) -> dict[str, Any]:
    return {
        "branch_id": 1,
        "event": "update",
        "entity": "Customer",
        "entity_id": customer_id,
        "fields_old": {"lead_status_id": 1},
        "fields_new": {"lead_status_id": 3},
        "fields_rel": [],
        "user_id": 2,
        "datetime": "2026-11-25 10:15:00",
    }


def test_health_events_replay_by_key_rotation_and_removal_in_the_local_stack(
    start_local_stack: Callable[..., Any],
) -> None:
    stack = start_local_stack(sandbox=True)
    alfacrm = stack.sandboxes["alfacrm"].sandbox
    iid = stack.demo["id"]
    admin = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_token}"}, timeout=60)
    hooks = admin.get(f"/integrations/{iid}/webhooks").json()

    # Given a webhook about a customer AlfaCRM does not list (yet): the deal worker parks it
    upcoming = alfacrm._ids["customer"] + 1
    assert httpx.post(hooks["alfacrm"], json=_webhook(upcoming), timeout=10).status_code == 200
    stack.wait_idle(timeout=30)
    [parked] = [p for p in admin.get(f"/integrations/{iid}/parked").json()["items"] if p["kind"] == "deal_event"]
    # Then the execution log says why, and health counts it beside the webhook's time
    events = admin.get(f"/integrations/{iid}/events?limit=20").json()["items"]
    mine = [e for e in events if e["key"] == parked["key"]]
    assert mine and mine[0]["outcome"] == "parked" and "not_listed" in (mine[0]["reason"] or ""), events
    health = admin.get(f"/integrations/{iid}/health").json()
    assert health["parked"] >= 1 and health["last_alfacrm_webhook_at"] is not None, health

    # When the customer exists and that one item is replayed by its key, it is done and no longer parked
    created = alfacrm.ui_create_customer(
        {"name": "Лебедева Анна", "is_study": 0, "lead_status_id": 3, "phone": ["+7 916 700-00-09"]}
    )
    assert created["id"] == upcoming
    stack.wait_idle(timeout=30)
    reply = admin.post(f"/integrations/{iid}/replay", json={"keys": [f"deal_event#{parked['key']}"]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["replayed"]["deal_event"] == 1
    stack.wait_idle(timeout=30)
    keys = [p["key"] for p in admin.get(f"/integrations/{iid}/parked").json()["items"]]
    assert parked["key"] not in keys
    outcomes = [
        e["outcome"] for e in admin.get(f"/integrations/{iid}/events").json()["items"] if e["key"] == parked["key"]
    ]
    assert outcomes[0] == "done", outcomes  # newest first

    # Rotation: the old URL stops at once, the new one works
    rotated = admin.post(f"/integrations/{iid}/webhooks/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["webhooks"]
    assert httpx.post(hooks["alfacrm"], json=_webhook(upcoming), timeout=10).status_code == 404
    assert httpx.post(new["alfacrm"], json=_webhook(upcoming), timeout=10).status_code == 200
    stack.wait_idle(timeout=30)

    # The logins tried now against the sandboxes
    checked = admin.get(f"/integrations/{iid}/health?check=true").json()
    assert checked["credentials"]["alfacrm"]["state"] == "ok" and checked["credentials"]["uis"]["state"] == "ok"

    # Removal: what was removed is answered, the school and its URLs are gone, the jobs worker's sweep runs
    removed = admin.delete(f"/integrations/{iid}")
    assert removed.status_code == 200, removed.text
    body = removed.json()
    assert body["complete"] is True and body["removed"]["integration"] == 1 and body["removed"]["events"] >= 1
    stack.wait_idle(timeout=30)
    assert admin.get(f"/integrations/{iid}").status_code == 404
    assert admin.get(f"/integrations/{iid}/health").status_code == 404
    assert httpx.post(new["alfacrm"], json=_webhook(upcoming), timeout=10).status_code == 404
