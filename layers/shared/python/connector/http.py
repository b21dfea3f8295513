"""HTTP edge helpers shared by the API handlers: error replies, the public base URL (auth: connector.access)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

from connector.errors import BadRequest, ConnectorError
from connector.http_errors import error_reply
from connector.jsonbody import decode_utf8, parse_json
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


def body_bytes(event: dict[str, Any]) -> bytes:
    """The request body as sent: API Gateway base64-encodes a body that is not UTF-8 text."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body)
        except (binascii.Error, ValueError):
            raise BadRequest("body is marked base64-encoded but is not base64") from None
    # a lone surrogate in the event's text stays visible as bytes that are not UTF-8
    return str(body).encode("utf-8", "surrogatepass")


def strict_json_body(text: str) -> Any:
    """The resolver's body parser (`json_body_deserializer`): strict JSON, see connector.jsonbody.

    A refusal is raised as the JSONDecodeError the resolver expects, so it reaches the route's validation
    handler as `json_invalid` with our message, not as a crash.
    """
    try:
        return parse_json(text)
    except BadRequest as exc:
        raise json.JSONDecodeError(exc.message, text, 0) from None


def undecodable_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """A ready 400 proxy reply for a base64 body that is not UTF-8 text (the resolver would raise
    UnicodeDecodeError reading it), else None."""
    try:
        decode_utf8(body_bytes(event))
    except BadRequest as exc:
        status, body = error_reply(exc)
        return {
            "statusCode": status,
            "headers": {"Content-Type": "application/json"},
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
