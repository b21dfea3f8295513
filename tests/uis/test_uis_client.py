"""UisClient against the sandbox: envelope, error mapping, limits and limit_exceeded handling."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from connector.errors import (
    UisAuthFailed,
    UisComponentMissing,
    UisError,
    UisForbidden,
    UisLimitExceeded,
    UisUnavailable,
    UisValidationError,
)
from connector.retry import RetryPolicy
from connector.uis.client import UisClient

from tests.uis.builders import API_URL, TOKEN, funnel_params


def test_every_request_is_one_jsonrpc_envelope_with_an_id_and_the_token_in_params(sandbox, make_client):
    # Given a client whose outgoing requests we can see
    seen: list[httpx.Request] = []
    client = make_client(sandbox, event_hooks={"request": [seen.append]})

    # When it makes two calls
    client.get_sites()
    client.get_tags()

    # Then each is a single JSON-RPC 2.0 object with its own id and the token inside params
    bodies = [json.loads(r.content) for r in seen]
    assert [b["method"] for b in bodies] == ["get.sites", "get.tags"]
    assert all(b["jsonrpc"] == "2.0" and b["params"]["access_token"] == TOKEN for b in bodies)
    assert bodies[0]["id"] != bodies[1]["id"]
    assert all(r.headers["content-type"] == "application/json; charset=UTF-8" for r in seen)
    assert all(str(r.url) == API_URL for r in seen)


def test_call_returns_data_and_metadata_and_tracks_limits_and_points(sandbox, client):
    # When two calls succeed
    result = client.call("get.sites", {})
    client.call("get.tags", {})

    # Then the result carries data + metadata and the client knows the budget left
    assert {s["domain_name"] for s in result["data"]} == {"school.ru", "camp.school.ru"}
    assert client.calls == 2 == sandbox.points_spent
    assert client.limits == {
        "day_limit": 3500,
        "day_remaining": 3498,
        "day_reset": client.limits["day_reset"],
        "minute_limit": 200,
        "minute_remaining": 198,
        "minute_reset": 30,
    }


@pytest.mark.parametrize("state", ["access_token_invalid", "access_token_expired", "access_token_blocked"])
def test_bad_token_raises_auth_failed_without_leaking_the_token(sandbox, make_client, state):
    # Given a token UIS does not accept
    sandbox.set_token(TOKEN, state)
    client = make_client(sandbox)

    # When a call is made
    with pytest.raises(UisAuthFailed) as caught:
        client.get_sites()

    # Then the error names the mnemonic, is final, and never shows the token
    assert caught.value.mnemonic == state and caught.value.rpc_code == -32001
    assert not caught.value.retryable
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value) and TOKEN not in repr(client)
    assert sandbox.points_spent == 0


def test_unknown_token_is_access_token_invalid(sandbox, make_client):
    client = make_client(sandbox, token="someone-elses-token")
    with pytest.raises(UisAuthFailed) as caught:
        client.check_auth()
    assert caught.value.mnemonic == "access_token_invalid"


def test_check_auth_passes_with_a_valid_token_for_one_point_and_tells_the_accounts_zone(sandbox, client):
    # account/get_account needs no component: a school without the site components can still connect
    sandbox.set_components(enabled=["sales_funnel"])
    assert client.check_auth()["timezone"] == "Europe/Moscow"
    assert sandbox.points_spent == 1


@pytest.mark.parametrize("mnemonic", ["ip_not_whitelisted", "forbidden"])
def test_rights_errors_raise_forbidden(sandbox, client, mnemonic):
    # Given UIS refuses the caller's IP or rights
    sandbox.fail("error", code=-32003, mnemonic=mnemonic, message="Forbidden")

    # Then the client raises the named error, not retried
    with pytest.raises(UisForbidden) as caught:
        client.get_sites()
    assert caught.value.mnemonic == mnemonic and not caught.value.retryable


def test_validation_error_carries_field_value_and_mnemonic(sandbox, client):
    # Given a funnel exists
    client.create_sales_funnel(**_funnel_kwargs())

    # When the same ext_id is created again
    with pytest.raises(UisValidationError) as caught:
        client.create_sales_funnel(**_funnel_kwargs())

    # Then UIS's mnemonic, field and value reach the caller
    error = caught.value
    assert (error.mnemonic, error.field, error.value, error.rpc_code) == (
        "duplicate_entity",
        "ext_id",
        "first_sale",
        -32602,
    )
    assert not error.retryable


def test_an_inactive_account_is_unavailable_and_left_for_a_later_attempt(sandbox, client, clock):
    # Given UIS answers that the account is off
    sandbox.fail("error", code=-32009, mnemonic="account_inactive", count=1)

    # Then the call raises a retryable UisUnavailable at once (no in-process waiting)
    with pytest.raises(UisUnavailable) as caught:
        client.get_sites()
    assert caught.value.retryable and caught.value.rpc_code == -32009
    assert clock.sleeps == []


def test_a_component_switched_off_is_component_missing_naming_it_and_not_retried(sandbox, client, clock):
    # data_api/index.html: -32008 method_component_disabled, "... following components ...: {components}"
    sandbox.set_components(disabled=["consultant", "lead", "upload_offline_messages"])
    with pytest.raises(UisComponentMissing) as caught:
        client.get_offline_messages_report(datetime(2025, 3, 10), datetime(2025, 3, 10, 1))
    assert caught.value.components == ["consultant", "lead", "upload_offline_messages"]
    assert caught.value.code == "uis_component_missing" and not caught.value.retryable
    assert clock.sleeps == [] and sandbox.points_spent == 0


def test_http_500_is_retried_and_then_succeeds(sandbox, client):
    # Given the next call gets an HTTP 500
    sandbox.fail("http", http_status=500, count=1)

    # When a call is made, Then it succeeds on the retry
    assert client.get_tags()
    assert sandbox.points_spent == 1


def test_a_write_whose_answer_is_lost_is_not_sent_again(sandbox, client):
    # Given UIS applies the next create but its answer never arrives (a 504 from a gateway)
    sandbox.fail("applied", method="create.deal_employees", http_status=504)

    # When the client creates an employee
    with pytest.raises(UisUnavailable) as caught:
        client.create_deal_employee("user-2", "Ольга")

    # Then it says the outcome is unknown instead of sending a second create, and UIS has the employee once
    assert caught.value.ambiguous and caught.value.retryable
    assert [c["method"] for c in sandbox.rpc_log] == ["create.deal_employees"]
    assert client.get_deal_employees() == [{"ext_id": "user-2", "name": "Ольга"}]


def test_a_read_whose_answer_is_lost_is_read_again(sandbox, client):
    sandbox.fail("applied", method="get.tags", http_status=502)
    assert client.get_tags()
    assert [c["method"] for c in sandbox.rpc_log] == ["get.tags", "get.tags"]


def test_persistent_5xx_raises_unavailable(sandbox, client):
    sandbox.fail("http", http_status=503, count=10)
    with pytest.raises(UisUnavailable) as caught:
        client.get_tags()
    assert caught.value.retryable


def test_transport_error_raises_unavailable():
    # Given a network that never connects
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = UisClient(
        API_URL,
        TOKEN,
        http=httpx.Client(transport=httpx.MockTransport(refuse)),
        retry=RetryPolicy(attempts=2, sleep=lambda s: None),
    )

    # Then the client raises the retryable UIS error (with no token in it)
    with pytest.raises(UisUnavailable) as caught:
        client.get_sites()
    assert caught.value.mnemonic == "transport_error" and TOKEN not in str(caught.value)


def test_unknown_method_is_a_plain_uis_error(client):
    with pytest.raises(UisError) as caught:
        client.call("get.nothing_like_this", {})
    assert caught.value.rpc_code == -32601 and type(caught.value) is UisError


def test_limit_exceeded_waits_for_the_minute_reset_then_succeeds(make_sandbox, make_client, clock):
    # Given a minute budget of 2 points, both spent
    sandbox = make_sandbox(minute_limit=2)
    client = make_client(sandbox)
    client.get_sites()
    client.get_sites()

    # When a third call is made in the same minute
    tags = client.get_tags()

    # Then the client slept exactly until the minute reset (30 s) and the call succeeded
    assert clock.sleeps == [30.0]
    assert {t["name"] for t in tags} >= {"Лид", "Спам", "Пробное"}
    assert sandbox.points_spent == 3


def test_limit_exceeded_without_limits_in_the_error_uses_the_last_known_limits(make_sandbox, make_client, clock):
    # Given UIS's error does not repeat the limits, and 10 s passed since the last successful call
    sandbox = make_sandbox(minute_limit=1, limits_in_errors=False)
    client = make_client(sandbox)
    client.get_sites()
    clock.advance(10)

    # When the next call hits the spent minute budget
    client.get_sites()

    # Then the wait is the last reported reset minus the time already elapsed
    assert clock.sleeps == [20.0]
    assert client.limits is not None and client.limits["minute_remaining"] == 0


def test_limit_exceeded_with_a_long_reset_raises_for_a_later_attempt(make_sandbox, make_client, clock):
    # Given the day budget is spent (it resets at local midnight, hours away)
    sandbox = make_sandbox(day_limit=1)
    client = make_client(sandbox)
    client.get_sites()

    # When another call is made
    with pytest.raises(UisLimitExceeded) as caught:
        client.get_sites()

    # Then nothing slept in-process and the error says how long to wait
    midnight = datetime(2025, 3, 11)
    assert caught.value.retryable
    assert caught.value.reset_after == (midnight - clock.now).total_seconds()
    assert clock.sleeps == []


def test_injected_limit_exceeded_is_waited_out(sandbox, client, clock):
    # Given a healthy budget but UIS answers limit_exceeded once (another container spent the minute)
    client.get_sites()
    sandbox.fail("limit_exceeded", count=1)

    # Then the client waits for the minute reset and succeeds
    assert client.get_sites()
    assert clock.sleeps == [30.0]


def test_upload_refuses_more_than_1000_rows_before_spending_a_point(sandbox, client):
    with pytest.raises(ValueError, match="1000"):
        client.upload_deals_history([{"ext_id": str(i)} for i in range(1001)])
    assert sandbox.points_spent == 0


def test_report_calls_name_their_columns_and_refuse_undocumented_ones_before_spending(sandbox, client):
    seen: list[str] = []
    chat = sandbox.start_chat(chat_channel_type="whatsapp", visitor_phone_number="79161234567")
    sandbox.tag_chat(chat["id"], 503)
    [row] = client.get_chats_report(datetime(2025, 3, 10), datetime(2025, 3, 10, 23))
    # channel, site domain and tags are not default columns of get.chats_report: asked for by name
    assert (row["chat_channel_type"], row["site_domain_name"]) == ("whatsapp", "school.ru")
    assert [t["tag_name"] for t in row["tags"]] == ["Пробное"]
    with pytest.raises(ValueError, match="visitor_name"):
        client.get_chats_report(datetime(2025, 3, 10), datetime(2025, 3, 10, 23), fields=["id", "visitor_name"])
    assert sandbox.points_spent == 1 and not seen


def test_visitors_are_read_in_batches_by_id(sandbox, client):
    chats = [sandbox.start_chat(visitor_name=f"Гость {i}", visitor_email=f"g{i}@x.ru") for i in range(3)]
    visitors = client.get_visitors([c["visitor_id"] for c in chats] + [chats[0]["visitor_id"]])
    assert [(v["name"], v["emails"]) for v in visitors] == [(f"Гость {i}", [f"g{i}@x.ru"]) for i in range(3)]
    assert [c["method"] for c in sandbox.rpc_log] == ["get.visitors"]


def test_visitors_need_the_data_api_setup_component(sandbox, client):
    sandbox.set_components(disabled=["data_api_setup"])
    with pytest.raises(UisComponentMissing):
        client.get_visitors([3000001])


def test_report_dates_must_be_naive_local_times(client):
    from zoneinfo import ZoneInfo

    aware = datetime(2025, 3, 1, tzinfo=ZoneInfo("UTC"))
    with pytest.raises(ValueError, match="zone-less"):
        client.get_chats_report(aware, aware)


def test_a_container_has_one_client_per_account():
    from connector.config import Environment
    from connector.runtime import Runtime

    from tests.conftest import AWS

    accounts = Runtime(Environment(), aws=AWS).accounts
    a = accounts.uis_for("https://dataapi.uiscom.ru/v2.0", "token-a")
    assert accounts.uis_for("https://dataapi.uiscom.ru/v2.0", "token-a") is a
    assert accounts.uis_for("https://dataapi.uiscom.ru/v2.0", "token-b") is not a
    assert accounts.uis_for("https://dataapi.comagic.ru/v2.0", "token-a") is not a
    assert "token-a" not in repr(a)


def _funnel_kwargs() -> dict[str, Any]:
    params = funnel_params()
    stages = params["stages"]
    return {
        "ext_id": params["ext_id"],
        "name": params["name"],
        "success": stages["success"],
        "failed": stages["failed"],
        "in_process": stages["in_process"],
    }


def test_current_limits_count_down_and_expire_with_the_accounts_day(sandbox, client, clock):
    """Given limits seen once, when time passes, then the resets count down, a past minute restores the
    minute budget, and after the day's reset the client no longer claims to know the budget."""
    client.call("get.sites", {})
    seen = client.current_limits()
    assert seen is not None and seen["day_remaining"] == 3499
    clock.advance(45)
    later = client.current_limits()
    assert later["day_reset"] == seen["day_reset"] - 45
    assert later["minute_remaining"] == 200  # the minute that spent the point is over
    clock.advance(seen["day_reset"])
    assert client.current_limits() is None
