"""HTTP edge helpers shared by the API handlers: error replies, auth, the public base URL."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

from connector.errors import ConnectorError, Unauthorized
from connector.http_errors import error_reply
from connector.models.raw import JsonObject


def json_reply(status: int, body: JsonObject) -> Response[JsonObject]:
    # the resolver serialises the dict (and validates it against the route's declared return type)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def error_response(exc: ConnectorError) -> Response[JsonObject]:
    status, body = error_reply(exc)
    return json_reply(status, body)


def error_body(status: int, code: str, message: str, field: str | None = None, **headers: str) -> Response[Any]:
    """A reply in the contract's error shape for errors that are not domain exceptions (routing, JSON)."""
    body = {"error": {"code": code, "message": message, "field": field}}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


def route_miss(app: APIGatewayRestResolver) -> Response[Any]:
    """No route matched: 405 (with `Allow`) when the path exists under other methods, else 404.

    Powertools answers both with its own `{"statusCode", "message"}` body; the contract wants every 4xx
    as `{"error": {...}}`. The resolver keeps its routes in private lists: read them defensively.
    """
    event = app.current_event
    method = event.http_method.upper()
    path = event.path
    routes = [*getattr(app, "_static_routes", []), *getattr(app, "_dynamic_routes", [])]
    allowed = sorted({r.method for r in routes if r.rule.match(path)})
    if allowed:
        return error_body(
            405,
            "method_not_allowed",
            f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}",
            Allow=", ".join(allowed),
        )
    return error_body(404, "not_found", f"no route {method} {path}")


def check_bearer(headers: Mapping[str, str] | None, expected: str) -> None:
    """Constant-time bearer check against the admin token; no token configured means nobody gets in."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    auth = lowered.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token or not expected:
        raise Unauthorized("missing or malformed bearer token")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("invalid bearer token")


def bearer_denied(event: Mapping[str, Any], expected: str) -> JsonObject | None:
    """A ready API Gateway proxy reply (401) when the bearer token is missing or wrong, else None."""
    try:
        check_bearer(event.get("headers"), expected)
    except Unauthorized as exc:
        status, body = error_reply(exc)
        return {
            "statusCode": status,
            "headers": {"Content-Type": "application/json", "WWW-Authenticate": "Bearer"},
            "body": json.dumps(body),
            "isBase64Encoded": False,
        }
    return None


def public_base_url(event: Mapping[str, Any]) -> str:
    """The URL the caller reached us at, for the webhook URLs we hand out."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    ctx = event.get("requestContext") or {}
    host = headers.get("host") or ctx.get("domainName") or "localhost"
    local = host.startswith(("127.0.0.1", "localhost", "[::1]"))
    proto = headers.get("x-forwarded-proto") or ("http" if local else "https")
    base = f"{proto}://{host}"
    stage = ctx.get("stage")
    if host.endswith(".amazonaws.com") and stage and stage != "$default":
        base += f"/{stage}"
    return base
