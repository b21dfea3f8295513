"""The secrets port: credentials sealed with the stack's data key (itself wrapped by the stack's KMS key) in
the integration's partition, remembered a while per container, and the one-time move of a pre-KMS Secrets
Manager secret (moto's KMS and Secrets Manager)."""

from __future__ import annotations

import base64
import json

import pytest
from connector.errors import CredentialsUnreadable, NotFound
from connector.secrets import encryption_context
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


def test_the_data_key_is_kept_wrapped_by_the_stacks_key_under_its_context(store, state_table, kms):
    runtime().secrets.store_credentials(stored_integration(store).id, CREDS)
    item = state_table.get_item(Key={"pk": "CREDKEY", "sk": "V#1"})["Item"]
    blob = base64.b64decode(item["ciphertext"])
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"connector": "integration-credentials"})
    assert len(kms.decrypt(CiphertextBlob=blob, EncryptionContext=encryption_context(1))["Plaintext"]) == 32


def test_a_cold_container_opens_every_schools_credentials_with_one_kms_call(store):
    """The point of the envelope: the KMS bill does not grow with the schools a container serves."""
    schools = [stored_integration(store, integration_id=f"{i:04x}") for i in range(5)]
    for school in schools:
        runtime().secrets.store_credentials(school.id, CREDS.model_copy(update={"alfacrm_api_key": school.id}))
    cold = runtime()
    calls = kms_calls(cold)
    try:
        opened = [cold.secrets.credentials(school.secret_id).alfacrm_api_key for school in schools]
    finally:
        cold.aws.kms.meta.events.unregister("before-call.kms")
    assert opened == [school.id for school in schools]
    assert calls == ["Decrypt"]


def test_two_containers_creating_the_first_data_key_end_up_sealing_with_one(store):
    first, second = stored_integration(store, integration_id="aa01"), stored_integration(store, integration_id="bb02")
    racer = runtime()
    real_get = racer.secrets.vault.data_key
    reads = []

    def get_after_the_other_container(version):
        reads.append(version)
        if len(reads) == 1:
            runtime().secrets.store_credentials(second.id, CREDS)  # creates the data key after our read
            return None
        return real_get(version)

    racer.secrets.vault.data_key = get_after_the_other_container
    racer.secrets.store_credentials(first.id, CREDS)
    cold = runtime()
    assert cold.secrets.credentials(first.secret_id) == cold.secrets.credentials(second.secret_id) == CREDS


def kms_calls(rt) -> list[str]:
    calls: list[str] = []
    rt.aws.kms.meta.events.register("before-call.kms", lambda **kw: calls.append(kw["model"].name))
    return calls


def test_credentials_are_read_again_after_their_ttl_but_the_data_key_stays_an_hour(store):
    """New credentials stored by another container reach this one within the TTL, without a KMS call."""
    from connector.secrets import CACHE_SECONDS, Secrets

    integration = stored_integration(store)
    runtime().secrets.store_credentials(integration.id, CREDS)
    now = [1000.0]
    rt = runtime()
    warm = Secrets(rt.env, rt.aws, rt.store.credentials, clock=lambda: now[0])
    assert warm.credentials(integration.secret_id) == CREDS
    rotated = CREDS.model_copy(update={"alfacrm_api_key": "alfa-key-2"})
    runtime().secrets.store_credentials(integration.id, rotated)

    assert warm.credentials(integration.secret_id) == CREDS  # still within the TTL
    now[0] += CACHE_SECONDS + 1
    calls = kms_calls(rt)
    try:
        assert warm.credentials(integration.secret_id) == rotated
    finally:
        rt.aws.kms.meta.events.unregister("before-call.kms")
    assert calls == []


def test_an_altered_ciphertext_does_not_open_and_the_error_names_no_secret(store, state_table):
    integration = stored_integration(store)
    runtime().secrets.store_credentials(integration.id, CREDS)
    key = {"pk": f"INT#{integration.id}", "sk": "CREDENTIALS"}
    blob = bytearray(base64.b64decode(state_table.get_item(Key=key)["Item"]["ciphertext"]))
    blob[20] ^= 1
    state_table.update_item(
        Key=key, UpdateExpression="SET ciphertext = :c",
        ExpressionAttributeValues={":c": base64.b64encode(bytes(blob)).decode()},
    )  # fmt: skip

    with pytest.raises(CredentialsUnreadable, match="do not open") as caught:
        runtime().secrets.credentials(integration.secret_id)
    assert "alfa-key-1" not in str(caught.value) and "uis-token-1" not in str(caught.value)


def test_a_lost_data_key_is_named_and_never_replaced_by_a_read(store, state_table):
    integration = stored_integration(store)
    runtime().secrets.store_credentials(integration.id, CREDS)
    state_table.delete_item(Key={"pk": "CREDKEY", "sk": "V#1"})

    with pytest.raises(CredentialsUnreadable, match="data key 1 is missing"):
        runtime().secrets.credentials(integration.secret_id)
    assert "Item" not in state_table.get_item(Key={"pk": "CREDKEY", "sk": "V#1"})
