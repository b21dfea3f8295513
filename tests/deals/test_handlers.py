"""The deal handlers invoked with the sample events in events/, against served sandboxes and moto: the
same code path as on Lambda (credentials from the KMS-sealed item, real HTTP to the accounts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from connector.deals.views import deals_view
from connector.intake import hash_secret
from connector.runtime import Runtime, install
from connector.settings import Credentials, Integration, SettingsDocument

from tests.conftest import runtime
from tests.deals.conftest import DEAL_SETTINGS
from tests.handlers import load_handler
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox
from tools.sandboxes.common import ServedApp
from tools.sandboxes.uis import DEFAULT_TOKEN, UisSandbox

EVENTS = Path(__file__).resolve().parents[2] / "events"
INTEGRATION_ID = "0a1b2c3d"  # the id the sample events name


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


@pytest.fixture
def accounts(container_runtime: Runtime) -> Iterator[tuple[AlfaCrmSandbox, UisSandbox]]:
    # the container's runtime (a fresh one per test) has ALFACRM_RPS=0: no spacing to slow the suite down
    alfacrm, uis = AlfaCrmSandbox(), UisSandbox(sender=lambda *args: 200)
    served = [ServedApp(alfacrm.app).start(), ServedApp(uis.app).start()]
    # the customer the sample webhook moves to status 3, as AlfaCRM holds it after that change
    alfacrm.ui_update_customer(2, {"lead_status_id": 3})
    secrets = container_runtime.secrets
    integration = Integration(
        id=INTEGRATION_ID,
        name="Школа №1",
        alfacrm={"hostname": served[0].url, "email": DEFAULT_EMAIL, "branch_id": 1},
        uis={"api_url": f"{served[1].url}/v2.0"},
        active=True,
        secret_id=secrets.secret_name(INTEGRATION_ID),
        alfacrm_webhook_secret_hash=hash_secret("a" * 32),
        uis_webhook_secret_hash=hash_secret("u" * 32),
        settings=SettingsDocument.model_validate(DEAL_SETTINGS),
    )
    creds = Credentials(
        alfacrm_api_key=DEFAULT_API_KEY,
        uis_access_token=DEFAULT_TOKEN,
        alfacrm_webhook_secret="a" * 32,
        uis_webhook_secret="u" * 32,
    )
    secrets.store_credentials(INTEGRATION_ID, creds)
    container_runtime.store.integrations.create(integration)
    yield alfacrm, uis
    for app in served:
        app.stop()


def test_each_deal_handler_runs_its_sample_event(accounts, lambda_context, store):
    _alfacrm, uis = accounts
    # the deal worker: both records succeed, and the deals exist
    reply = load_handler("deal_worker")(event("deal_worker_sqs.json"), lambda_context)
    assert reply == {"batchItemFailures": []}
    deals = {d["ext_id"]: d for d in deals_view(store, INTEGRATION_ID)}
    assert deals["customer-2"]["stage"] == "3"
    assert deals["customer-1"]["stage"] == "success" and deals["customer-1"]["revenue"] == 4500
    # the uploader: everything pending reaches UIS
    reply = load_handler("deal_uploader")(event("deal_uploader_schedule.json"), lambda_context)
    [report] = reply["integrations"]
    assert report["state"] == "uploaded" and report["parked"] == []
    assert {"customer-1", "customer-2"} <= set(uis.deals)
    # the reconciler: first run places the watermark and syncs funnels (already in place)
    reply = load_handler("reconciler")(event("reconciler_schedule.json"), lambda_context)
    assert reply["integrations"][0]["fed"] == 0 and reply["integrations"][0]["error"] is None


def test_a_failing_record_is_reported_alone_and_a_failing_batch_is_retried_whole(accounts, lambda_context):
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    alfacrm, _ = accounts
    sample = event("deal_worker_sqs.json")
    broken = json.loads(json.dumps(sample))
    broken["Records"][1]["body"] = "not json"  # a message no retry can fix: it ends in the DLQ
    reply = load_handler("deal_worker")(broken, lambda_context)
    assert reply == {"batchItemFailures": [{"itemIdentifier": sample["Records"][1]["messageId"]}]}
    # AlfaCRM refusing every record (the API key was revoked): Powertools fails the invocation and SQS
    # retries the batch, then the DLQ keeps it for a replay once the credentials are fixed
    alfacrm.accounts[DEFAULT_EMAIL.lower()].api_key = "revoked"
    install(runtime())  # a new container: no AlfaCRM token cached from before the revocation
    fresh = json.loads(json.dumps(sample))
    for record in fresh["Records"]:  # new deliveries (a processed one is answered by the idempotency table)
        record["body"] = json.dumps({**json.loads(record["body"]), "replay": "after-revocation"})
    with pytest.raises(BatchProcessingError):
        load_handler("deal_worker")(fresh, lambda_context)
