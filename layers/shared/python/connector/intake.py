"""Webhook intake: authenticate the URL secret, validate, persist to SQS, answer fast.

Nothing is stored for a wrong secret or unknown integration (404), nor for a malformed or oversized
body (400). An inactive integration answers 200 and enqueues nothing, so AlfaCRM and UIS do not
disable the hook while a school pauses the integration.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qsl

from pydantic import ValidationError

from connector.alfacrm.models import WebhookEvent
from connector.errors import BadRequest, NotFound, PayloadTooLarge
from connector.jsonbody import check_value, decode_utf8, parse_json
from connector.models.messages import TEXT_EVENTS, DealEventMessage, TextEventMessage, TextEventName
from connector.models.raw import JsonObject
from connector.runtime import Runtime
from connector.settings import Integration, json_path
from connector.store import Store
from connector.timeutil import to_iso

# AlfaCRM entities that feed deals; other triggers a school may have configured are acknowledged and dropped
DEAL_ENTITIES = {"Customer", "Pay"}
_DUMMY_HASH = hashlib.sha256(b"no such integration").hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Accepted:
    queued: bool
    reason: str
    message_id: str | None = None

    def body(self) -> JsonObject:
        return {"ok": True, "queued": self.queued, "reason": self.reason}


def authenticate(store: Store, integration_id: str, secret: str, which: str) -> Integration:
    """Constant-time secret check; unknown id and wrong secret look the same from outside (404)."""
    integration = store.integrations.get(integration_id) if len(integration_id) <= 64 else None
    expected = _DUMMY_HASH
    if integration is not None:
        expected = (
            integration.alfacrm_webhook_secret_hash if which == "alfacrm" else integration.uis_webhook_secret_hash
        )
    ok = hmac.compare_digest(hash_secret(secret), expected)
    if integration is None or not ok:
        raise NotFound("no such webhook")
    return integration


def _check_size(body: bytes, limit: int) -> None:
    if len(body) > limit:
        raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {limit}")


def _parse_json_object(body: bytes) -> JsonObject:
    if not body.strip():
        raise BadRequest("body is empty; a JSON object is expected")
    data = parse_json(body)
    if not isinstance(data, dict):
        raise BadRequest(f"body must be a JSON object, not {type(data).__name__}")
    return cast("JsonObject", data)


def accept_alfacrm(rt: Runtime, integration_id: str, secret: str, body: bytes) -> Accepted:
    """AlfaCRM sends raw JSON, sometimes under `application/x-www-form-urlencoded`: parse the raw body."""
    integration = authenticate(rt.store, integration_id, secret, "alfacrm")
    _check_size(body, rt.env.max_body_bytes)
    data = _parse_json_object(body)
    try:
        event = WebhookEvent.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = json_path(tuple(err["loc"])) or "body"
        raise BadRequest(f"{path}: {err['msg'].removeprefix('Value error, ')}", field=path) from None
    if not integration.active:
        return Accepted(False, "integration inactive")
    if event.entity not in DEAL_ENTITIES:
        return Accepted(False, f"entity {event.entity} is not used")
    message = DealEventMessage(integration_id=integration.id, received_at=to_iso(rt.now()), event=data)
    return Accepted(True, "queued", rt.queues.send_deal_event(message))


def accept_uis(
    rt: Runtime,
    integration_id: str,
    secret: str,
    *,
    method: str,
    body: bytes,
    query: dict[str, str],
    content_type: str = "",
) -> Accepted:
    """UIS notifications come as GET with query parameters or POST with a user-written JSON body.

    The notification's event is named by the URL's `?event=` (README asks users to add it); when absent,
    the text worker infers it from the fields.
    """
    integration = authenticate(rt.store, integration_id, secret, "uis")
    _check_size(body, rt.env.max_body_bytes)
    params: JsonObject = dict(query)
    check_value(params, "query")
    event = params.pop("event", None) or params.pop("notification_type", None)
    if event is not None and event not in TEXT_EVENTS:
        shown = event if len(str(event)) <= 40 else f"{str(event)[:37]}..."
        raise BadRequest(f"event: unknown event '{shown}'; expected one of {sorted(TEXT_EVENTS)}", field="event")
    if method.upper() == "GET":
        payload: JsonObject = params
        if not payload:
            raise BadRequest("no notification parameters in the query string")
    elif "application/x-www-form-urlencoded" in content_type.lower() and not body.lstrip().startswith(b"{"):
        payload = {**params, **dict(parse_qsl(decode_utf8(body), keep_blank_values=True))}
    else:
        payload = {**params, **_parse_json_object(body)}
    if not integration.active:
        return Accepted(False, "integration inactive")
    message = TextEventMessage(
        integration_id=integration.id,
        received_at=to_iso(rt.now()),
        source="notification",
        event=cast("TextEventName | None", event),
        method="GET" if method.upper() == "GET" else "POST",
        payload=payload,
    )
    return Accepted(True, "queued", rt.queues.send_text_event(message))
