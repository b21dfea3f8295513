"""Through the local stack, whose queue consumers run with the template's concurrency (worker threads, a FIFO
group per school): one school's hung UIS does not delay another school's upload."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from connector.runtime import container

from tools.localstack.demo_setup import DEMO_SETTINGS
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL
from tools.sandboxes.common import ServedApp
from tools.sandboxes.uis import UisSandbox

pytestmark = pytest.mark.e2e
HANG_SECONDS = 20.0
LATENCY = 0.15  # every UIS call of the healthy school takes this long (a real account's round trip)


class SlowUis(UisSandbox):
    """A UIS account at a realistic distance: each call answers after `LATENCY` seconds."""

    def rpc(self, body: Any) -> tuple[int, Any]:
        time.sleep(LATENCY)
        return super().rpc(body)


def second_school(stack: Any, uis_url: str) -> str:
    """A second school on the same AlfaCRM account, with its own UIS account, created through the admin API."""
    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.url, headers=auth, timeout=30) as api:
        created = api.post(
            "/integrations",
            json={
                "name": "Школа №2",
                "alfacrm": {
                    "hostname": stack.sandboxes["alfacrm"].url,
                    "email": DEFAULT_EMAIL,
                    "api_key": DEFAULT_API_KEY,
                    "branch_id": 1,
                },
                "uis": {"api_url": f"{uis_url}/v2.0", "access_token": "token-b"},
            },
        ).json()
        assert api.put(f"/integrations/{created['id']}/settings", json=DEMO_SETTINGS).status_code == 200
        assert api.post(f"/integrations/{created['id']}/activate").status_code == 200
    stack.sandboxes["alfacrm"].sandbox.add_webhook(1, created["webhooks"]["alfacrm"])
    return str(created["id"])


def test_a_hung_school_does_not_delay_another_schools_upload(start_local_stack: Callable[..., Any]) -> None:
    stack = start_local_stack(sandbox=True)
    # (the uploader runs with the template's concurrency, capped by LOCAL_MAX_CONCURRENCY)
    hung_uis = stack.sandboxes["uis"].sandbox
    healthy_uis = SlowUis(access_tokens=["token-b"], sender=lambda *args: 200)
    served = ServedApp(healthy_uis.app).start()
    try:
        school_a, school_b = stack.demo["id"], second_school(stack, served.url)
        alfacrm = stack.sandboxes["alfacrm"].sandbox
        pending = container().store.deals

        def upload_delay(n: int) -> float:
            """A new lead reaches both schools' deal workers; then the upload tick: seconds until B's UIS has it."""
            lead = alfacrm.ui_create_customer({"name": f"Лид {n}", "is_study": 0, "lead_status_id": 1})
            ext_id = f"customer-{lead['id']}"
            deadline = time.monotonic() + 30
            while not all(
                (f, ext_id) in pending.pending_keys(iid) for iid in (school_a, school_b) for f in ("first_sale",)
            ):
                assert time.monotonic() < deadline, "the deal workers did not mark both deals pending"
                time.sleep(0.02)
            time.sleep(1.1)  # ticks are a minute apart: the previous flush's "look again" is due by then
            started = time.monotonic()
            stack.invoke_schedule("DealUploadSchedule")
            while ext_id not in healthy_uis.deals:
                assert time.monotonic() - started < HANG_SECONDS, "B's upload waited for A"
                time.sleep(0.005)
            return time.monotonic() - started

        upload_delay(0)  # B's first flush creates its funnels in UIS: not a normal upload
        stack.wait_idle(timeout=30)
        normal = [upload_delay(n) for n in range(1, 6)]
        stack.wait_idle(timeout=30)
        # When school A's UIS hangs: every call sleeps 20 s before it is answered
        hung_uis.fail("hang", seconds=HANG_SECONDS, count=1000)
        beside_hung = [upload_delay(n) for n in range(6, 11)]
        # Then B's uploads take no longer than 1.2x their normal time (A's worker hangs on its own)
        ratio = statistics.median(beside_hung) / statistics.median(normal)
        assert ratio <= 1.2, (normal, beside_hung)
        # And A is still stuck on its first hung call (its work holds only its own message group)
        assert not any(f"customer-{alfacrm.customers[max(alfacrm.customers)]['id']}" in d for d in hung_uis.deals)
    finally:
        hung_uis.release()
        served.stop()
