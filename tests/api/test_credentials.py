"""The secrets port: credentials sealed by the stack's KMS key in the integration's partition, remembered a
while per container, and the one-time move of a pre-KMS Secrets Manager secret (moto's KMS and Secrets
Manager)."""

from __future__ import annotations

import base64
import json

import pytest
from connector.errors import CredentialsUnreadable, NotFound
from connector.settings import Credentials

from tests.api.builders import ALFA_SECRET, UIS_SECRET, api_event, reply_json, stored_integration
from tests.conftest import ADMIN_TOKEN, runtime
from tests.handlers import load_handler

admin_api = load_handler("admin_api")
CREDS = Credentials(
    alfacrm_api_key="alfa-key-1", uis_access_token="uis-token-1", alfacrm_webhook_secret=ALFA_SECRET,
    uis_webhook_secret=UIS_SECRET,
)  # fmt: skip


def old_secret(secretsmanager, integration, creds: Credentials = CREDS) -> None:
    """What an integration created before the KMS items has: a Secrets Manager secret under its secret_id."""
    secretsmanager.create_secret(Name=integration.secret_id, SecretString=creds.model_dump_json())


def test_credentials_are_sealed_in_the_partition_and_open_in_a_cold_container(store, state_table):
    integration = stored_integration(store)
    ref = runtime().secrets.store_credentials(integration.id, CREDS)
    assert ref == integration.secret_id

    item = state_table.get_item(Key={"pk": f"INT#{integration.id}", "sk": "CREDENTIALS"})["Item"]
    assert "alfa-key-1" not in json.dumps(item, default=str)
    assert runtime().secrets.credentials(ref) == CREDS


def test_a_warm_container_remembers_them_and_a_cold_one_reads_the_item(store, state_table):
    integration = stored_integration(store)
    warm = runtime()
    warm.secrets.store_credentials(integration.id, CREDS)
    state_table.delete_item(Key={"pk": f"INT#{integration.id}", "sk": "CREDENTIALS"})

    assert warm.secrets.credentials(integration.secret_id) == CREDS  # from memory: no read, no KMS call
    with pytest.raises(NotFound):
        runtime().secrets.credentials(integration.secret_id)


def test_an_item_copied_into_another_integrations_partition_does_not_open(store, state_table):
    mine, theirs = stored_integration(store, integration_id="aa01"), stored_integration(store, integration_id="bb02")
    runtime().secrets.store_credentials(mine.id, CREDS)
    item = state_table.get_item(Key={"pk": "INT#aa01", "sk": "CREDENTIALS"})["Item"]
    state_table.put_item(Item={**item, "pk": "INT#bb02"})

    with pytest.raises(CredentialsUnreadable) as caught:
        runtime().secrets.credentials(theirs.secret_id)
    assert "alfa-key-1" not in str(caught.value)


def test_missing_credentials_are_named_as_missing(store):
    with pytest.raises(NotFound, match="credentials are missing"):
        runtime().secrets.credentials(stored_integration(store).secret_id)


def test_a_pre_kms_integration_works_and_its_secret_moves_into_a_sealed_item_once(
    store, secretsmanager, state_table, lambda_context
):
    """A school connected before this change: its webhook URLs still show, from then on from the sealed
    item; its secret is scheduled for deletion (restorable 7 days) and nothing reads it again."""
    integration = stored_integration(store)
    old_secret(secretsmanager, integration)

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    reply = admin_api(api_event("GET", f"/integrations/{integration.id}/webhooks", headers=headers), lambda_context)
    assert reply["statusCode"] == 200
    assert reply_json(reply)["alfacrm"].endswith(f"/hooks/alfacrm/{integration.id}/{ALFA_SECRET}")

    described = secretsmanager.describe_secret(SecretId=integration.secret_id)
    assert "DeletedDate" in described
    with pytest.raises(secretsmanager.exceptions.InvalidRequestException):
        secretsmanager.get_secret_value(SecretId=integration.secret_id)
    assert state_table.get_item(Key={"pk": f"INT#{integration.id}", "sk": "CREDENTIALS"}).get("Item")
    assert runtime().secrets.credentials(integration.secret_id) == CREDS  # a cold container: the item


def test_a_move_that_finds_an_item_written_meanwhile_keeps_the_item(store, secretsmanager):
    """Another container moved the secret (or new credentials were stored) between the read that found no
    item and the conditional write: the stored item wins and the old secret goes anyway."""
    integration = stored_integration(store)
    rotated = CREDS.model_copy(update={"alfacrm_api_key": "alfa-key-2"})
    old_secret(secretsmanager, integration)
    rt = runtime()
    vault = rt.secrets.vault
    real_get = vault.get
    reads = []

    def get_after_the_other_container(integration_id):
        reads.append(integration_id)
        if len(reads) == 1:
            runtime().secrets.store_credentials(integration_id, rotated)  # lands after our first read
            return None
        return real_get(integration_id)

    vault.get = get_after_the_other_container
    assert rt.secrets.credentials(integration.secret_id).alfacrm_api_key == "alfa-key-2"
    assert "DeletedDate" in secretsmanager.describe_secret(SecretId=integration.secret_id)
    assert runtime().secrets.credentials(integration.secret_id).alfacrm_api_key == "alfa-key-2"


def test_deleting_credentials_removes_the_item_and_a_secret_never_moved(store, secretsmanager):
    moved, unmoved = stored_integration(store, integration_id="aa01"), stored_integration(store, integration_id="bb02")
    secrets = runtime().secrets
    secrets.store_credentials(moved.id, CREDS)
    old_secret(secretsmanager, unmoved)

    secrets.delete_credentials(moved.secret_id)
    secrets.delete_credentials(unmoved.secret_id)
    for integration in (moved, unmoved):
        with pytest.raises(NotFound):
            runtime().secrets.credentials(integration.secret_id)
    assert [s["Name"] for s in secretsmanager.list_secrets()["SecretList"]] == ["test/admin-token"]


def test_the_ciphertext_names_the_integration_in_its_encryption_context(store, state_table, kms):
    integration = stored_integration(store)
    runtime().secrets.store_credentials(integration.id, CREDS)
    item = state_table.get_item(Key={"pk": f"INT#{integration.id}", "sk": "CREDENTIALS"})["Item"]
    blob = base64.b64decode(item["ciphertext"])
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"connector": "integration-credentials"})
    context = {"connector": "integration-credentials", "integration_id": integration.id}
    assert json.loads(kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]) == CREDS.model_dump()
