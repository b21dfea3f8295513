"""Secrets Manager: per-integration credentials and the admin token. Nothing here is ever logged.

Secrets are named `<SECRETS_PREFIX>/integrations/<id>` so the template's IAM policy can scope access to
the stack's prefix. Values are cached in memory per container for a few minutes (a read costs a call
and ~20 ms; workers need the credentials on every event): the cache is a member of the container's
`Secrets`, built once by the `Runtime`.
"""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from connector.aws import Aws
from connector.config import Environment
from connector.errors import NotFound
from connector.memo import Memo
from connector.settings import Credentials

CACHE_SECONDS = 300.0


class Secrets:
    def __init__(self, env: Environment, aws: Aws, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.env = env
        self.aws = aws
        self._credentials: Memo[str, Credentials] = Memo(cache_seconds)
        self._tokens: Memo[str, str] = Memo(cache_seconds)

    def secret_name(self, integration_id: str) -> str:
        return f"{self.env.secrets_prefix}/integrations/{integration_id}"

    def store_credentials(self, integration_id: str, creds: Credentials) -> str:
        """Create (or overwrite) the integration's secret; returns its name."""
        name = self.secret_name(integration_id)
        body = creds.model_dump_json()
        sm = self.aws.secretsmanager
        try:
            sm.create_secret(Name=name, SecretString=body, Tags=[{"Key": "integration", "Value": integration_id}])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceExistsException":
                raise
            sm.put_secret_value(SecretId=name, SecretString=body)
        self._credentials.put(name, creds)
        return name

    def credentials(self, secret_id: str) -> Credentials:
        hit = self._credentials.get(secret_id)
        if hit is not None:
            return hit
        try:
            raw = self.aws.secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                raise NotFound("the integration's credentials are missing") from None
            raise
        creds = Credentials.model_validate(json.loads(raw))
        self._credentials.put(secret_id, creds)
        return creds

    def delete_credentials(self, secret_id: str) -> None:
        self._credentials.drop(secret_id)
        try:
            self.aws.secretsmanager.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise

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
