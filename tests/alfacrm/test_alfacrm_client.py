"""AlfaCrmClient against the AlfaCRM sandbox: login and tokens, errors, retries, paging, helpers."""

from __future__ import annotations

import itertools
import json
from datetime import date
from decimal import Decimal

import httpx
import pytest
from connector.alfacrm.client import (
    COMMENT_MAX_CHARS,
    AlfaCrmClient,
    base_url,
    format_errors,
)
from connector.errors import AlfaCrmAuthFailed, AlfaCrmUnavailable, AlfaCrmValidationError
from connector.retry import RateLimiter, RetryPolicy

from tests.alfacrm.conftest import HOST
from tools.sandboxes.alfacrm import (
    API_USER_ID,
    DEFAULT_API_KEY,
    DEFAULT_EMAIL,
    MANAGER_API_KEY,
    MANAGER_EMAIL,
    AlfaCrmSandbox,
)

# --- login and tokens ---------------------------------------------------------------------------------------


def test_given_a_fresh_client_when_it_makes_three_calls_then_it_logs_in_once_and_reuses_the_token(sandbox, client):
    # When
    statuses = client.lead_statuses(branch_id=1)
    client.branches()
    client.get_customer(1, branch_id=1)

    # Then
    assert [s.name for s in statuses][:2] == ["Новый", "Связались"]
    assert sandbox.stats["login"] == 1
    assert client.calls == 4  # the login counts


def test_given_a_token_cached_by_one_client_when_another_client_of_the_account_calls_then_no_new_login(
    sandbox, make_client
):
    make_client(sandbox).branches()
    make_client(sandbox).branches()
    assert sandbox.stats["login"] == 1


def test_given_tokens_expired_on_the_server_when_a_call_is_made_then_exactly_one_relogin_and_it_succeeds(
    sandbox, client
):
    # Given a logged-in client whose token AlfaCRM has since dropped
    client.branches()
    sandbox.expire_tokens()

    # When
    customer = client.get_customer(1, branch_id=1)

    # Then the call returned the customer after one 401 and one re-login
    assert customer is not None and customer.name == "Смирнова Анна Сергеевна"
    assert sandbox.stats["unauthorized"] == 1
    assert sandbox.stats["login"] == 2


def test_given_14_minutes_passed_when_a_call_is_made_then_the_client_renews_the_token_before_it_dies(
    sandbox, client, clock
):
    client.branches()
    clock.advance(14 * 60 + 1)
    client.branches()
    assert sandbox.stats["login"] == 2
    assert sandbox.stats["unauthorized"] == 0  # renewed early, never rejected


def test_given_a_wrong_api_key_when_logging_in_then_auth_failed_and_the_key_is_nowhere(sandbox, make_client):
    secret = "wrong-key-0123456789abcdef"
    client = make_client(sandbox, api_key=secret)

    with pytest.raises(AlfaCrmAuthFailed) as caught:
        client.login()

    assert "403" in str(caught.value) and "v2api" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(caught.value)
    assert secret not in repr(client) and DEFAULT_EMAIL not in repr(client)
    assert not caught.value.retryable


def test_given_a_user_whose_role_lacks_v2api_when_calling_then_auth_failed(sandbox, make_client):
    client = make_client(sandbox, email=MANAGER_EMAIL, api_key=MANAGER_API_KEY)
    with pytest.raises(AlfaCrmAuthFailed):
        client.branches()
    assert sandbox.stats["login"] == 1  # 403 is not retried


# --- errors -------------------------------------------------------------------------------------------------


def test_given_a_required_field_when_a_lead_lacks_it_then_validation_error_names_the_field_and_nothing_is_created(
    sandbox, client
):
    # Given an account where the lead source is required
    sandbox.configure({"required_customer_fields": ["name", "lead_source_id"]})
    before = len(sandbox.customers)

    # When
    with pytest.raises(AlfaCrmValidationError) as caught:
        client.create_customer({"name": "Новый лид", "phone": ["+79990001122"], "is_study": 0}, branch_id=1)

    # Then (AlfaCRM answered HTTP 200 with success=false)
    assert "lead_source_id: Необходимо заполнить «Источник»" in str(caught.value)
    assert caught.value.field == "lead_source_id"
    assert caught.value.errors == {"lead_source_id": ["Необходимо заполнить «Источник»."]}
    assert len(sandbox.customers) == before


@pytest.mark.parametrize("style", ["list", "yii"])
def test_given_other_error_shapes_when_refused_then_the_message_still_reads_clearly(sandbox, client, style):
    sandbox.configure({"error_style": style, "required_customer_fields": ["name", "lead_source_id"]})
    with pytest.raises(AlfaCrmValidationError, match="Необходимо заполнить «Источник»"):
        client.create_customer({"name": "Лид"}, branch_id=1)


def test_given_an_unknown_lead_status_when_creating_then_alfacrm_refuses_it_with_the_field(client):
    with pytest.raises(AlfaCrmValidationError, match="lead_status_id"):
        client.create_customer({"name": "Лид", "lead_status_id": 999}, branch_id=1)


def test_format_errors_accepts_a_list_or_a_field_map():
    assert format_errors(["First error"]) == ("First error", None)
    assert format_errors({"name": ["Пусто", "Коротко"], "phone": "Неверно"}) == (
        "name: Пусто; Коротко; phone: Неверно",
        "name",
    )


def test_given_a_burst_above_alfacrm_limit_when_calls_go_unthrottled_then_429s_are_backed_off_and_all_succeed(
    sandbox, make_client, clock
):
    # Given a client with no spacing of its own (AlfaCRM answers >5 requests/s with 429)
    client = make_client(sandbox, rps=0)

    # When it fires ten reads in the same second
    names = [client.get_customer(1, branch_id=1).name for _ in range(10)]

    # Then every read returned the customer, after waiting the second AlfaCRM's 429 asks for each time
    assert names == ["Смирнова Анна Сергеевна"] * 10
    assert sandbox.stats["throttled"] >= 1
    assert clock.sleeps == [1.0] * sandbox.stats["throttled"]


def test_given_a_429_without_any_hint_when_calling_then_the_policy_backs_off_with_jitter(sandbox, make_client, clock):
    # Given a 429 whose body names no wait (a proxy's, say)
    client = make_client(sandbox, rps=0)
    client.branches()
    sandbox.fail_next(429, count=2)
    sandbox.configure({"throttle_message": "Too Many Requests"})

    # When
    branches = client.branches()

    # Then two jittered back-offs within the policy's bounds, then the answer
    assert [b.id for b in branches] == [1, 2]
    assert len(clock.sleeps) == 2 and all(0 <= pause <= RetryPolicy().cap for pause in clock.sleeps)


def test_given_a_429_with_retry_after_when_calling_then_exactly_that_wait_is_honoured(sandbox, client, clock):
    client.branches()
    sandbox.fail_next(429, count=1, retry_after=1.5)

    branches = client.branches()

    assert [b.name for b in branches] == ["Центральный", "Северный"]
    assert 1.5 in clock.sleeps


def test_given_a_server_error_that_persists_when_calling_then_bounded_retries_and_unavailable(
    sandbox, make_client, clock
):
    client = make_client(sandbox, rps=0)  # no spacing: every recorded sleep is a retry back-off
    client.branches()
    sandbox.fail_next(500, count=10)
    sleeps_before = len(clock.sleeps)

    with pytest.raises(AlfaCrmUnavailable) as caught:
        client.branches()

    assert caught.value.retryable
    assert len(clock.sleeps) - sleeps_before == RetryPolicy().attempts - 1
    assert sandbox.stats["requests"] == 2 + RetryPolicy().attempts  # login + first call + 4 attempts


def test_given_two_server_errors_when_calling_then_the_third_attempt_answers(sandbox, client):
    sandbox.fail_next(502, count=2)
    assert client.get_customer(2, branch_id=1).name == "Петров Илья"


def test_given_the_network_fails_when_calling_then_unavailable_without_real_sleeps(clock):
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    http = httpx.Client(transport=httpx.MockTransport(broken))
    client = AlfaCrmClient(
        "school.s20.online", DEFAULT_EMAIL, DEFAULT_API_KEY, http=http, retry=RetryPolicy(sleep=clock.sleep), rps=0
    )
    with pytest.raises(AlfaCrmUnavailable, match="ConnectTimeout"):
        client.login()
    assert client.calls == RetryPolicy().attempts


def test_given_a_create_hits_a_server_error_when_sent_then_it_is_not_repeated_so_no_duplicate_lead(
    sandbox, make_client, clock
):
    # Given a 5xx on the create (AlfaCRM may or may not have saved the lead)
    client = make_client(sandbox, rps=0)
    client.branches()
    before = len(sandbox.customers)
    sandbox.fail_next(500, count=1)

    # When / Then: one attempt, a retryable error for the worker, who re-checks before trying again
    with pytest.raises(AlfaCrmUnavailable) as caught:
        client.create_customer({"name": "Лид из чата", "phone": ["+79990000002"]}, branch_id=1)
    assert caught.value.retryable and clock.sleeps == []
    assert sandbox.stats["customer/create"] == 0 and len(sandbox.customers) == before


def test_given_a_create_is_throttled_when_sent_then_it_is_repeated_and_exactly_one_lead_exists(sandbox, client):
    sandbox.fail_next(429, count=1)
    lead = client.create_customer({"name": "Лид из чата", "phone": ["+79990000003"]}, branch_id=1)
    assert [c.id for c in client.find_customers(branch_id=1, phone="+79990000003")] == [lead.id]


def test_given_a_create_whose_answer_is_lost_when_sent_then_it_is_not_repeated(clock):
    sent: list[str] = []

    def lost_answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if request.url.path.endswith("auth/login"):
            return httpx.Response(200, json={"token": "b" * 32})
        raise httpx.ReadTimeout("read timed out", request=request)

    client = AlfaCrmClient(
        "school.s20.online",
        DEFAULT_EMAIL,
        DEFAULT_API_KEY,
        http=httpx.Client(transport=httpx.MockTransport(lost_answer)),
        retry=RetryPolicy(sleep=clock.sleep),
        rps=0,
    )
    with pytest.raises(AlfaCrmUnavailable, match="ReadTimeout"):
        client.add_comment(1, "Текст", branch_id=1)
    assert sent == ["/v2api/auth/login", "/v2api/1/communication/create"]


# --- URLs, paging, query strings ------------------------------------------------------------------------------


def test_base_url_adds_https_to_a_bare_host_and_keeps_a_given_scheme():
    assert base_url("school.s20.online") == "https://school.s20.online/v2api/"
    assert base_url("http://127.0.0.1:8081/") == "http://127.0.0.1:8081/v2api/"


def test_given_each_kind_of_call_when_sent_then_urls_bodies_and_headers_are_as_alfacrm_expects(clock):
    # Given a client against a recording fake AlfaCRM
    seen: list[httpx.Request] = []

    def fake(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("auth/login"):
            return httpx.Response(200, json={"token": "a" * 32})
        if request.url.path.endswith("/index"):
            return httpx.Response(200, json={"total": 0, "count": 0, "page": 0, "items": []})
        return httpx.Response(200, json={"success": True, "errors": [], "model": {"id": 9}})

    client = AlfaCrmClient(
        "school.s20.online",
        DEFAULT_EMAIL,
        DEFAULT_API_KEY,
        http=httpx.Client(transport=httpx.MockTransport(fake)),
        rps=0,
    )

    # When
    client.branches()
    client.add_comment(5, "Привет", branch_id=2)
    client.update("customer", 5, {"note": "x"}, branch_id=2)
    client.index("customer-tariff", {}, branch_id=2, query={"customer_id": 5})

    # Then
    assert [(r.method, str(r.url)) for r in seen] == [
        ("POST", "https://school.s20.online/v2api/auth/login"),
        ("POST", "https://school.s20.online/v2api/branch/index"),
        ("POST", "https://school.s20.online/v2api/2/communication/create?class=Customer&related_id=5"),
        ("POST", "https://school.s20.online/v2api/2/customer/update?id=5"),
        ("POST", "https://school.s20.online/v2api/2/customer-tariff/index?customer_id=5"),
    ]
    assert json.loads(seen[0].content) == {"email": DEFAULT_EMAIL, "api_key": DEFAULT_API_KEY}
    assert "x-alfacrm-token" not in seen[0].headers
    assert all(r.headers["x-alfacrm-token"] == "a" * 32 for r in seen[1:])
    assert json.loads(seen[2].content) == {"type_id": 1, "comment": "Привет"}
    assert json.loads(seen[1].content) == {"page": 0}


def test_given_120_customers_when_iterating_then_three_pages_of_50_yield_them_all(clock, inbox, make_client):
    # Given
    sandbox = AlfaCrmSandbox(clock=clock, sender=inbox, seed=False)
    ids = sandbox.add_customers(120, is_study=0)
    client = make_client(sandbox)

    # When
    items = list(client.iter_all("customer", {"is_study": 2, "page_size": 500}, branch_id=1))

    # Then
    assert sorted(int(item["id"]) for item in items) == ids
    assert sandbox.stats["customer/index"] == 3


def test_given_leads_and_archived_customers_when_reading_by_id_then_both_are_found(client):
    lead = client.get_customer(2, branch_id=1)
    archived = client.get_customer(4, branch_id=1)
    assert lead is not None and lead.is_lead and lead.phone == ["89161234568"]
    # no record carries an archive flag; the archived lead shows its refusal reason
    assert archived is not None and archived.lead_reject_id == 1
    assert client.get_customer(999, branch_id=1) is None


def test_given_a_payment_when_read_then_string_money_and_ids_arrive_typed(client):
    pay = client.get_pay(1, branch_id=1)
    assert pay is not None
    assert pay.income == Decimal("4500.00") and pay.customer_id == 1 and isinstance(pay.document_date, date)


# --- finding customers (de-duplication) ----------------------------------------------------------------------


def test_given_a_phone_typed_differently_when_searching_then_the_customer_is_found_by_e164(client):
    # Given customer 1 stored as "+7(916)123-45-67" and lead 2 as "89161234568"
    # When / Then
    assert [c.id for c in client.find_customers(branch_id=1, phone="+7 916 123-45-67")] == [1]
    assert [c.id for c in client.find_customers(branch_id=1, phone="79161234568")] == [2]
    assert [c.id for c in client.find_customers(branch_id=1, phone="+79035551234")] == [4]  # archived too


def test_given_a_server_candidate_with_another_country_when_searching_then_it_is_rejected(sandbox, client):
    # Given a number whose digits contain the searched ones, which a loose server match returns
    sandbox.ui_create_customer({"name": "Чужой", "is_study": 1, "phone": ["+1 (916) 123-4567"]})

    found = client.find_customers(branch_id=1, phone="8 916 123 45 67")

    assert [c.name for c in found] == ["Смирнова Анна Сергеевна"]


def test_given_an_email_in_other_case_when_searching_then_found(client):
    assert [c.id for c in client.find_customers(branch_id=2, email="Oleg.K@Example.com")] == [3]
    assert client.find_customers(branch_id=1, email="nobody@example.com") == []


# --- writing ----------------------------------------------------------------------------------------------------


def test_given_a_new_lead_when_created_then_alfacrm_holds_it_with_our_fields(sandbox, client):
    lead = client.create_customer(
        {
            "name": "Кузнецов Павел",
            "phone": ["+79991112233"],
            "is_study": 0,
            "legal_type": 1,
            "lead_status_id": 1,
            "lead_source_id": 2,
            "custom_utm_source": "google",
        },
        branch_id=2,
    )
    stored = sandbox.state()["customers"][-1]
    assert lead.id == stored["id"] and lead.branch_ids == [2] and lead.custom["custom_utm_source"] == "google"
    assert stored["name"] == "Кузнецов Павел" and stored["phone"] == ["+79991112233"]
    assert [c.id for c in client.find_customers(branch_id=2, phone="89991112233")] == [lead.id]


def test_given_a_customer_in_one_branch_when_adding_another_then_branches_are_merged_not_replaced(sandbox, client):
    updated = client.update_customer(2, {"branch_ids": [2], "note": "Перевели"}, branch_id=1)
    assert updated.branch_ids == [1, 2]
    assert sandbox.customers[2]["branch_ids"] == [1, 2] and sandbox.customers[2]["note"] == "Перевели"


def test_given_a_customer_when_commenting_then_the_comment_is_on_the_card_by_our_user(sandbox, client):
    created = client.add_comment(2, "Чат с сайта: хочет на пробное", branch_id=1)
    assert sandbox.comments_for(2) == ["Чат с сайта: хочет на пробное"]
    assert int(created["user_id"]) == API_USER_ID
    assert [c["comment"] for c in client.comments(2, branch_id=1)] == ["Чат с сайта: хочет на пробное"]


def test_given_a_transcript_longer_than_the_limit_when_commenting_then_it_is_split_without_losing_text(sandbox, client):
    lines = [f"Оператор: ответ номер {n}" for n in range(200)]
    client.add_comment(1, "\n".join(lines), branch_id=1)
    parts = sandbox.comments_for(1)
    assert len(parts) > 1 and all(len(part) <= COMMENT_MAX_CHARS + 10 for part in parts)
    assert parts[0].startswith(f"(1/{len(parts)}) ")
    assert all(line in "\n".join(parts) for line in lines)


def test_given_a_lost_chat_when_a_task_is_created_then_alfacrm_holds_it_for_the_managers(sandbox, client):
    client.create_task(
        branch_id=1,
        title="Потерянный чат: Илья +79161234568",
        text="Посетитель не дождался ответа",
        customer_ids=[2],
        assigned_ids=[2],
        due_date=date(2025, 3, 4),
    )
    (task,) = sandbox.state()["tasks"]
    assert task["title"] == "Потерянный чат: Илья +79161234568"
    assert (task["customer_ids"], task["assigned_ids"], task["due_date"]) == ([2], [2], "2025-03-04")


# --- look-ups ----------------------------------------------------------------------------------------------------


def test_given_the_account_when_reading_look_ups_then_the_settings_form_gets_ordered_named_lists(client):
    assert [s.name for s in client.lead_statuses(branch_id=1)] == [
        "Новый",
        "Связались",
        "Записан на пробное",
        "Пробное проведено",  # id 7, but weight 4: AlfaCRM's order wins
        "Оплатил",
        "Отказ",
        "Не дозвонились",
    ]
    assert [s.code for s in client.lead_sources(branch_id=1)] == ["site", "chat", "call", "friend"]
    assert [t.name for t in client.teachers(branch_id=2)] == ["Волков Игорь Петрович", "Лебедева Мария Андреевна"]
    assert API_USER_ID in [u.id for u in client.users(branch_id=1)]
    fields = client.customer_fields(branch_id=1)
    assert {"name", "phone", "lead_source_id", "custom_utm_source", "custom_child_age"} <= set(fields)


def test_given_an_account_without_user_index_when_listing_users_then_empty_not_invented(sandbox, client):
    sandbox.configure({"with_user_index": False})
    assert client.users(branch_id=1) == []


# --- spacing and caching -------------------------------------------------------------------------------------------


def test_given_two_requests_per_second_when_calling_quickly_then_requests_are_spaced_half_a_second(
    sandbox, make_client, clock
):
    sent_at: list[float] = []
    client = make_client(sandbox, rps=2, event_hooks={"request": [lambda _r: sent_at.append(clock.monotonic())]})

    for _ in range(3):
        client.branches()

    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert len(sent_at) == 4 and all(gap >= 0.5 for gap in gaps)
    assert sandbox.stats["throttled"] == 0


def test_given_one_limiter_when_two_clients_of_one_account_call_then_they_share_the_spacing(sandbox, clock):
    limiter = RateLimiter(2, clock=clock.monotonic, sleep=clock.sleep)
    http = httpx.Client(transport=httpx.WSGITransport(app=sandbox.app))
    clients = [
        AlfaCrmClient(HOST, DEFAULT_EMAIL, DEFAULT_API_KEY, http=http, limiter=limiter, clock=clock.monotonic)
        for _ in range(2)
    ]
    clients[0].branches()
    clients[1].branches()
    assert clock.monotonic() >= 1.0  # login + 2 calls, 0.5 s apart, across both clients


def test_a_container_has_one_client_per_account_and_a_new_container_a_new_one():
    from connector.config import Environment
    from connector.runtime import Runtime

    from tests.conftest import AWS

    accounts = Runtime(Environment(), aws=AWS).accounts
    first = accounts.alfacrm_for("school.s20.online", DEFAULT_EMAIL, DEFAULT_API_KEY)
    assert accounts.alfacrm_for("school.s20.online", DEFAULT_EMAIL, DEFAULT_API_KEY) is first
    assert accounts.alfacrm_for("school.s20.online", DEFAULT_EMAIL, "rotated-key") is not first
    fresh = Runtime(Environment(), aws=AWS).accounts
    assert fresh.alfacrm_for("school.s20.online", DEFAULT_EMAIL, DEFAULT_API_KEY) is not first
