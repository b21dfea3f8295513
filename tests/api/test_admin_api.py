"""Admin API through its Lambda handler: auth, integrations, settings validation, look-ups, no secrets out."""

from __future__ import annotations

import json

import pytest

from tests.api.builders import api_event, reply_json
from tests.conftest import ADMIN_TOKEN, runtime
from tests.handlers import load_handler
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL
from tools.sandboxes.uis import DEFAULT_TOKEN

admin_api = load_handler("admin_api")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}


def call(ctx, method, path, body=None, headers=AUTH, query=None):
    reply = admin_api(api_event(method, path, body=body, headers=headers, query=query), ctx)
    return reply["statusCode"], reply_json(reply)


def create_body(sb, **over):
    body = {
        "name": "Школа №1",
        "alfacrm": {"hostname": sb["alfacrm_url"], "email": DEFAULT_EMAIL, "api_key": DEFAULT_API_KEY, "branch_id": 1},
        "uis": {"api_url": sb["uis_url"], "access_token": DEFAULT_TOKEN},
        "timezone": "Europe/Moscow",
    }
    for key, value in over.items():
        section, _, field = key.partition("__")
        if field:
            body[section][field] = value
        else:
            body[section] = value
    return body


@pytest.fixture()
def integration(served_sandboxes, lambda_context):
    status, body = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))
    assert status == 201, body
    return body


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": f"Token {ADMIN_TOKEN}"}],
)
@pytest.mark.parametrize(
    "method, path", [("GET", "/integrations"), ("POST", "/integrations"), ("PUT", "/integrations/abc/settings")]
)
def test_every_admin_route_needs_the_bearer_token(lambda_context, headers, method, path):
    """Given no or a wrong token, when any admin route is called (even with a bad body), then 401 and no detail."""
    status, body = call(lambda_context, method, path, body={"junk": 1}, headers=headers)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


def test_create_integration_logs_in_to_both_and_returns_webhook_urls_without_secrets(
    served_sandboxes, lambda_context, secretsmanager, state_table
):
    status, body = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))
    assert status == 201
    assert body["active"] is False
    hooks = body["webhooks"]
    assert hooks["alfacrm"].startswith(
        f"https://abc123.execute-api.eu-central-1.amazonaws.com/prod/hooks/alfacrm/{body['id']}/"
    )
    secret = hooks["alfacrm"].rsplit("/", 1)[1]
    assert len(secret) >= 22  # ≥128 bits of URL-safe base64
    assert hooks["uis"].rsplit("/", 1)[1] != secret

    status, shown = call(lambda_context, "GET", f"/integrations/{body['id']}")
    assert status == 200
    text = json.dumps(shown)
    for leaked in (DEFAULT_API_KEY, DEFAULT_TOKEN, secret, "secret_hash", "secret_id"):
        assert leaked not in text
    assert {k: shown["alfacrm"][k] for k in ("hostname", "email", "branch_id")} == {
        "hostname": served_sandboxes["alfacrm_url"],
        "email": DEFAULT_EMAIL,
        "branch_id": 1,
    }

    listed = call(lambda_context, "GET", "/integrations")[1]["items"]
    assert [i["id"] for i in listed] == [body["id"]]
    assert DEFAULT_API_KEY not in json.dumps(listed)
    # the credentials are sealed in the integration's partition (plain nowhere), and open in a cold container
    items = state_table.scan()["Items"]
    assert DEFAULT_API_KEY not in repr(items) and DEFAULT_TOKEN not in repr(items)
    [sealed] = [i for i in items if i["sk"] == "CREDENTIALS"]
    assert sealed["pk"] == f"INT#{body['id']}"
    opened = runtime().secrets.credentials(f"test/integrations/{body['id']}")
    assert (opened.alfacrm_api_key, opened.uis_access_token) == (DEFAULT_API_KEY, DEFAULT_TOKEN)
    assert [s["Name"] for s in secretsmanager.list_secrets()["SecretList"]] == ["test/admin-token"]


def test_webhook_urls_can_be_shown_again(integration, lambda_context):
    status, hooks = call(lambda_context, "GET", f"/integrations/{integration['id']}/webhooks")
    assert status == 200
    assert hooks == integration["webhooks"]


@pytest.mark.parametrize(
    "override, code, field",
    [
        ({"alfacrm__api_key": "wrong-key"}, "alfacrm_auth_failed", "alfacrm"),
        ({"uis__access_token": "wrong-token"}, "uis_auth_failed", "uis"),
        ({"alfacrm__branch_id": 0}, "validation_failed", "alfacrm.branch_id"),
        ({"timezone": "Mars/Olympus"}, "validation_failed", "timezone"),
        ({"alfacrm__email": None}, "validation_failed", "alfacrm.email"),
    ],
)
def test_create_integration_refuses_bad_input_naming_the_field(served_sandboxes, lambda_context, override, code, field):
    status, body = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes, **override))
    assert status == 422
    assert body["error"]["code"] == code
    assert body["error"]["field"] == field
    assert "wrong-key" not in json.dumps(body)
    assert call(lambda_context, "GET", "/integrations")[1]["items"] == []


def test_create_refuses_malformed_json(lambda_context):
    reply = admin_api(api_event("POST", "/integrations", raw=b"{oops", headers=AUTH), lambda_context)
    assert reply["statusCode"] in (400, 422)
    assert "error" in reply_json(reply)


def test_settings_are_validated_against_alfacrm_and_stored(integration, served_sandboxes, lambda_context):
    iid = integration["id"]
    statuses = call(lambda_context, "GET", f"/integrations/{iid}/alfacrm/lead-statuses")[1]["items"]
    names = {s["name"]: s["id"] for s in statuses}
    assert len(statuses) >= 5
    success = [s["id"] for s in statuses if "Оплат" in s["name"]] or [statuses[-1]["id"]]

    bad = {"deals": {"first_sale": {"success_status_ids": [999], "failure_status_ids": []}}}
    status, body = call(lambda_context, "PUT", f"/integrations/{iid}/settings", bad)
    assert status == 422
    assert body["error"]["field"] == "deals.first_sale.success_status_ids"
    assert "999" in body["error"]["message"]

    bad_title = {"texts": {"chats": {"lost_chat_task": {"enabled": True, "title": "Чат {nobody}"}}}}
    status, body = call(lambda_context, "PUT", f"/integrations/{iid}/settings", bad_title)
    assert status == 422
    assert body["error"]["field"] == "texts.chats.lost_chat_task.title"

    bad_field = {
        "texts": {
            "requests": {"enabled": True, "extra_fields": [{"source": "utm_source", "target": "custom_nothing_here"}]}
        }
    }
    status, body = call(lambda_context, "PUT", f"/integrations/{iid}/settings", bad_field)
    assert status == 422
    assert body["error"]["field"] == "texts.requests.extra_fields[0].target"

    good = {
        "deals": {"first_sale": {"success_status_ids": success, "failure_status_ids": []}},
        "texts": {
            "requests": {
                "enabled": True,
                "filters": {"sites": ["school.ru"]},
                "extra_fields": [{"source": "utm_source", "target": "custom_utm_source"}],
            }
        },
    }
    status, body = call(lambda_context, "PUT", f"/integrations/{iid}/settings", good)
    assert status == 200, body
    assert body["deals"]["first_sale"]["success_status_ids"] == success
    assert names  # look-up returned named statuses
    shown = call(lambda_context, "GET", f"/integrations/{iid}")[1]
    assert shown["settings"]["texts"]["requests"]["filters"]["sites"] == ["school.ru"]


def test_unknown_settings_key_is_named(integration, lambda_context):
    status, body = call(
        lambda_context, "PUT", f"/integrations/{integration['id']}/settings", {"deals": {"enabeld": True}}
    )
    assert status == 422
    assert body["error"]["field"] == "deals.enabeld"


def test_lookups_from_both_systems(integration, lambda_context):
    iid = integration["id"]
    branches = call(lambda_context, "GET", f"/integrations/{iid}/alfacrm/branches")[1]["items"]
    assert {"Центральный", "Северный"} <= {b["name"] for b in branches}
    fields = call(lambda_context, "GET", f"/integrations/{iid}/alfacrm/customer-fields")[1]["items"]
    assert "custom_utm_source" in fields and "phone" in fields
    sites = call(lambda_context, "GET", f"/integrations/{iid}/uis/sites")[1]["items"]
    assert "school.ru" in {s.get("domain_name") for s in sites}
    channels = call(lambda_context, "GET", f"/integrations/{iid}/uis/chat-channels")[1]["items"]
    assert "whatsapp" in {c.get("type") for c in channels}
    tags = call(lambda_context, "GET", f"/integrations/{iid}/uis/tags")[1]["items"]
    assert "Лид" in {t.get("name") for t in tags}
    status, _ = call(lambda_context, "GET", f"/integrations/{iid}/uis/nothing")
    assert status == 404


def test_unknown_integration_is_404(lambda_context):
    status, body = call(lambda_context, "GET", "/integrations/deadbeef")
    assert status == 404
    assert body["error"]["code"] == "not_found"


def test_parked_is_empty_for_a_new_integration(integration, lambda_context):
    status, body = call(lambda_context, "GET", f"/integrations/{integration['id']}/parked")
    assert (status, body) == (200, {"items": []})


def test_deactivate_then_webhooks_are_acknowledged_not_queued(integration, lambda_context, sqs, queue_urls):
    iid = integration["id"]
    assert call(lambda_context, "POST", f"/integrations/{iid}/deactivate") == (200, {"active": False})
    hook = load_handler("alfacrm_webhook")
    path = integration["webhooks"]["alfacrm"].split("/prod", 1)[1]
    body = {
        "event": "create",
        "entity": "Customer",
        "entity_id": 5,
        "fields_old": [],
        "fields_new": [],
        "datetime": "2026-11-25 10:00:00",
    }
    reply = hook(api_event("POST", path, body=body), lambda_context)
    assert reply["statusCode"] == 200 and reply_json(reply)["queued"] is False


def _is_contract_error(body):
    """contract.md: every error is {"error": {"code": snake_case, "message": text, "field": path or null}}."""
    err = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(err, dict)
        and set(err) == {"code", "message", "field"}
        and isinstance(err["code"], str)
        and err["code"].replace("_", "").isalnum()
        and err["code"] == err["code"].lower()
        and isinstance(err["message"], str)
        and err["message"]
    )


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/integrations/abc/nothing-here"),
        ("OPTIONS", "/integrations"),
        ("DELETE", "/integrations/abc"),
        ("PATCH", "/integrations/abc/settings"),
    ],
)
def test_unknown_routes_and_methods_need_the_token_first(lambda_context, method, path):
    """Given no token, when an unknown route or method is called, then 401 (nothing about the route leaks)."""
    status, body = call(lambda_context, method, path, headers={})
    assert status == 401
    assert _is_contract_error(body) and body["error"]["code"] == "unauthorized"


def test_unknown_route_is_404_in_the_contract_error_shape(lambda_context):
    status, body = call(lambda_context, "GET", "/integrations/abc/nothing-here")
    assert status == 404
    assert _is_contract_error(body), body
    assert body["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("DELETE", "/integrations", {"GET", "POST"}),
        ("PATCH", "/integrations/abc/settings", {"PUT"}),
        ("GET", "/integrations/abc/replay", {"POST"}),
        ("OPTIONS", "/integrations/abc", {"GET", "DELETE"}),
    ],
)
def test_wrong_method_on_a_known_route_is_405_naming_the_allowed_methods(lambda_context, method, path, allowed):
    reply = admin_api(api_event(method, path, headers=AUTH), lambda_context)
    body = reply_json(reply)
    assert reply["statusCode"] == 405
    assert _is_contract_error(body), body
    assert body["error"]["code"] == "method_not_allowed"
    # API Gateway REST (v1) replies carry headers in either map
    headers = {k.lower(): v for k, v in (reply.get("headers") or {}).items()}
    headers.update({k.lower(): ", ".join(v) for k, v in (reply.get("multiValueHeaders") or {}).items()})
    assert set(headers["allow"].replace(" ", "").split(",")) == allowed


@pytest.mark.parametrize("path", ["/integrations", "/integrations/abc/settings"])
def test_malformed_json_is_400_saying_the_body_is_not_json(served_sandboxes, lambda_context, path):
    method = "POST" if path == "/integrations" else "PUT"
    reply = admin_api(api_event(method, path, raw=b'{"name": oops', headers=AUTH), lambda_context)
    body = reply_json(reply)
    assert reply["statusCode"] == 400
    assert _is_contract_error(body), body
    assert body["error"]["code"] == "invalid_json"
    assert body["error"]["field"] is None
    assert "JSON" in body["error"]["message"]
    assert call(lambda_context, "GET", "/integrations")[1]["items"] == []


# --- issue 8.7: UIS components (data_api/components/) -----------------------------------------------------
@pytest.fixture()
def components_off(served_sandboxes):
    """Switch components off in the shared UIS sandbox for one test."""
    uis = served_sandboxes["uis"]

    def off(*names):
        uis.set_components(disabled=names)

    yield off
    uis.set_components()


def test_create_refuses_a_uis_account_without_the_sales_funnel_component(
    served_sandboxes, lambda_context, components_off
):
    """Every deal method needs «Воронки продаж»: without it the flush would be deferred for ever, so creation
    answers 422 naming what is missing, and stores nothing."""
    components_off("sales_funnel")
    status, body = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))
    assert status == 422
    assert (body["error"]["code"], body["error"]["field"]) == ("uis_component_missing", "uis")
    assert "Воронки продаж" in body["error"]["message"] and "sales_funnel" in body["error"]["message"]
    assert call(lambda_context, "GET", "/integrations")[1]["items"] == []


def test_activation_with_chats_on_needs_a_chat_component(integration, served_sandboxes, lambda_context, components_off):
    iid = integration["id"]
    settings = {"texts": {"branch_id": 1, "chats": {"enabled": True}}}
    assert call(lambda_context, "PUT", f"/integrations/{iid}/settings", settings)[0] == 200
    components_off("call_tracking", "consultant", "lead", "sitephone")

    status, body = call(lambda_context, "POST", f"/integrations/{iid}/activate")

    assert status == 422 and body["error"]["code"] == "uis_component_missing"
    assert "Консультант" in body["error"]["message"] and "get.chats_report" in body["error"]["message"]
    assert call(lambda_context, "GET", f"/integrations/{iid}")[1]["active"] is False


def test_activation_without_the_visitors_component_still_activates(
    integration, served_sandboxes, lambda_context, components_off
):
    """«Data API для настройки» (get.visitors) only adds the visitor's name: without it the connector falls back."""
    iid = integration["id"]
    assert (
        call(lambda_context, "PUT", f"/integrations/{iid}/settings", {"texts": {"chats": {"enabled": True}}})[0] == 200
    )
    components_off("data_api_setup")
    assert call(lambda_context, "POST", f"/integrations/{iid}/activate") == (200, {"active": True})


def test_the_uis_accounts_zone_is_kept_from_creation(integration, lambda_context):
    shown = call(lambda_context, "GET", f"/integrations/{integration['id']}")[1]
    assert shown["uis"]["timezone"] == "Europe/Moscow"  # account/get_account: the account's IANA zone


# --- issue 8.11 and 8.13: pay items, the comment author ---------------------------------------------------
def test_pay_items_look_up_lists_items_with_their_pay_types(integration, lambda_context):
    status, body = call(lambda_context, "GET", f"/integrations/{integration['id']}/alfacrm/pay-items")
    assert status == 200
    assert {i["name"]: i["pay_type_ids"] for i in body["items"]}["Обучение"] == [1]


def test_settings_name_pay_items_and_a_comment_author_that_exist_in_alfacrm(integration, lambda_context):
    iid = integration["id"]
    good = {"deals": {"upsell": {"pay_item_ids": [1]}}, "texts": {"comment_author_id": 2}}
    status, body = call(lambda_context, "PUT", f"/integrations/{iid}/settings", good)
    assert status == 200 and body["deals"]["upsell"]["pay_item_ids"] == [1] and body["texts"]["comment_author_id"] == 2
    for doc, field in (
        ({"deals": {"upsell": {"pay_item_ids": [77]}}}, "deals.upsell.pay_item_ids"),
        ({"texts": {"comment_author_id": 99}}, "texts.comment_author_id"),
    ):
        status, body = call(lambda_context, "PUT", f"/integrations/{iid}/settings", doc)
        assert (status, body["error"]["field"]) == (422, field)


def test_texts_without_a_comment_author_need_the_api_user_to_be_known(served_sandboxes, lambda_context):
    """AlfaCRM may require `user_id` on communication/create: the author defaults to the API user, found among
    the account's users by its e-mail; an account whose users cannot be listed must name one."""
    alfacrm = served_sandboxes["alfacrm"]
    alfacrm.configure({"with_user_index": False})
    try:
        status, created = call(lambda_context, "POST", "/integrations", create_body(served_sandboxes))
        assert (
            status == 201
            and call(lambda_context, "GET", f"/integrations/{created['id']}")[1]["alfacrm"]["api_user_id"] is None
        )
        path = f"/integrations/{created['id']}/settings"
        status, body = call(lambda_context, "PUT", path, {"texts": {"requests": {"enabled": True}}})
        named = call(lambda_context, "PUT", path, {"texts": {"requests": {"enabled": True}, "comment_author_id": 2}})
    finally:
        alfacrm.configure({"with_user_index": True})
    assert status == 422 and body["error"]["field"] == "texts.comment_author_id"
    assert "comment_author_id" in body["error"]["message"] and "author" in body["error"]["message"]
    assert named[0] == 200


def test_the_api_user_is_found_at_creation(integration, lambda_context):
    shown = call(lambda_context, "GET", f"/integrations/{integration['id']}")[1]
    assert shown["alfacrm"]["api_user_id"] == 3  # the sandbox's API user, matched by its e-mail
