"""Secrets Manager: per-integration credentials and the admin token. Nothing here is ever logged.

Secrets are named `<SECRETS_PREFIX>/integrations/<id>` so the template's IAM policy can scope access to
the stack's prefix. Values are cached in memory per container for a few minutes (a read costs a call
and ~20 ms; workers need the credentials on every event).
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

from connector.config import env
from connector.errors import NotFound
from connector.settings import Credentials

_client: Any = None
_cache: dict[str, tuple[float, Any]] = {}
CACHE_SECONDS = 300.0


def _sm() -> Any:
    global _client
    if _client is None:
        _client = boto3.client("secretsmanager")
    return _client


def reset() -> None:
    global _client
    _client = None
    _cache.clear()


def secret_name(integration_id: str) -> str:
    return f"{env().secrets_prefix}/integrations/{integration_id}"


def store_credentials(integration_id: str, creds: Credentials) -> str:
    """Create (or overwrite) the integration's secret; returns its name."""
    name = secret_name(integration_id)
    body = creds.model_dump_json()
    try:
        _sm().create_secret(Name=name, SecretString=body, Tags=[{"Key": "integration", "Value": integration_id}])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceExistsException":
            raise
        _sm().put_secret_value(SecretId=name, SecretString=body)
    _cache[name] = (time.monotonic(), creds)
    return name


def credentials(secret_id: str) -> Credentials:
    hit = _cache.get(secret_id)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]  # type: ignore[no-any-return,unused-ignore]
    try:
        raw = _sm().get_secret_value(SecretId=secret_id)["SecretString"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise NotFound("the integration's credentials are missing") from None
        raise
    creds = Credentials.model_validate(json.loads(raw))
    _cache[secret_id] = (time.monotonic(), creds)
    return creds


def delete_credentials(secret_id: str) -> None:
    _cache.pop(secret_id, None)
    try:
        _sm().delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise


def admin_token() -> str:
    """The admin API's bearer token: `ADMIN_TOKEN` locally, else the stack's generated secret."""
    e = env()
    if e.admin_token:
        return e.admin_token
    if not e.admin_token_secret_id:
        return ""
    hit = _cache.get(e.admin_token_secret_id)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return str(hit[1])
    raw = _sm().get_secret_value(SecretId=e.admin_token_secret_id)["SecretString"]
    # GenerateSecretString with a key yields JSON; a plain string is accepted too
    try:
        value = json.loads(raw).get("token", raw)
    except (ValueError, AttributeError):
        value = raw
    _cache[e.admin_token_secret_id] = (time.monotonic(), value)
    return str(value)
