"""End to end through the local stack: a manager's change in the AlfaCRM sandbox → its webhook into
`POST /hooks/alfacrm/{id}/{secret}` → the deal queue → the deal worker → `DealUploadSchedule` → UIS sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_alfacrm_changes_become_deals_in_uis(start_local_stack: Callable[..., Any]) -> None:
    stack = start_local_stack(sandbox=True)
    alfacrm = stack.sandboxes["alfacrm"].sandbox
    uis = stack.sandboxes["uis"].sandbox
    # Given a lead who converts to a client and pays twice, entered by a manager in AlfaCRM
    lead = alfacrm.ui_create_customer(
        {"name": "Зайцева Ольга", "is_study": 0, "lead_status_id": 1, "phone": ["+7 916 700-00-01"]}
    )
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 3})
    alfacrm.ui_update_customer(lead["id"], {"is_study": 1})
    alfacrm.ui_create_pay({"customer_id": lead["id"], "income": "5200", "teacher_id": 2})
    extra = alfacrm.ui_create_pay({"customer_id": lead["id"], "income": "900"})
    assert all(d["status"] == 200 for d in alfacrm.state()["deliveries"])
    stack.wait_idle(timeout=30)
    # When the upload schedule fires
    reply = httpx.post(f"{stack.url}/_local/schedules/DealUploadSchedule", timeout=60)
    assert reply.status_code == 200, reply.text
    # Then UIS holds the first sale won with its revenue and the extra payment as an upsell
    first = uis.deals[f"customer-{lead['id']}"]
    assert [p["stage_ext_id"] for p in first["path"] if not p["is_generated"]][-1] == "success"
    assert first["revenue"] == 5200
    assert uis.contacts[f"customer-{lead['id']}"]["phone_numbers"] == ["79167000001"]
    upsell = uis.deals[f"pay-{extra['id']}"]
    assert (upsell["stage_ext_id"], upsell["revenue"]) == ("paid", 900)
    # And the admin API shows them as uploaded
    deals = httpx.get(
        f"{stack.url}/integrations/{stack.demo['id']}/deals",
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=10,
    ).json()["items"]
    mine = {d["ext_id"]: d for d in deals if d["ext_id"] in (f"customer-{lead['id']}", f"pay-{extra['id']}")}
    assert {d["upload"]["state"] for d in mine.values()} == {"uploaded"}
