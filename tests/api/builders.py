"""Builders for API Gateway REST (v1) proxy events and stored integrations, shared by the API tests."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

from connector.intake import hash_secret
from connector.settings import Integration, SettingsDocument

ALFA_SECRET = "a" * 32
UIS_SECRET = "u" * 32


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
    raw: bytes | None = None,
) -> dict[str, Any]:
    if raw is None and body is not None:
        raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    text: str | None = None
    if raw is not None:
        text = base64.b64encode(raw).decode() if base64_body else raw.decode()
    parts = urlsplit(path)
    hdrs = {"Host": "abc123.execute-api.eu-central-1.amazonaws.com", **(headers or {})}
    return {
        "resource": parts.path,
        "path": parts.path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": parts.path,
            "httpMethod": method,
            "path": f"/prod{parts.path}",
            "stage": "prod",
            "domainName": "abc123.execute-api.eu-central-1.amazonaws.com",
            "requestId": "req-1",
            "identity": {"sourceIp": "203.0.113.7"},
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


def stored_integration(
    store: Any,
    *,
    integration_id: str = "0a1b2c3d",
    active: bool = True,
    settings: dict[str, Any] | None = None,
    created_at: str | None = None,
) -> Integration:
    integration = Integration(
        id=integration_id,
        name="Школа №1",
        alfacrm={"hostname": "school.s20.online", "email": "api@school.ru", "branch_id": 1},
        uis={"api_url": "https://dataapi.uiscom.ru/v2.0"},
        active=active,
        secret_id=f"test/integrations/{integration_id}",
        alfacrm_webhook_secret_hash=hash_secret(ALFA_SECRET),
        uis_webhook_secret_hash=hash_secret(UIS_SECRET),
        settings=SettingsDocument.model_validate(settings or {}),
        created_at=created_at,
    )
    store.integrations.create(integration)
    return integration


def reply_json(reply: dict[str, Any]) -> Any:
    return json.loads(reply["body"]) if reply.get("body") else None
