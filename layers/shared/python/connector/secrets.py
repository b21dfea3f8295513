"""The secrets port: integrations' credentials and the admin token. Nothing here is ever logged.

Credentials are one small JSON document per integration, sealed with KMS Encrypt under the stack's key
(`CREDENTIALS_KEY_ID`) and kept in the integration's partition of the state table (`CREDENTIALS`). The
encryption context names the integration, so a sealed item copied into another partition does not open,
and the IAM policies allow Encrypt/Decrypt only with that context. A Secrets Manager secret per school cost
$0.40 a month, more than its compute; a KMS call costs $0.000003 (docs/performance.md weighs the two and
envelope encryption).

Integrations created before keep `secret_id` = `<SECRETS_PREFIX>/integrations/<id>`, their Secrets Manager
secret's name; new ones get the same reference. The first read of an integration without a sealed item
moves its secret: read it, seal it, write the item (only if none exists), schedule the secret's deletion.

Opened credentials are remembered in memory per container for a few minutes (workers need them on every
event; a KMS call is ~10 ms): the memory is a member of the container's `Secrets`, built by the `Runtime`.
"""

from __future__ import annotations

import base64
import json

from botocore.exceptions import ClientError

from connector.aws import Aws
from connector.config import Environment
from connector.errors import CredentialsUnreadable, NotFound
from connector.memo import Memo
from connector.models.credentials import SealedCredentials
from connector.settings import Credentials
from connector.store.credentials import CredentialStore
from connector.timeutil import to_iso, utcnow

CACHE_SECONDS = 300.0
# what the IAM policies require of every Encrypt/Decrypt (template.yaml, `kms:EncryptionContext:connector`)
PURPOSE = "integration-credentials"
# a migrated secret stays restorable this long (the minimum Secrets Manager allows)
MIGRATED_SECRET_RECOVERY_DAYS = 7
_GONE = frozenset({"ResourceNotFoundException", "InvalidRequestException"})  # absent, or scheduled for deletion


def encryption_context(integration_id: str) -> dict[str, str]:
    return {"connector": PURPOSE, "integration_id": integration_id}


class Secrets:
    def __init__(
        self, env: Environment, aws: Aws, vault: CredentialStore, *, cache_seconds: float = CACHE_SECONDS
    ) -> None:
        self.env = env
        self.aws = aws
        self.vault = vault
        self._credentials: Memo[str, Credentials] = Memo(cache_seconds)
        self._tokens: Memo[str, str] = Memo(cache_seconds)

    # --- references ---------------------------------------------------------------------------
    def secret_name(self, integration_id: str) -> str:
        """The credentials' reference (`Integration.secret_id`); also the name a pre-KMS secret had."""
        return f"{self.env.secrets_prefix}/integrations/{integration_id}"

    @staticmethod
    def integration_of(secret_id: str) -> str:
        return secret_id.rpartition("/integrations/")[2]

    # --- the port -----------------------------------------------------------------------------
    def store_credentials(self, integration_id: str, creds: Credentials) -> str:
        """Seal and write (or overwrite) the integration's credentials; returns their reference."""
        self.vault.put(integration_id, self._seal(integration_id, creds))
        self._credentials.put(integration_id, creds)
        return self.secret_name(integration_id)

    def credentials(self, secret_id: str) -> Credentials:
        integration_id = self.integration_of(secret_id)
        hit = self._credentials.get(integration_id)
        if hit is not None:
            return hit
        sealed = self.vault.get(integration_id)
        creds = self._open(integration_id, sealed) if sealed else self._migrate(integration_id, secret_id)
        self._credentials.put(integration_id, creds)
        return creds

    def delete_credentials(self, secret_id: str) -> None:
        integration_id = self.integration_of(secret_id)
        self._credentials.drop(integration_id)
        self.vault.delete(integration_id)
        self._drop_secret(secret_id, recovery_days=None)  # one never migrated goes too

    # --- sealing ------------------------------------------------------------------------------
    def _key_id(self) -> str:
        if not self.env.credentials_key_id:
            raise CredentialsUnreadable("CREDENTIALS_KEY_ID is not set: no key to seal credentials with")
        return self.env.credentials_key_id

    def _seal(self, integration_id: str, creds: Credentials) -> SealedCredentials:
        reply = self.aws.kms.encrypt(
            KeyId=self._key_id(),
            Plaintext=creds.model_dump_json().encode("utf-8"),
            EncryptionContext=encryption_context(integration_id),
        )
        return SealedCredentials(
            ciphertext=base64.b64encode(reply["CiphertextBlob"]).decode("ascii"),
            key_id=str(reply["KeyId"]),
            sealed_at=to_iso(utcnow()),
        )

    def _open(self, integration_id: str, sealed: SealedCredentials) -> Credentials:
        try:
            reply = self.aws.kms.decrypt(
                KeyId=self._key_id(),
                CiphertextBlob=base64.b64decode(sealed.ciphertext),
                EncryptionContext=encryption_context(integration_id),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in {"InvalidCiphertextException", "IncorrectKeyException"}:
                # sealed for another integration or under another key: never opened, never guessed at
                raise CredentialsUnreadable(f"the credentials of integration {integration_id} do not open") from None
            raise
        return Credentials.model_validate_json(reply["Plaintext"])

    # --- the one-time move from Secrets Manager -----------------------------------------------
    def _migrate(self, integration_id: str, secret_id: str) -> Credentials:
        raw = self._old_secret(secret_id)
        if raw is None:
            # another container may have moved it between our two reads
            sealed = self.vault.get(integration_id)
            if sealed is None:
                raise NotFound("the integration's credentials are missing")
            return self._open(integration_id, sealed)
        creds = Credentials.model_validate(json.loads(raw))
        if not self.vault.put(integration_id, self._seal(integration_id, creds), if_absent=True):
            # moved (or replaced) meanwhile: what is stored wins
            stored = self.vault.get(integration_id)
            creds = self._open(integration_id, stored) if stored else creds
        self._drop_secret(secret_id, recovery_days=MIGRATED_SECRET_RECOVERY_DAYS)
        return creds

    def _old_secret(self, secret_id: str) -> str | None:
        try:
            return str(self.aws.secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _GONE:
                return None
            raise

    def _drop_secret(self, secret_id: str, *, recovery_days: int | None) -> None:
        window = {"RecoveryWindowInDays": recovery_days} if recovery_days else {"ForceDeleteWithoutRecovery": True}
        try:
            self.aws.secretsmanager.delete_secret(SecretId=secret_id, **window)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in _GONE:
                raise

    # --- the admin token (one per stack, stays in Secrets Manager) -----------------------------
    def admin_token(self) -> str:
        """The admin API's bearer token: `ADMIN_TOKEN` locally, else the stack's generated secret."""
        if self.env.admin_token:
            return self.env.admin_token
        secret_id = self.env.admin_token_secret_id
        if not secret_id:
            return ""
        hit = self._tokens.get(secret_id)
        if hit is not None:
            return hit
        raw = str(self.aws.secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"])
        # GenerateSecretString with a key yields JSON; a plain string is accepted too
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        value = str(parsed.get("token", raw)) if isinstance(parsed, dict) else raw
        self._tokens.put(secret_id, value)
        return value
