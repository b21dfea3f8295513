"""Both webhook intakes under hostile input (hypothesis): never a 5xx; a refusal is in the contract's error
shape and leaves the queues and the table as they were; what is accepted is queued once, as strict JSON
that SQS takes, exactly as received."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from connector.jsonbody import check_value, parse_json
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.builders import ALFA_SECRET, UIS_SECRET, api_event, stored_integration
from tests.fuzz import strategies as fz
from tests.fuzz.report import examples, timing
from tests.handlers import load_handler

alfacrm_hook = load_handler("alfacrm_webhook")
uis_hook = load_handler("uis_webhook")
INTEGRATION = "0a1b2c3d"
# the right URL most of the time; a wrong secret, an unknown or an absurd integration id now and then
ALFACRM_PATHS = [f"/hooks/alfacrm/{INTEGRATION}/{ALFA_SECRET}"] * 12 + [
    f"/hooks/alfacrm/{INTEGRATION}/{UIS_SECRET}",
    f"/hooks/alfacrm/ffffffff/{ALFA_SECRET}",
    f"/hooks/alfacrm/{'9' * 300}/{ALFA_SECRET}",
]
UIS_PATHS = [f"/hooks/uis/{INTEGRATION}/{UIS_SECRET}"] * 12 + [
    f"/hooks/uis/{INTEGRATION}/{ALFA_SECRET}",
    f"/hooks/uis/ffffffff/{UIS_SECRET}",
]


@pytest.fixture
def world(store: Any, sqs: Any, queue_urls: dict[str, str], state_table: Any) -> Iterator[dict[str, Any]]:
    """The stored integration; after the examples, the table is as it was and the other queue empty (an intake
    never writes the table: checked once per test, each example checks its own queue)."""
    stored_integration(store)
    items = state_table.scan()["Items"]
    world = {"sqs": sqs, "queues": queue_urls}
    yield world
    assert state_table.scan()["Items"] == items
    assert drained(world, "DealEventsQueue") == drained(world, "TextEventsQueue") == []


def event_for(
    method: str, path: str, raw: bytes | None, content_type: str | None, query: dict[str, str] | None, b64: bool
):
    headers = {"Content-Type": content_type} if content_type else {}
    event = api_event(method, path, headers=headers, query=query or None)
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            b64 = True  # API Gateway base64-encodes what is not UTF-8 text
        event["body"] = base64.b64encode(raw).decode() if b64 else text
        event["isBase64Encoded"] = b64
    return event


def without_event(query: dict[str, str]) -> dict[str, str]:
    """The query as the intake keeps it: the URL's `event` (or, without one, `notification_type`) taken out."""
    params = dict(query)
    if not params.pop("event", None):
        params.pop("notification_type", None)
    return params


def drained(world: dict[str, Any], queue: str) -> list[str]:
    bodies = []
    while True:
        reply = world["sqs"].receive_message(QueueUrl=world["queues"][queue], MaxNumberOfMessages=10)
        messages = reply.get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(m["Body"])
            world["sqs"].delete_message(QueueUrl=world["queues"][queue], ReceiptHandle=m["ReceiptHandle"])


def _queued(text: str) -> Any:
    """A queued message: strict JSON, and what it carries passes the intake's checks (the envelope adds a
    level, so a body at the intake's depth limit sits one below it in the message)."""
    message = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in a queued message"))
    check_value({k: v for k, v in message.items() if k not in ("event", "payload")}, "message")
    for part in ("event", "payload"):
        if isinstance(message.get(part), dict | list):
            check_value(message[part], part)
    return message


def check_reply(world: dict[str, Any], reply: dict[str, Any], queue: str) -> tuple[dict[str, Any], list[Any]]:
    """The properties every reply of an intake has; returns the reply body and what was queued."""
    assert reply["statusCode"] < 500, reply
    body = json.loads(reply["body"])
    queued = [_queued(m) for m in drained(world, queue)]
    if reply["statusCode"] == 200:
        assert set(body) == {"ok", "queued", "reason"} and body["ok"] is True
        assert len(queued) == (1 if body["queued"] else 0)
    else:
        assert reply["statusCode"] in (400, 404, 405), reply
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert queued == []
    return body, queued


@settings(max_examples=examples(300))
@given(
    path=st.sampled_from(ALFACRM_PATHS),
    raw=fz.alfacrm_bodies(),
    content_type=st.sampled_from(fz.CONTENT_TYPES),
    b64=st.booleans(),
)
def test_alfacrm_intake_answers_every_body_without_a_5xx_or_a_partial_write(
    world, lambda_context, path, raw, content_type, b64
):
    stats = timing("AlfaCRM intake (hypothesis)")
    event = event_for("POST", path, raw, content_type, None, b64)
    with stats.reply(f"{len(raw)} bytes"):
        reply = alfacrm_hook(event, lambda_context)
    stats.status(reply["statusCode"])
    _, queued = check_reply(world, reply, "DealEventsQueue")
    if queued:
        # exactly what AlfaCRM sent, and only what the strict parser takes
        assert queued[0]["event"] == parse_json(raw)
        assert queued[0]["integration_id"] == INTEGRATION


@settings(max_examples=examples(250))
@given(
    path=st.sampled_from(UIS_PATHS),
    raw=fz.uis_bodies(),
    query=fz.uis_queries,
    content_type=st.sampled_from(fz.CONTENT_TYPES),
    b64=st.booleans(),
)
def test_uis_post_intake_answers_every_body_without_a_5xx_or_a_partial_write(
    world, lambda_context, path, raw, query, content_type, b64
):
    stats = timing("UIS intake, POST (hypothesis)")
    event = event_for("POST", path, raw, content_type, query, b64)
    with stats.reply(f"{len(raw)} bytes"):
        reply = uis_hook(event, lambda_context)
    stats.status(reply["statusCode"])
    _, queued = check_reply(world, reply, "TextEventsQueue")
    if queued:
        [message] = queued
        assert message["method"] == "POST" and isinstance(message["payload"], dict)
        if "form-urlencoded" in (content_type or "") and not raw.lstrip().startswith(b"{"):
            sent = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        else:
            sent = parse_json(raw)
        assert message["payload"] == {**without_event(query), **sent}


@settings(max_examples=examples(150))
@given(path=st.sampled_from(UIS_PATHS), query=fz.uis_queries)
def test_uis_get_intake_answers_every_query_without_a_5xx_or_a_partial_write(world, lambda_context, path, query):
    stats = timing("UIS intake, GET query (hypothesis)")
    with stats.reply():
        reply = uis_hook(event_for("GET", path, None, None, query, False), lambda_context)
    stats.status(reply["statusCode"])
    _, queued = check_reply(world, reply, "TextEventsQueue")
    if queued:
        [message] = queued
        assert message["method"] == "GET"
        assert message["payload"] == without_event(query)
