"""Every function traced as on Lambda, through the local stack: what X-Ray would keep holds no secret
(issue 9, defect 5), and each AWS call is one tests/stack/permissions.py grants the function (defect 6).

One run drives every function: the demo integration is created through the admin API, a lead converts and
pays in the AlfaCRM sandbox (webhooks → deal worker → uploader), the texts demo sends a request and chats
from the UIS sandbox (notifications → text worker, the chat poller), the reconciler runs, and the admin API
is read, replayed and refused, and the school removed (the jobs worker sweeps after it). Each invocation is
one segment, as on Lambda; the SDK's emitter keeps them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, REGION, STACK_NAME
from tests.stack.permissions import iam_actions, uses
from tests.xray import traced_invocations, xray_capture
from tools import demo_texts
from tools.sandboxes.alfacrm import DEFAULT_API_KEY
from tools.sandboxes.uis import DEFAULT_TOKEN

pytestmark = pytest.mark.e2e


@dataclass
class TracedRun:
    entities: dict[str, list[dict[str, Any]]]  # function → its segments and subsegments
    secrets: dict[str, str]  # what it is → the value that must not be traced
    phones: set[str]  # every phone number the run's customers and visitors have, as written and as digits


def _drive(stack: Any) -> dict[str, str]:
    iid = stack.demo["id"]
    admin = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_token}"}, timeout=60)
    hooks = admin.get(f"/integrations/{iid}/webhooks").json()
    # deals: a lead converts and pays; the AlfaCRM sandbox posts each change to the stack's webhook URL
    alfacrm = stack.sandboxes["alfacrm"].sandbox
    lead = alfacrm.ui_create_customer(
        {"name": "Зайцева Ольга", "is_study": 0, "lead_status_id": 1, "phone": ["+7 916 700-00-01"]}
    )
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 3})
    alfacrm.ui_update_customer(lead["id"], {"is_study": 1})
    alfacrm.ui_create_pay({"customer_id": lead["id"], "income": "5200", "teacher_id": 2})
    stack.wait_idle(timeout=60)
    assert httpx.post(f"{stack.url}/_local/schedules/DealUploadSchedule", timeout=120).status_code == 200
    # texts: a site request, two chats, a lost chat the poller finds
    demo_texts.run(stack, out=lambda line: None)
    assert httpx.post(f"{stack.url}/_local/schedules/ReconcileSchedule", timeout=120).status_code == 200
    # the admin API's other routes, and refusals on every API function
    for path in ("", "/deals", "/parked", "/alfacrm/lead-statuses", "/uis/sites"):
        assert admin.get(f"/integrations/{iid}{path}").status_code == 200, path
    assert admin.get("/integrations").status_code == 200
    assert admin.post(f"/integrations/{iid}/replay").status_code == 200
    # a school's own link (its token), the settings page, the widget loader, the API docs
    school = admin.post(f"/integrations/{iid}/access").json()
    school_api = {"Authorization": f"Bearer {school['token']}"}
    assert httpx.get(f"{stack.url}/integrations/{iid}", headers=school_api).status_code == 200
    for page in ("/ui/", f"/widget/alfacrm.js?integration={iid}", "/docs"):
        assert httpx.get(f"{stack.url}{page}", timeout=30).status_code == 200, page
    assert admin.put(f"/integrations/{iid}/settings", json={"deals": {"nope": 1}}).status_code == 422
    assert httpx.get(f"{stack.url}/integrations", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(hooks["alfacrm"] + "x", content=b"{}").status_code == 404
    assert httpx.post(hooks["alfacrm"], content=b'{"entity_id": Infinity}').status_code == 400
    assert httpx.post(hooks["uis"], content=b"[1]").status_code == 400
    secrets = {
        "admin token": stack.admin_token,
        "AlfaCRM API key": DEFAULT_API_KEY,
        "UIS access token": DEFAULT_TOKEN,
        "AlfaCRM webhook secret": hooks["alfacrm"].rsplit("/", 1)[1],
        "UIS webhook secret": hooks["uis"].rsplit("/", 1)[1],
    }
    secrets["school access token"] = school["token"]
    for n, token in enumerate(alfacrm.tokens):
        secrets[f"AlfaCRM session token {n}"] = token
    # last, the school's removal: its sweep for writes in flight runs in the jobs worker
    assert admin.get(f"/integrations/{iid}/health").status_code == 200
    assert admin.get(f"/integrations/{iid}/events").status_code == 200
    assert admin.delete(f"/integrations/{iid}").status_code == 200
    stack.wait_idle(timeout=60)
    return secrets


def _phones(stack: Any) -> set[str]:
    """The phones of the AlfaCRM sandbox's customers (the visitors' became customers too): each as written,
    as its 11 digits and as its 10 national digits."""
    out: set[str] = set()
    for customer in stack.sandboxes["alfacrm"].sandbox.state()["customers"]:
        for phone in customer.get("phone") or []:
            digits = re.sub(r"\D", "", str(phone))
            out |= {str(phone), digits, digits[-10:]} if len(digits) >= 10 else set()
    return out


@pytest.fixture(scope="module")
def traced_run(_aws_resources: Any) -> Iterator[TracedRun]:
    from connector.runtime import install

    from tests.conftest import runtime
    from tools.localstack import LocalStack

    with xray_capture() as emitter, traced_invocations():
        # a cold container inside the capture: clients made before it would not be instrumented (and those
        # made in it must not outlive it: the next test installs its own runtime)
        install(runtime())
        stack = LocalStack(
            stack_name=STACK_NAME, region=REGION, admin_token=ADMIN_TOKEN, sandbox=True, run_schedules=False
        )
        stack.start()
        try:
            secrets = _drive(stack)
            phones = _phones(stack)
        finally:
            stack.stop()
    yield TracedRun(emitter.by_function(), secrets, phones)


def test_every_function_was_traced_with_its_aws_calls(traced_run: TracedRun, template: Any) -> None:
    """Not a vacuous scan: each function left segments, and their AWS and HTTP calls are in them."""
    assert set(traced_run.entities) == set(template.functions)
    kinds = {(e.get("namespace"), e["name"]) for entities in traced_run.entities.values() for e in entities}
    assert {("aws", "dynamodb"), ("aws", "sqs"), ("aws", "kms")} <= kinds  # kms: the credentials' data key
    assert any(namespace == "remote" for namespace, _ in kinds)  # AlfaCRM and UIS calls (httpx)


def test_no_secret_reaches_xray(traced_run: TracedRun) -> None:
    """Annotations, metadata (handler replies and errors), subsegment names, URLs: nothing of a credential."""
    found = {
        f"{what} in a trace of {function}"
        for function, entities in traced_run.entities.items()
        for entity in entities
        for what, value in traced_run.secrets.items()
        if value in json.dumps(entity, ensure_ascii=False)
    }
    assert found == set()


def test_no_full_phone_number_reaches_xray(traced_run: TracedRun) -> None:
    assert len(traced_run.phones) >= 12  # the run's customers have phones: the scan is not empty
    found = {
        f"{phone} in a trace of {function}"
        for function, entities in traced_run.entities.items()
        for entity in entities
        for phone in traced_run.phones
        if phone in json.dumps(entity, ensure_ascii=False)
    }
    assert found == set()


def test_every_aws_call_is_one_the_functions_permissions_grant(traced_run: TracedRun) -> None:
    """What the code does, seen: each call of the run is in its function's entry of tests/stack/permissions.py
    (which tests/stack/test_template.py holds the template to), on the resource it names."""
    observed, unexpected = set(), set()
    for function, entities in traced_run.entities.items():
        allowed = uses(function)
        for entity in entities:
            if entity.get("namespace") != "aws":
                continue
            for action, resource in iam_actions(entity):
                observed.add((function, resource, action))
                if not any(_grants(granted, action) for granted in allowed.get(resource, ())):
                    unexpected.add((function, resource, action))
    assert len(observed) >= 30  # every function's reads and writes, not a handful
    assert unexpected == set()


def _grants(granted: str, action: str) -> bool:
    return granted == action or (granted.endswith("*") and action.startswith(granted[:-1]))
