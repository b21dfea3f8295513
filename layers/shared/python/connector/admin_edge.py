"""The admin API's edge, before routing: who is calling (operator or school), and JSON bodies read as JSON.

Both run before the resolver: it validates bodies first, and a caller without a token must learn nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connector.access import Caller, identify
from connector.errors import Unauthorized
from connector.runtime import Runtime

JSON = "application/json"


def _reply(status: int, code: str, message: str, **headers: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON, **headers},
        "body": json.dumps({"error": {"code": code, "message": message, "field": None}}),
        "isBase64Encoded": False,
    }


def denied(event: Mapping[str, Any], rt: Runtime) -> dict[str, Any] | None:
    """A ready 401 (no or wrong token) or 403 (a school token outside its integration) reply, else None."""
    try:
        caller: Caller = identify(rt.store, event.get("headers"), rt.secrets.admin_token())
    except Unauthorized as exc:
        return _reply(401, exc.code, exc.message, **{"WWW-Authenticate": "Bearer"})
    reason = caller.denial(str(event.get("path") or "/"), str(event.get("httpMethod") or "GET"))
    if reason is not None:
        return _reply(403, "forbidden", reason)
    return None


def as_json(event: dict[str, Any]) -> dict[str, Any]:
    """The admin API takes JSON whatever the Content-Type says, as the webhooks do.

    `curl -d '{...}'` without `-H 'Content-Type: application/json'` sends
    `application/x-www-form-urlencoded`; the resolver would then read the JSON text as a form and report
    every field missing. Only the header changes; the body is parsed (and rejected) as JSON. Without a body
    too: a multipart type without a boundary made the resolver raise ValueError (a 500).
    """
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    headers["Content-Type"] = JSON
    multi["Content-Type"] = [JSON]
    return {**event, "headers": headers, "multiValueHeaders": multi}
