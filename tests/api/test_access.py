"""School access tokens: the operator issues one per school; it reaches only that school's integration."""

from __future__ import annotations

import json

import pytest

from tests.api.builders import api_event, reply_json
from tests.api.test_admin_api import AUTH, call, create_body


@pytest.fixture()
def two_schools(served_sandboxes, lambda_context):
    ids = []
    for name in ("Школа №1", "Школа №2"):
        status, body = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes, name=name))
        assert status == 201, body
        ids.append(body["id"])
    return ids


def school_auth(token):
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def issue(ctx, integration_id, headers=AUTH):
    return call(ctx, "POST", f"/integrations/{integration_id}/access", headers=headers)


def test_issued_link_carries_the_token_in_the_fragment_and_opens_only_its_school(
    two_schools, lambda_context, state_table
):
    mine, other = two_schools
    status, body = issue(lambda_context, mine)
    assert status == 200, body
    token = body["token"]
    assert body["url"] == f"https://abc123.execute-api.eu-central-1.amazonaws.com/prod/ui/#token={token}"
    assert len(token.split(".", 1)[1]) >= 22  # ≥128 bits of URL-safe base64
    stored = json.dumps(state_table.scan()["Items"], default=str)
    assert token.split(".", 1)[1] not in stored  # only a hash is kept

    me = school_auth(token)
    status, shown = call(lambda_context, "GET", f"/integrations/{mine}", headers=me)
    assert status == 200 and shown["id"] == mine
    status, _ = call(lambda_context, "GET", f"/integrations/{mine}/alfacrm/lead-statuses", headers=me)
    assert status == 200
    status, saved = call(lambda_context, "PUT", f"/integrations/{mine}/settings", {"deals": {"enabled": True}}, me)
    assert status == 200, saved

    for method, path, body in [
        ("GET", f"/integrations/{other}", None),
        ("GET", f"/integrations/{other}/deals", None),
        ("PUT", f"/integrations/{other}/settings", {}),
        ("GET", "/integrations", None),
        ("POST", "/integrations", {"name": "x"}),
        ("POST", f"/integrations/{mine}/access", None),
        ("GET", f"/integrations/{mine}/../{other}", None),
    ]:
        status, err = call(lambda_context, method, path, body, me)
        assert status == 403, (method, path, err)
        assert err["error"]["code"] == "forbidden"


def test_a_new_link_revokes_the_old_one(two_schools, lambda_context):
    mine, _ = two_schools
    _, first = issue(lambda_context, mine)
    _, second = issue(lambda_context, mine)
    status, err = call(lambda_context, "GET", f"/integrations/{mine}", headers=school_auth(first["token"]))
    assert status == 401 and err["error"]["code"] == "unauthorized"
    status, _ = call(lambda_context, "GET", f"/integrations/{mine}", headers=school_auth(second["token"]))
    assert status == 200


@pytest.mark.parametrize(
    "token",
    ["{mine}.wrong", "{mine}.", "{other}.{secret}", "{mine}", ".{secret}", "zz!.{secret}"],
)
def test_wrong_or_borrowed_school_tokens_are_unauthorized(two_schools, lambda_context, token):
    mine, other = two_schools
    _, issued = issue(lambda_context, mine)
    secret = issued["token"].split(".", 1)[1]
    status, err = call(
        lambda_context,
        "GET",
        f"/integrations/{mine}",
        headers=school_auth(token.format(mine=mine, other=other, secret=secret)),
    )
    assert status == 401 and err["error"]["code"] == "unauthorized"


def test_access_for_an_unknown_integration_is_404(lambda_context):
    status, err = issue(lambda_context, "ffff0000")
    assert status == 404 and err["error"]["code"] == "not_found"


def test_json_bodies_are_read_as_json_whatever_the_content_type(served_sandboxes, lambda_context):
    """`curl -d '{...}'` without a Content-Type header sends application/x-www-form-urlencoded."""
    from tests.api.test_admin_api import admin_api

    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"Authorization": AUTH["Authorization"]}
        if content_type:
            headers["Content-Type"] = content_type
        event = api_event("POST", "/integrations", body=create_body(served_sandboxes), headers=headers)
        reply = admin_api(event, lambda_context)
        assert reply["statusCode"] == 201, reply_json(reply)
    event = api_event("POST", "/integrations", raw=b"name=x", headers={**AUTH, "Content-Type": "text/plain"})
    reply = admin_api(event, lambda_context)
    assert reply["statusCode"] == 400 and reply_json(reply)["error"]["code"] == "invalid_json"
