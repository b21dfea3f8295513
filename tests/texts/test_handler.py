"""The text worker's Lambda handler, invoked with events/text_worker_sqs.json: real store, secrets, clients."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from connector.runtime import Runtime
from connector.settings import Credentials, Integration

from tests.handlers import load_handler
from tests.texts.conftest import texts_settings
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox
from tools.sandboxes.common import ServedApp
from tools.sandboxes.uis import DEFAULT_TOKEN, UisSandbox

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "text_worker_sqs.json").read_text())


@pytest.fixture
def served():
    alfacrm, uis = AlfaCrmSandbox(), UisSandbox(sender=lambda *a: 200)
    apps = [ServedApp(alfacrm.app).start(), ServedApp(uis.app).start()]
    yield alfacrm, uis, apps[0].url, f"{apps[1].url}/v2.0"
    for app in apps:
        app.stop()


def add_integration(rt: Runtime, iid: str, alfacrm_url: str, uis_url: str, **requests) -> None:
    name = rt.secrets.store_credentials(
        iid,
        Credentials(
            alfacrm_api_key=DEFAULT_API_KEY,
            uis_access_token=DEFAULT_TOKEN,
            alfacrm_webhook_secret="a" * 32,
            uis_webhook_secret="b" * 32,
        ),
    )
    rt.store.integrations.create(
        Integration(
            id=iid,
            name="Школа",
            alfacrm={"hostname": alfacrm_url, "email": DEFAULT_EMAIL, "branch_id": 1},
            uis={"api_url": uis_url},
            active=True,
            secret_id=name,
            alfacrm_webhook_secret_hash="x",
            uis_webhook_secret_hash="y",
            settings=texts_settings(requests=requests),
        )
    )


def test_sample_event_comments_on_the_customer_and_reports_no_failure(served, lambda_context, container_runtime):
    # Given the integration of the sample event, and AlfaCRM already knowing the visitor's phone
    alfacrm, _uis, alfacrm_url, uis_url = served
    known = alfacrm.ui_create_customer(
        {"name": "Ковалёва Ирина", "phone": ["+7 (926) 123-45-01"], "is_study": 0}, branch_id=1
    )
    add_integration(container_runtime, "int-demo-01", alfacrm_url, uis_url)
    # When the handler gets the sample SQS event
    reply = load_handler("text_worker")(copy.deepcopy(EVENT), lambda_context)
    # Then no failed record, and the request is on the customer's card
    assert reply == {"batchItemFailures": []}
    [comment] = alfacrm.comments_for(known["id"])
    assert "Хочу записать сына" in comment and "Поисковый запрос: английский для детей пробный урок" in comment


def test_a_retryable_failure_fails_only_its_record(served, lambda_context, container_runtime):
    # Given two integrations: the second filters by request type, so it must ask UIS, which is down
    _alfacrm, uis, alfacrm_url, uis_url = served
    add_integration(container_runtime, "int-demo-01", alfacrm_url, uis_url, enabled=False)
    add_integration(
        container_runtime, "int-demo-02", alfacrm_url, uis_url, filters={"sites": [], "form_types": ["standard"]}
    )
    uis.fail("http", count=5, http_status=503)
    event = copy.deepcopy(EVENT)
    second = copy.deepcopy(event["Records"][0])
    body = json.loads(second["body"])
    body["integration_id"] = "int-demo-02"
    second["body"], second["messageId"] = json.dumps(body, ensure_ascii=False), "second-message"
    event["Records"].append(second)
    # When the batch is handled
    reply = load_handler("text_worker")(event, lambda_context)
    # Then only the second record goes back to the queue
    assert reply == {"batchItemFailures": [{"itemIdentifier": "second-message"}]}
