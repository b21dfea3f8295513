"""HTTP edge helpers shared by the API handlers: error replies, auth, the public base URL."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

from connector.admin import error_reply
from connector.errors import BadRequest, ConnectorError, Unauthorized
from connector.jsonbody import decode_utf8, parse_json
from connector.secrets import admin_token

UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"


def json_reply(status: int, body: dict[str, Any]) -> Response[dict[str, Any]]:
    # the resolver serialises the dict (and validates it against the route's declared return type)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def error_response(exc: ConnectorError) -> Response[dict[str, Any]]:
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


def check_bearer(headers: dict[str, str] | None) -> None:
    """Constant-time bearer check; no token configured means nobody gets in."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    auth = lowered.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    expected = admin_token()
    if scheme.lower() != "bearer" or not token or not expected:
        raise Unauthorized("missing or malformed bearer token")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("invalid bearer token")


def _proxy_error(status: int, code: str, message: str, field: str | None = None, **headers: str) -> dict[str, Any]:
    """A ready API Gateway proxy reply in the contract's error shape, for refusals before routing."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **headers},
        "body": json.dumps({"error": {"code": code, "message": message, "field": field}}),
        "isBase64Encoded": False,
    }


def _proxy_reply(exc: ConnectorError, **headers: str) -> dict[str, Any]:
    status, _ = error_reply(exc)
    return _proxy_error(status, exc.code, exc.message, exc.field, **headers)


def bearer_denied(event: dict[str, Any]) -> dict[str, Any] | None:
    """A ready API Gateway proxy reply (401) when the bearer token is missing or wrong, else None."""
    try:
        check_bearer(event.get("headers"))
    except Unauthorized as exc:
        return _proxy_reply(exc, **{"WWW-Authenticate": "Bearer"})
    return None


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


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def json_body_refused(event: dict[str, Any]) -> dict[str, Any] | None:
    """A ready proxy reply (415 or 400) for a body the JSON routes cannot read, else None.

    Powertools would answer a declared form or text type with its own 415 shape, crash on a multipart type
    without a boundary, and raise UnicodeDecodeError on a base64 body that is not UTF-8.
    """
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type") or ""
    has_body = bool(event.get("body"))
    writes = str(event.get("httpMethod") or "").upper() in {"POST", "PUT", "PATCH"}
    if content_type.strip() and not _is_json(content_type) and (has_body or writes):
        media = content_type.split(";", 1)[0].strip()
        return _proxy_error(
            415, UNSUPPORTED_MEDIA_TYPE, f"Content-Type {media!r} is not supported; send application/json"
        )
    try:
        decode_utf8(body_bytes(event))
    except BadRequest as exc:
        return _proxy_reply(exc)
    return None


def public_base_url(event: dict[str, Any]) -> str:
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
