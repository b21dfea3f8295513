"""Hostile input at the webhooks and the admin API: a 4xx naming the problem, in the contract's error shape,
and nothing stored — never a 5xx or a crash (issue 9, defect 3)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from connector.alfacrm.models import to_decimal, to_int
from connector.errors import UnsafeHostname
from connector.settings import check_alfacrm_hostname, check_uis_api_url

from tests.api.builders import ALFA_SECRET, UIS_SECRET, api_event, reply_json, stored_integration
from tests.conftest import ADMIN_TOKEN
from tests.handlers import load_handler
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL
from tools.sandboxes.uis import DEFAULT_TOKEN

alfacrm_hook = load_handler("alfacrm_webhook")
uis_hook = load_handler("uis_webhook")
admin_api = load_handler("admin_api")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
PAY = b'"event": "create", "entity": "Pay", "fields_new": {"income": "5000"}'


def raw_event(method: str, path: str, raw: bytes, **kwargs: Any) -> dict[str, Any]:
    """As API Gateway sends it: text as is, anything that is not UTF-8 base64-encoded."""
    event = api_event(method, path, **kwargs)
    try:
        event["body"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    return event


def nothing_stored(sqs, queue_urls, state_table) -> None:
    for queue in ("DealEventsQueue", "TextEventsQueue"):
        assert sqs.receive_message(QueueUrl=queue_urls[queue]).get("Messages") is None, queue
    assert [item["sk"] for item in state_table.scan()["Items"]] == ["META"]


def assert_error_shape(reply: dict[str, Any], status: int) -> dict[str, Any]:
    body = reply_json(reply)
    assert reply["statusCode"] == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]


HOSTILE_BODIES = [
    # (body, what the 400 must say)
    (b'{"branch_id": Infinity, "entity_id": 1, ' + PAY + b"}", "Infinity is not a JSON number"),
    (b'{"entity_id": -Infinity, ' + PAY + b"}", "-Infinity is not a JSON number"),
    (b'{"entity_id": NaN, ' + PAY + b"}", "NaN is not a JSON number"),
    (b'{"entity_id": 1e1000000, ' + PAY + b"}", "out of range"),
    (b'{"entity_id": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b", " + PAY + b"}", "nests deeper than 16"),
    (b'{"entity_id": 1, "fields_rel": {"note": "\\ud800"}, ' + PAY + b"}", "lone surrogate"),
    (b'{"entity_id": 1, "payer": "\xff\xfe", ' + PAY + b"}", "not UTF-8"),
    (b'{"entity_id": 1' + b"0" * 60 + b", " + PAY + b"}", "more than 38 digits"),
]


@pytest.mark.parametrize("raw, reason", HOSTILE_BODIES)
def test_alfacrm_hostile_body_is_400_naming_the_problem_and_nothing_is_stored(
    store, sqs, queue_urls, state_table, lambda_context, raw, reason
):
    stored_integration(store)
    reply = alfacrm_hook(raw_event("POST", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}", raw), lambda_context)
    error = assert_error_shape(reply, 400)
    assert reason in error["message"]
    nothing_stored(sqs, queue_urls, state_table)


@pytest.mark.parametrize("raw, reason", HOSTILE_BODIES)
def test_uis_hostile_body_is_400_naming_the_problem_and_nothing_is_stored(
    store, sqs, queue_urls, state_table, lambda_context, raw, reason
):
    stored_integration(store)
    reply = uis_hook(raw_event("POST", f"/hooks/uis/0a1b2c3d/{UIS_SECRET}", raw), lambda_context)
    error = assert_error_shape(reply, 400)
    assert reason in error["message"]
    nothing_stored(sqs, queue_urls, state_table)


@pytest.mark.parametrize("field", ["entity_id", "branch_id", "user_id"])
@pytest.mark.parametrize("value", ['"1e1000000"', '"Infinity"', '"NaN"', '"-1e999"', '"9223372036854775808"'])
def test_alfacrm_number_bombs_in_integer_fields_are_400_naming_the_field(
    store, sqs, queue_urls, state_table, lambda_context, field, value
):
    """`int(Decimal("1e1000000"))` used to build a million-digit integer (minutes of CPU) before answering."""
    stored_integration(store)
    fields = {"entity_id": "1", "branch_id": "1", "user_id": "2", field: value}
    raw = ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + ", " + PAY.decode() + "}").encode()
    reply = alfacrm_hook(raw_event("POST", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}", raw), lambda_context)
    error = assert_error_shape(reply, 400)
    assert error["field"] == field
    assert "Value error" not in error["message"]
    nothing_stored(sqs, queue_urls, state_table)


def test_uis_query_with_a_lone_surrogate_is_400(store, sqs, queue_urls, state_table, lambda_context):
    stored_integration(store)
    query = {"event": "offline_message", "visitor_name": "\ud800", "offline_message_id": "5"}
    reply = uis_hook(api_event("GET", f"/hooks/uis/0a1b2c3d/{UIS_SECRET}", query=query), lambda_context)
    error = assert_error_shape(reply, 400)
    assert error["field"] == "visitor_name" and "lone surrogate" in error["message"]
    nothing_stored(sqs, queue_urls, state_table)


def test_uis_form_body_that_is_not_utf8_is_400(store, sqs, queue_urls, state_table, lambda_context):
    stored_integration(store)
    event = raw_event(
        "POST",
        f"/hooks/uis/0a1b2c3d/{UIS_SECRET}",
        b"chat_id=1&visitor_name=\xc3\x28",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    error = assert_error_shape(uis_hook(event, lambda_context), 400)
    assert "not UTF-8" in error["message"]
    nothing_stored(sqs, queue_urls, state_table)


def test_a_lone_surrogate_in_the_event_text_is_400_not_a_crash(store, sqs, queue_urls, state_table, lambda_context):
    """The Lambda runtime decodes the event's JSON: a body string may hold a lone surrogate itself."""
    stored_integration(store)
    event = api_event("POST", f"/hooks/alfacrm/0a1b2c3d/{ALFA_SECRET}")
    event["body"] = '{"entity_id": 1, "note": "\ud800", ' + PAY.decode() + "}"
    error = assert_error_shape(alfacrm_hook(event, lambda_context), 400)
    assert "not UTF-8" in error["message"]
    nothing_stored(sqs, queue_urls, state_table)


# ------------------------------------------------------------------------------------------- coercion
@pytest.mark.parametrize(
    "value", ["1e1000000", "-1e1000000", "Infinity", "NaN", "sNaN", float("inf"), float("nan"), 2**63, "1" * 5000]
)
def test_integer_coercion_refuses_what_is_no_integer_in_range(value):
    with pytest.raises(ValueError):
        to_int(value)


@pytest.mark.parametrize("value", ["1e1000000", "Infinity", "NaN", "sNaN", float("inf"), "0E-1000000", "1e-40"])
def test_money_coercion_refuses_what_is_no_finite_amount(value):
    with pytest.raises(ValueError):
        to_decimal(value)


@pytest.mark.parametrize("value, expected", [("145", 145), (" 145.0 ", 145), ("1e3", 1000), (2**63 - 1, 2**63 - 1)])
def test_integer_coercion_keeps_what_alfacrm_sends(value, expected):
    assert to_int(value) == expected


# ------------------------------------------------------------------------------------------- admin API
BROKEN_URLS = [
    "http://127.0.0.1:99999",
    "http://127.0.0.1:abc",
    "http://127.0.0.1:0",
    "http://[::1",
    "http://[::zz]:80",
    "http://exa\x00mple.com",
    "http://example.com/\r\nX-Injected: 1",
    "http://ex ample.com",
    "https://school.s20.online:99999",
    "https://[fe80::1%25eth0]/",
    "https://xn--a.ru",  # a malformed A-label: httpx raised IDNAError (found by tests/fuzz/test_urls_fuzz.py)
]


@pytest.mark.parametrize("url", BROKEN_URLS)
@pytest.mark.parametrize("allow_insecure", [True, False])
def test_broken_urls_are_refused_naming_the_field(url, allow_insecure):
    with pytest.raises(UnsafeHostname) as err:
        check_alfacrm_hostname(url, allow_insecure=allow_insecure)
    assert err.value.field == "alfacrm.hostname"
    with pytest.raises(UnsafeHostname) as err:
        check_uis_api_url(url, allow_insecure=allow_insecure)
    assert err.value.field == "uis.api_url"


def _create_body(sandboxes: dict[str, Any], **over: Any) -> dict[str, Any]:
    alfacrm = {"hostname": sandboxes["alfacrm_url"], "email": DEFAULT_EMAIL, "api_key": DEFAULT_API_KEY}
    uis = {"api_url": sandboxes["uis_url"], "access_token": DEFAULT_TOKEN}
    body: dict[str, Any] = {"name": "Школа", "alfacrm": alfacrm, "uis": uis}
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            body[section][name] = value
        else:
            body[key] = value
    return body


@pytest.mark.parametrize("url", BROKEN_URLS)
@pytest.mark.parametrize("field", ["alfacrm.hostname", "uis.api_url"])
def test_create_with_a_broken_url_is_422_naming_the_field(served_sandboxes, lambda_context, secretsmanager, url, field):
    body = _create_body(served_sandboxes, **{field.replace(".", "__"): url})
    reply = admin_api(api_event("POST", "/integrations", body=body, headers=AUTH), lambda_context)
    error = assert_error_shape(reply, 422)
    assert error["field"] == field
    assert secretsmanager.list_secrets()["SecretList"] == [] or all(
        "integrations" not in s["Name"] for s in secretsmanager.list_secrets()["SecretList"]
    )


@pytest.mark.parametrize("zone", ["Europe", "a" * 300, "Europe/Moscow\x00", "../../etc/passwd"])
def test_create_with_a_time_zone_that_is_no_zone_is_422(served_sandboxes, lambda_context, zone):
    reply = admin_api(
        api_event("POST", "/integrations", body=_create_body(served_sandboxes, timezone=zone), headers=AUTH),
        lambda_context,
    )
    assert assert_error_shape(reply, 422)["field"] == "timezone"


ADMIN_BODIES = [
    (b'{"name": Infinity}', "Infinity is not a JSON number"),
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 16"),
    (b'{"name": "\\udc00"}', "lone surrogate"),
    (b'{"name": "\xff"}', "not UTF-8"),
    (b'{"name": 1e999}', "out of range"),
    (b"{oops", "not valid JSON"),
]


@pytest.mark.parametrize("raw, reason", ADMIN_BODIES)
@pytest.mark.parametrize("method, path", [("POST", "/integrations"), ("PUT", "/integrations/0a1b2c3d/settings")])
def test_admin_hostile_body_is_400_naming_the_problem(store, state_table, lambda_context, raw, reason, method, path):
    stored_integration(store)
    reply = admin_api(raw_event(method, path, raw, headers=AUTH), lambda_context)
    error = assert_error_shape(reply, 400)
    assert reason in error["message"]
    assert [item["sk"] for item in state_table.scan()["Items"]] == ["META"]


@pytest.mark.parametrize(
    "content_type, raw, status",
    [
        ("text/plain", b'{"name": "x"}', 422),
        ("application/x-www-form-urlencoded", b"name=x", 400),
        ("multipart/form-data", b"--x\r\n", 400),  # no boundary: Powertools raised ValueError (a 500)
        ("multipart/form-data", b"", 422),
        ("application/xml", b"<a/>", 400),
    ],
)
def test_admin_bodies_are_read_as_json_whatever_the_content_type_says(lambda_context, content_type, raw, status):
    """The admin API reads JSON whatever the Content-Type (connector.admin_edge): a body that is not JSON is a
    400, a JSON one missing fields a 422, both in the contract's shape, never Powertools' own or a 500."""
    headers = {**AUTH, "Content-Type": content_type}
    reply = admin_api(raw_event("POST", "/integrations", raw, headers=headers), lambda_context)
    assert_error_shape(reply, status)


def test_admin_json_with_a_charset_is_still_json(served_sandboxes, lambda_context):
    headers = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    reply = admin_api(
        api_event("POST", "/integrations", body=_create_body(served_sandboxes), headers=headers), lambda_context
    )
    assert reply["statusCode"] == 201, reply["body"]
    assert json.loads(reply["body"])["active"] is False


def test_characters_sqs_refuses_reach_the_queue_escaped(store, sqs, queue_urls, lambda_context):
    """SQS refuses U+FFFE/U+FFFF in a message (moto does not): the message carries their JSON escapes."""
    stored_integration(store)
    body = {"chat_id": 7, "visitor_name": "Анна\uffff\ufffe"}
    event = api_event("POST", f"/hooks/uis/0a1b2c3d/{UIS_SECRET}", body=body, query={"event": "chat_finished"})
    assert uis_hook(event, lambda_context)["statusCode"] == 200
    [message] = sqs.receive_message(QueueUrl=queue_urls["TextEventsQueue"])["Messages"]
    assert "\uffff" not in message["Body"] and "\ufffe" not in message["Body"]
    assert json.loads(message["Body"])["payload"] == body
