"""Create the demo integration wired to the sandboxes, through the public admin API only (contract.md).

Called by the local stack when SANDBOX=1, after it serves: a newcomer gets a working integration whose
AlfaCRM webhooks and UIS notifications already point at the local stack.
"""

from __future__ import annotations

from typing import Any

import httpx

from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL
from tools.sandboxes.uis import DEFAULT_TOKEN, EVENTS

DEMO_NAME = "Демо-школа (sandbox)"
ALFACRM_BRANCHES = (1, 2)  # the sandbox seeds two branches; AlfaCRM configures webhooks per branch

# Matches the sandbox's seeded look-ups: lead status 4 "Оплатил" is a sale, 5 "Отказ" a failure;
# lead source 2 is "Онлайн-чат"; `custom_utm_source` is one of the AlfaCRM sandbox's custom fields.
DEMO_SETTINGS: dict[str, Any] = {
    "deals": {
        "enabled": True,
        "first_sale": {"success_status_ids": [4], "failure_status_ids": [5]},
        "upsell": {"enabled": True},
    },
    "texts": {
        "branch_id": 1,
        "lead_defaults": {"lead_status_id": 1, "lead_source_id": 2, "assigned_id": None},
        "requests": {
            "enabled": True,
            "filters": {"sites": [], "form_types": []},
            "create_lead": True,
            "extra_fields": [{"source": "utm_source", "target": "custom_utm_source", "update_always": False}],
        },
        "chats": {
            "enabled": True,
            "filters": {"sites": [], "channels": [], "tags": []},
            "create_lead": {"enabled": True, "on": "chat_finished", "tags": []},
            "lost_chat_task": {
                "enabled": True,
                "title": "Потерянный чат: {visitor_name} {visitor_phone}",
                "assigned_ids": [],
                "due_hours": 24,
            },
            "without_contacts": False,
            "extra_fields": [],
        },
    },
}


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"demo setup: {what} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def setup_demo(base_url: str, admin_token: str, alfacrm_url: str, uis_url: str) -> dict[str, Any]:
    """Create, configure and activate the demo integration; point both sandboxes at its webhook URLs.

    Returns the `POST /integrations` reply (`id`, `webhooks`, …) with `active` updated.
    """
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=base_url, headers=auth, timeout=30.0) as api:
        created = _check(
            api.post(
                "/integrations",
                json={
                    "name": DEMO_NAME,
                    # a scheme and port are accepted because the local stack allows insecure hosts
                    "alfacrm": {
                        "hostname": alfacrm_url,
                        "email": DEFAULT_EMAIL,
                        "api_key": DEFAULT_API_KEY,
                        "branch_id": 1,
                    },
                    "uis": {"api_url": f"{uis_url}/v2.0", "access_token": DEFAULT_TOKEN},
                    "timezone": "Europe/Moscow",
                },
            ),
            "POST /integrations",
        )
        integration_id = created["id"]
        _check(api.put(f"/integrations/{integration_id}/settings", json=DEMO_SETTINGS), "PUT settings")
        activated = _check(api.post(f"/integrations/{integration_id}/activate"), "POST activate")
        created["active"] = activated.get("active", True)

    with httpx.Client(timeout=10.0) as http:
        for branch_id in ALFACRM_BRANCHES:
            _check(
                http.post(
                    f"{alfacrm_url}/_sandbox/webhooks",
                    json={"branch_id": branch_id, "url": created["webhooks"]["alfacrm"]},
                ),
                "AlfaCRM sandbox webhooks",
            )
        for event in EVENTS:
            _check(
                http.post(
                    f"{uis_url}/_sandbox/notifications", json={"event": event, "url": created["webhooks"]["uis"]}
                ),
                "UIS sandbox notifications",
            )
    return created
