"""AlfaCRM models: loose types are coerced once, at the edge."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from connector.alfacrm.models import (
    Branch,
    Communication,
    Customer,
    IndexPage,
    LeadStatus,
    LogEntry,
    ModelEnvelope,
    Pay,
    WebhookEvent,
)
from pydantic import ValidationError


def test_given_a_customer_with_string_numbers_and_flags_when_parsed_then_the_rules_see_clean_types():
    # Given a record the way AlfaCRM sends it: ids and money as strings, 0/1 flags, dd.mm.yyyy dates
    raw = {
        "id": "145",
        "name": "Смирнова Анна",
        "is_study": "0",
        "lead_status_id": "3",
        "lead_source_id": "",
        "assigned_id": None,
        "branch_ids": ["1", 2],
        "teacher_ids": [],
        "phone": ["+7(999)999-99-99", ""],
        "email": "mail@mail.com",
        "dob": "03.12.2012",
        "balance": "575.00",
        "paid_count": "4",
        "created_at": "2025-07-31 09:44:10",
        "note": "",
        "removed": 1,
        "custom_yazik": "НМК",
        "custom_email": "",
        "color": "green",
    }

    # When
    customer = Customer.model_validate(raw)

    # Then
    assert customer.id == 145
    assert customer.is_study is False and customer.is_lead
    assert customer.lead_status_id == 3
    assert customer.lead_source_id is None and customer.note is None
    assert customer.branch_ids == [1, 2]
    assert customer.phone == ["+7(999)999-99-99"]  # stored as typed, blanks dropped
    assert customer.email == ["mail@mail.com"]  # a single value where a list is documented
    assert customer.dob == date(2012, 12, 3)
    assert customer.balance == Decimal("575.00")
    assert customer.paid_count == 4
    assert customer.created_at == datetime(2025, 7, 31, 9, 44, 10) and customer.created_at.tzinfo is None
    assert customer.is_archived
    assert customer.custom == {"custom_yazik": "НМК", "custom_email": ""}
    assert customer.model_extra == {"color": "green"}  # unknown fields are kept


@pytest.mark.parametrize("raw", ["2012-12-03", "03.12.2012", "2012-12-03 00:00:00"])
def test_given_either_date_format_when_parsed_then_the_same_date(raw):
    assert Customer.model_validate({"id": 1, "dob": raw}).dob == date(2012, 12, 3)


@pytest.mark.parametrize("raw,expected", [(0, False), (1, True), ("0", False), ("1", True), (True, True)])
def test_given_alfacrm_booleans_when_parsed_then_python_booleans(raw, expected):
    assert Customer.model_validate({"id": 1, "is_study": raw}).is_study is expected


def test_given_nonsense_in_a_typed_field_when_parsed_then_a_validation_error_names_it():
    with pytest.raises(ValidationError, match="lead_status_id"):
        Customer.model_validate({"id": 1, "lead_status_id": "three"})


def test_given_a_pay_as_in_a_create_webhook_when_parsed_then_money_and_ids_are_typed():
    # Given the fields_new of a captured Pay create (form strings, `confirmed` instead of `is_confirmed`)
    fields_new = {
        "customer_id": "119",
        "income": "10",
        "document_date": "2018-10-03",
        "branch_id": 1,
        "confirmed": True,
        "pay_account_id": "2",
        "pay_type_id": "9",
    }

    # When
    pay = Pay.model_validate({"id": 1502, **fields_new})

    # Then
    assert (pay.customer_id, pay.branch_id, pay.pay_type_id, pay.pay_account_id) == (119, 1, 9, 2)
    assert pay.income == Decimal("10") and pay.document_date == date(2018, 10, 3)
    assert pay.is_confirmed is True


def test_given_a_pay_record_from_the_api_when_parsed_then_decimal_income_and_russian_date():
    pay = Pay.model_validate({"id": "7", "income": "575.00", "document_date": "20.01.2025", "customer_id": ""})
    assert pay.income == Decimal("575.00") and pay.document_date == date(2025, 1, 20)
    assert pay.customer_id is None  # a payment without a customer is not a deal


def test_given_an_update_webhook_with_only_changed_fields_when_parsed_then_maps_are_partial_and_typed_later():
    # Given a Pay update as AlfaCRM sends it: no branch at the top, only the changed fields, `[]` for rel
    body = (
        '{"event":"update","entity":"Pay","entity_id":"1501",'
        '"fields_old":{"income":"11.00","commodity_id":14},'
        '"fields_new":{"income":"100","commodity_id":"16"},"fields_rel":[],'
        '"user_id":2,"datetime":"2018-10-03 16:44:40"}'
    )

    # When
    event = WebhookEvent.model_validate_json(body)

    # Then
    assert event.event == "update" and event.entity_id == 1501
    assert event.fields_new == {"income": "100", "commodity_id": "16"}
    assert "customer_id" not in event.fields_new  # the reason to re-read the pay before acting
    assert event.fields_rel == {}
    assert event.datetime == datetime(2018, 10, 3, 16, 44, 40)
    assert event.branch_for(default=7) == 7


def test_given_empty_maps_as_lists_or_missing_when_parsed_then_empty_dicts():
    event = WebhookEvent.model_validate(
        {"event": "create", "entity": "Customer", "entity_id": 5, "fields_old": [], "fields_new": []}
    )
    assert event.fields_old == {} and event.fields_new == {} and event.fields_rel == {}
    assert event.branch_id is None and event.user_id is None and event.datetime is None


@pytest.mark.parametrize(
    "payload,expected",
    [
        ({"branch_id": 2, "fields_new": {"branch_id": "3"}}, 2),
        ({"fields_new": {"branch_id": "3"}, "fields_old": {"branch_id": 4}}, 3),
        ({"fields_new": [], "fields_old": {"branch_id": 4}}, 4),
        ({"fields_new": {"branch_id": ""}}, 9),
        ({}, 9),
    ],
)
def test_given_where_the_branch_is_named_when_asked_then_top_level_then_new_then_old_then_default(payload, expected):
    event = WebhookEvent.model_validate({"event": "update", "entity": "Pay", "entity_id": 1, **payload})
    assert event.branch_for(default=9) == expected


def test_given_an_unknown_event_name_when_parsed_then_refused():
    with pytest.raises(ValidationError):
        WebhookEvent.model_validate({"event": "merge", "entity": "Customer", "entity_id": 1})


def test_given_lookup_records_when_parsed_then_flags_and_weights_are_typed():
    status = LeadStatus.model_validate({"id": "4", "name": "Оплатил", "is_enabled": "0", "weight": "5"})
    assert (status.id, status.is_enabled, status.weight) == (4, False, 5)
    branch = Branch.model_validate({"id": 1, "name": "Центральный", "is_active": 1, "subject_ids": ["1", "2"]})
    assert branch.subject_ids == [1, 2] and branch.is_active


def test_given_envelopes_when_parsed_then_pages_and_models_are_typed():
    page = IndexPage.model_validate({"total": "120", "count": 50, "page": "1", "items": []})
    assert (page.total, page.count, page.page, page.items) == (120, 50, 1, [])
    envelope = ModelEnvelope.model_validate({"success": True, "errors": [], "model": []})
    assert envelope.success and envelope.model == {}


def test_given_a_comment_and_a_log_row_when_parsed_then_class_and_time_are_typed():
    comment = Communication.model_validate(
        {
            "id": 1,
            "type_id": "1",
            "class": "Customer",
            "related_id": "3",
            "added": "2021-01-01 14:00:00",
            "comment": "Hi",
        }
    )
    assert comment.class_ == "Customer" and comment.related_id == 3 and comment.added == datetime(2021, 1, 1, 14)
    row = LogEntry.model_validate(
        {
            "entity": "Customer",
            "entity_id": "5",
            "event": "update",
            "fields_old": [],
            "date_time": "2025-03-03 10:00:00",
        }
    )
    assert row.entity_id == 5 and row.fields_old == {} and row.date_time == datetime(2025, 3, 3, 10)
