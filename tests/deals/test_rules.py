"""The deal rules of architecture.md, one test (or a few) per rule; pure, no I/O."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest
from connector.alfacrm.models import Customer, WebhookEvent
from connector.deals import drafts, funnels, paths, snapshots
from connector.models.deals import DealRecord, PayInfo, Step
from connector.models.texts import CustomerLink
from connector.uis import deal_rows

from tests.deals.builders import TZ, Timeline, customer, pay, settings, utc, webhook

DIRECTORY = drafts.Directory(
    teachers={1: "Соколова Анна Викторовна", 2: "Волков Игорь Петрович", 3: "Лебедева Мария Андреевна"},
    branches={1: "Центральный", 2: "Северный"},
)
NOW = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)


def path_of(snap, deal_settings=None):
    return [(s.stage, s.at) for s in paths.customer_path(snap, deal_settings or settings())]


def deals_of(snap, deal_settings=None, link=None):
    return {d.ext_id: d for d in drafts.derive_deals(snap, deal_settings or settings(), DIRECTORY, link)}


def record(draft, at="2025-03-03T07:00:00Z"):
    deal = drafts.apply_draft(None, draft, at=at, source_version=1)
    assert deal is not None
    return deal


def uploaded(deal: DealRecord) -> DealRecord:
    """The deal as it is once UIS has everything it holds now."""
    return deal.model_copy(
        update={
            "uploaded": drafts.history(deal),
            "uploaded_sig": drafts.signature(deal),
            "uploaded_contact_sig": deal.contact_sig,
            "upload_state": "uploaded",
        }
    )


def lead_created(t: Timeline, status=1, at="2025-03-03 10:00:00", read="2025-03-03 10:00:01", **reread):
    body = webhook("Customer", 7, "create", new={"name": "Петров Илья", "is_study": 0, "lead_status_id": status}, at=at)
    return t.customer_event(body, customer(lead_status_id=status, created_at=at, **reread), read)


def status_change(t: Timeline, old, new, at, read=None, **reread):
    body = webhook("Customer", 7, new={"lead_status_id": new}, old={"lead_status_id": old}, at=at)
    fields = {"lead_status_id": new, **reread}
    return t.customer_event(body, customer(**fields), read or at)


# --- stage history with AlfaCRM's times, in the integration's zone ---------------------------------------
def test_stage_rows_carry_alfacrms_times_stored_utc_and_sent_local():
    # Given a lead created at 10:00 Moscow time that moved to status 2 at 11:30
    t = Timeline()
    lead_created(t)
    snap = status_change(t, 1, 2, "2025-03-03 11:30:00")
    # When its first-sale deal is derived and uploaded
    deal = record(deals_of(snap)["customer-7"])
    rows = deal_rows.upload_rows(deal, drafts.rows_to_send(deal), tz=TZ, now=NOW)
    # Then the history is stored in UTC and UIS gets the local wall times, one row per transition
    assert [(s.stage, s.at) for s in deal.path] == [("1", "2025-03-03T07:00:00Z"), ("2", "2025-03-03T08:30:00Z")]
    assert [(r["stage_ext_id"], r["modified_stage_date_time"]) for r in rows] == [
        ("1", "2025-03-03 10:00:00"),
        ("2", "2025-03-03 11:30:00"),
    ]
    assert {r["created_date_time"] for r in rows} == {"2025-03-03 10:00:00"}
    assert all("closed_date_time" not in r for r in rows)


def test_times_follow_the_integrations_zone():
    body = webhook("Customer", 7, "create", new={"lead_status_id": 1}, at="2025-03-03 10:00:00")
    event = WebhookEvent.model_validate(body)
    assert snapshots.event_time(event, None, "Asia/Yekaterinburg") == "2025-03-03T05:00:00Z"
    assert snapshots.event_time(event, None, "Europe/Moscow") == "2025-03-03T07:00:00Z"


# --- success and failure statuses merged ------------------------------------------------------------------
@pytest.mark.parametrize(("status", "stage"), [(4, "success"), (7, "success"), (5, "failed"), (6, "failed"), (2, "2")])
def test_chosen_statuses_merge_into_one_success_and_one_failed_stage(status, stage):
    t = Timeline()
    lead_created(t)
    snap = status_change(t, 1, status, "2025-03-04 12:00:00")
    assert path_of(snap, settings(success=[4, 7], failure=[5, 6]))[-1][0] == stage


def test_a_lead_without_status_sits_in_the_no_status_stage():
    t = Timeline()
    body = webhook("Customer", 7, "create", new={"name": "Без статуса", "is_study": 0})
    snap = t.customer_event(body, customer(lead_status_id=None), "2025-03-03 10:00:01")
    assert path_of(snap) == [("no_status", utc("2025-03-03 10:00:00"))]


# --- conversion and clients ---------------------------------------------------------------------------------
def test_conversion_to_client_is_a_won_first_sale_closed_at_conversion():
    t = Timeline()
    lead_created(t, status=2)
    body = webhook("Customer", 7, new={"is_study": 1}, old={"is_study": 0}, at="2025-03-05 15:00:00")
    snap = t.customer_event(body, customer(is_study=1, lead_status_id=2), "2025-03-05 15:00:02")
    deal = record(deals_of(snap)["customer-7"])
    rows = deal_rows.upload_rows(deal, drafts.rows_to_send(deal), tz=TZ, now=NOW)
    assert [r["stage_ext_id"] for r in rows] == ["2", "success"]
    assert rows[-1]["closed_date_time"] == "2025-03-05 15:00:00"


def test_a_customer_created_as_a_client_is_a_first_sale_won_at_creation():
    t = Timeline()
    body = webhook("Customer", 7, "create", new={"name": "Смирнова", "is_study": 1}, at="2025-03-03 12:00:00")
    snap = t.customer_event(
        body, customer(is_study=1, lead_status_id=None, created_at="2025-03-03 12:00:00"), "2025-03-03 12:00:01"
    )
    assert path_of(snap) == [("success", utc("2025-03-03 12:00:00"))]


# --- archive and reopening -------------------------------------------------------------------------------------
def test_a_lead_archived_in_progress_is_failed_but_an_archived_client_stays_won():
    lead = Timeline()
    lead_created(lead, status=3)
    body = webhook("Customer", 7, new={"removed": 1, "lead_reject_id": 1}, old={"removed": 0}, at="2025-03-06 09:00:00")
    snap = lead.customer_event(body, customer(lead_status_id=3, removed=1), "2025-03-06 09:00:01")
    assert path_of(snap)[-1] == ("failed", utc("2025-03-06 09:00:00"))

    client = Timeline()
    body = webhook("Customer", 7, "create", new={"is_study": 1}, at="2025-03-03 12:00:00")
    client.customer_event(body, customer(is_study=1), "2025-03-03 12:00:01")
    body = webhook("Customer", 7, new={"removed": 1}, old={"removed": 0}, at="2025-06-01 09:00:00")
    snap = client.customer_event(body, customer(is_study=1, removed=1), "2025-06-01 09:00:01")
    assert [stage for stage, _ in path_of(snap)] == ["success"]


def test_an_archived_lead_stays_failed_when_the_reread_record_has_no_archive_flag():
    """The archive flag's name in a customer record is not documented: when the re-read record carries none,
    the webhook's `removed` change still decides, and the deal UIS shows ends failed at the archiving."""
    t = Timeline()
    body = webhook("Customer", 7, "create", new={"name": "Петров Илья", "is_study": 0, "lead_status_id": 3})
    t.customer_event(body, customer_without_flag(lead_status_id=3), "2025-03-03 10:00:01")
    body = webhook("Customer", 7, new={"removed": 1, "lead_reject_id": 1}, old={"removed": 0}, at="2025-03-06 09:00:00")
    snap = t.customer_event(body, customer_without_flag(lead_status_id=3), "2025-03-06 09:00:01")
    deal = record(deals_of(snap)["customer-7"])
    rows = deal_rows.upload_rows(deal, drafts.rows_to_send(deal), tz=TZ, now=NOW)
    assert [(r["stage_ext_id"], r["modified_stage_date_time"]) for r in rows] == [
        ("3", "2025-03-03 10:00:00"),
        ("failed", "2025-03-06 09:00:00"),
    ]


def customer_without_flag(**fields):
    """A re-read customer record as a real account may return it: no archive flag under any name."""
    record = customer(**fields).model_dump(mode="json", exclude={"removed", "custom"})
    return Customer.model_validate(record)


def test_a_deleted_lead_is_failed_at_the_deletion():
    t = Timeline()
    lead_created(t, status=2)
    body = webhook("Customer", 7, "delete", old={"name": "Петров Илья", "lead_status_id": 2}, at="2025-03-07 10:00:00")
    snap = t.customer_event(body, None, "2025-03-07 10:00:01")
    assert path_of(snap)[-1] == ("failed", utc("2025-03-07 10:00:00"))


def test_a_failed_deal_may_come_back_to_an_in_process_stage():
    t = Timeline()
    lead_created(t)
    status_change(t, 1, 5, "2025-03-04 10:00:00")
    snap = status_change(t, 5, 2, "2025-03-10 10:00:00")
    assert [stage for stage, _ in path_of(snap)] == ["1", "failed", "2"]
    deal = record(deals_of(snap)["customer-7"])
    rows = deal_rows.upload_rows(deal, drafts.rows_to_send(deal), tz=TZ, now=NOW)
    assert [("closed_date_time" in r) for r in rows] == [False, True, False]


# --- times never go backwards ------------------------------------------------------------------------------------
def test_a_late_event_older_than_the_uploaded_stage_sends_nothing_older():
    # Given UIS has the deal at status 3 since 12:00
    t = Timeline()
    lead_created(t)
    status_change(t, 2, 3, "2025-03-03 12:00:00")
    deal = uploaded(record(deals_of(t.snap)["customer-7"]))
    # When the webhook of the 11:00 move to status 2 arrives late
    snap = status_change(t, 1, 2, "2025-03-03 11:00:00", lead_status_id=3)
    later = drafts.apply_draft(deal, deals_of(snap)["customer-7"], at=utc("2025-03-03 12:05:00"), source_version=2)
    # Then nothing older than 12:00 is sent (UIS would refuse it) and nothing is pending
    assert later is not None
    assert drafts.rows_to_send(later) == []
    assert not drafts.needs_upload(later)


def test_merge_keeps_uploaded_rows_and_moves_a_late_final_stage_to_the_last_uploaded_time():
    uploaded_rows = [Step(stage="1", at="2025-03-03T07:00:00Z"), Step(stage="3", at="2025-03-03T09:00:00Z")]
    path = [Step(stage="1", at="2025-03-03T07:00:00Z"), Step(stage="failed", at="2025-03-03T08:00:00Z")]
    merged = paths.merge_history(uploaded_rows, path)
    assert [(s.stage, s.at) for s in merged] == [
        ("1", "2025-03-03T07:00:00Z"),
        ("3", "2025-03-03T09:00:00Z"),
        ("failed", "2025-03-03T09:00:00Z"),
    ]
    assert all(a.at <= b.at for a, b in itertools.pairwise(merged))


# --- payments ---------------------------------------------------------------------------------------------------
def client_with_pays(*pays_and_times):
    t = Timeline()
    body = webhook("Customer", 7, "create", new={"is_study": 1}, at="2025-03-03 10:00:00")
    t.customer_event(body, customer(is_study=1, teacher_ids=[1, 2]), "2025-03-03 10:00:01")
    for p, at in pays_and_times:
        body = webhook("Pay", p.id, "create", new={"customer_id": p.customer_id, "income": p.income}, at=at)
        t.pay_event(body, p, at)
    assert t.snap is not None
    return t


def test_first_sale_revenue_is_the_first_payment_by_document_date_then_id():
    t = client_with_pays(
        (pay(5, income="1000", document_date="10.03.2025"), "2025-03-10 10:00:00"),
        (pay(9, income="2000", document_date="05.03.2025"), "2025-03-10 11:00:00"),
        (pay(7, income="3000", document_date="05.03.2025"), "2025-03-10 12:00:00"),
    )
    deals = deals_of(t.snap)
    assert deal_rows.money(deals["customer-7"].revenue) == 3000  # pay 7: earliest date, lower id than pay 9
    assert sorted(deals) == ["customer-7", "pay-5", "pay-9"]


def test_a_later_payment_is_an_upsell_deal_new_then_paid():
    t = client_with_pays(
        (pay(1, document_date="03.03.2025"), "2025-03-03 11:00:00"),
        (pay(2, income="2500.50", document_date="01.04.2025"), "2025-04-01 12:00:00"),
    )
    deal = record(deals_of(t.snap)["pay-2"])
    rows = deal_rows.upload_rows(deal, drafts.rows_to_send(deal), tz=TZ, now=datetime(2025, 4, 2, tzinfo=UTC))
    assert [(r["stage_ext_id"], r["modified_stage_date_time"]) for r in rows] == [
        ("new", "2025-04-01 12:00:00"),
        ("paid", "2025-04-01 12:00:00"),
    ]
    assert rows[-1]["closed_date_time"] == "2025-04-01 12:00:00"
    assert {r["revenue"] for r in rows} == {2500.5}
    assert {r["sales_funnel_ext_id"] for r in rows} == {"upsell"}


def test_an_unconfirmed_payment_stays_new_until_confirmed():
    t = client_with_pays(
        (pay(1), "2025-03-03 11:00:00"),
        (pay(2, is_confirmed=0, document_date="01.04.2025"), "2025-04-01 12:00:00"),
    )
    assert [s.stage for s in deals_of(t.snap)["pay-2"].path] == ["new"]
    body = webhook("Pay", 2, new={"is_confirmed": 1}, old={"is_confirmed": 0}, at="2025-04-02 09:00:00")
    snap = t.pay_event(body, pay(2, is_confirmed=1, document_date="01.04.2025"), "2025-04-02 09:00:00")
    assert [(s.stage, s.at) for s in deals_of(snap)["pay-2"].path] == [
        ("new", utc("2025-04-01 12:00:00")),
        ("paid", utc("2025-04-02 09:00:00")),
    ]


def test_a_deleted_payment_is_cancelled():
    t = client_with_pays(
        (pay(1), "2025-03-03 11:00:00"),
        (pay(2, document_date="01.04.2025"), "2025-04-01 12:00:00"),
    )
    body = webhook("Pay", 2, "delete", old={"customer_id": 7, "income": "4500.00"}, at="2025-04-03 10:00:00")
    snap = t.pay_event(body, None, "2025-04-03 10:00:01")
    assert [(s.stage, s.at) for s in deals_of(snap)["pay-2"].path][-1] == ("cancelled", utc("2025-04-03 10:00:00"))


def test_a_payment_a_later_reread_finds_again_is_not_cancelled():
    """Given a payment's create webhook whose re-read found nothing (read too early, or through another branch),
    when a later event's re-read finds the payment, then the upsell deal is paid again: only a delete
    webhook or a fresher empty re-read cancels it."""
    t = client_with_pays((pay(1), "2025-03-03 11:00:00"))
    body = webhook("Pay", 2, "create", new={"customer_id": 7, "income": "2000"}, at="2025-04-01 12:00:00")
    t.pay_event(body, None, "2025-04-01 12:00:01")
    body = webhook("Pay", 2, new={"note": "за апрель"}, old={"note": ""}, at="2025-04-01 12:05:00")
    snap = t.pay_event(body, pay(2, income="2000", document_date="01.04.2025"), "2025-04-01 12:05:01")
    assert [s.stage for s in deals_of(snap)["pay-2"].path] == ["new", "paid"]
    # and in the other order: the empty read, older than the one that found it, changes nothing
    t = client_with_pays((pay(1), "2025-03-03 11:00:00"))
    t.pay_event(body, pay(2, income="2000", document_date="01.04.2025"), "2025-04-01 12:05:01")
    create = webhook("Pay", 2, "create", new={"customer_id": 7, "income": "2000"}, at="2025-04-01 12:00:00")
    snap = t.pay_event(create, None, "2025-04-01 12:00:01")
    assert [s.stage for s in deals_of(snap)["pay-2"].path] == ["new", "paid"]


def test_deleting_the_first_payment_moves_the_revenue_to_the_next_one():
    t = client_with_pays(
        (pay(1, income="1000", document_date="03.03.2025"), "2025-03-03 11:00:00"),
        (pay(2, income="2000", document_date="01.04.2025"), "2025-04-01 12:00:00"),
    )
    body = webhook("Pay", 1, "delete", old={"customer_id": 7, "income": "1000.00"}, at="2025-04-03 10:00:00")
    snap = t.pay_event(body, None, "2025-04-03 10:00:01")
    deals = deals_of(snap)
    assert deal_rows.money(deals["customer-7"].revenue) == 2000
    assert sorted(deals) == ["customer-7"]  # pay 2 is the first sale now, pay 1 was never an upsell


def test_an_income_edit_resends_the_current_row_with_its_stage_time_and_a_new_modified_time():
    # Given an upsell deal UIS already has
    t = client_with_pays(
        (pay(1), "2025-03-03 11:00:00"),
        (pay(2, income="2000", document_date="01.04.2025"), "2025-04-01 12:00:00"),
    )
    deal = uploaded(record(deals_of(t.snap)["pay-2"], at=utc("2025-04-01 12:00:00")))
    # When a manager corrects the amount the next day
    body = webhook("Pay", 2, new={"income": "2200"}, old={"income": "2000.00"}, at="2025-04-02 09:30:00")
    snap = t.pay_event(body, pay(2, income="2200", document_date="01.04.2025"), "2025-04-02 09:30:00")
    edited = drafts.apply_draft(deal, deals_of(snap)["pay-2"], at=utc("2025-04-02 09:30:00"), source_version=3)
    # Then only the current row goes again: same stage time, new modified time, new revenue
    assert edited is not None and drafts.needs_upload(edited)
    rows = deal_rows.upload_rows(edited, drafts.rows_to_send(edited), tz=TZ, now=datetime(2025, 4, 3, tzinfo=UTC))
    assert [
        (r["stage_ext_id"], r["modified_stage_date_time"], r["modified_date_time"], r["revenue"]) for r in rows
    ] == [("paid", "2025-04-01 12:00:00", "2025-04-02 09:30:00", 2200)]


def test_refunds_expenses_and_payments_without_customer_are_not_deals():
    t = client_with_pays(
        (pay(1), "2025-03-03 11:00:00"),
        (pay(2, income="-1500.00", document_date="01.04.2025"), "2025-04-01 12:00:00"),
        (pay(3, income="0", document_date="02.04.2025"), "2025-04-02 12:00:00"),
    )
    assert sorted(deals_of(t.snap)) == ["customer-7"]
    orphan = PayInfo(id=4, customer_id=None, income="500", created_at="2025-04-01T09:00:00Z")
    assert not snapshots.is_deal_payment(orphan)


def test_upsells_follow_the_setting():
    t = client_with_pays((pay(1), "2025-03-03 11:00:00"), (pay(2, document_date="01.04.2025"), "2025-04-01 12:00:00"))
    assert sorted(deals_of(t.snap, settings(upsell=False))) == ["customer-7"]


# --- contact, user fields, communication ----------------------------------------------------------------------------
def test_the_contact_is_the_customer_with_e164_phones_and_emails():
    t = Timeline()
    body = webhook("Customer", 7, "create", new={"name": "Петров Илья"})
    phones = ["8 (916) 123-45-67", "+7(999)999-99-99", "позвонить маме"]
    snap = t.customer_event(body, customer(phone=phones, email=["ilya@example.ru", "нет"]), "2025-03-03 10:00:01")
    contact = deal_rows.contact_payload(snap, region="RU", tz=TZ, now=NOW)
    assert contact == {
        "ext_id": "customer-7",
        "name": "Петров Илья",
        "phone_numbers": ["+79161234567", "+79999999999"],
        "emails": ["ilya@example.ru"],
        "created_date_time": "2025-03-03 10:00:00",
    }
    assert {d.contact_ext_id for d in deals_of(snap).values()} == {"customer-7"}


def test_user_fields_name_the_customers_teachers_or_the_payments_teacher_and_the_branch():
    t = client_with_pays(
        (pay(1), "2025-03-03 11:00:00"),
        (pay(2, document_date="01.04.2025", teacher_id=3, branch_id=2), "2025-04-01 12:00:00"),
    )
    deals = deals_of(t.snap)
    assert deals["customer-7"].user_fields == {
        "teacher": "Соколова Анна Викторовна, Волков Игорь Петрович",
        "branch": "Центральный",
    }
    assert deals["pay-2"].user_fields == {"teacher": "Лебедева Мария Андреевна", "branch": "Северный"}


def test_the_first_sale_carries_the_communication_that_created_the_lead():
    t = client_with_pays((pay(1), "2025-03-03 11:00:00"), (pay(2, document_date="01.04.2025"), "2025-04-01 12:00:00"))
    deals = deals_of(t.snap, link=CustomerLink(communication_id=90000042, communication_type="chat"))
    first, upsell = record(deals["customer-7"]), record(deals["pay-2"])
    now = datetime(2025, 4, 2, tzinfo=UTC)
    row = deal_rows.upload_rows(first, drafts.rows_to_send(first), tz=TZ, now=now)[0]
    assert (row["communication_id"], row["communication_type"]) == (90000042, "chat")
    assert all("communication_id" not in r for r in deal_rows.upload_rows(upsell, drafts.rows_to_send(upsell), tz=TZ))


# --- delivery order ------------------------------------------------------------------------------------------------
def _school_day():
    """A lead's day as webhooks, each with the record as AlfaCRM holds it at the end of the day."""
    final = customer(is_study=1, lead_status_id=3)
    return [
        (webhook("Customer", 7, "create", new={"is_study": 0, "lead_status_id": 1}, at="2025-03-03 10:00:00"), final),
        (webhook("Customer", 7, new={"lead_status_id": 2}, old={"lead_status_id": 1}, at="2025-03-03 11:00:00"), final),
        (webhook("Customer", 7, new={"lead_status_id": 3}, old={"lead_status_id": 2}, at="2025-03-03 12:00:00"), final),
        (webhook("Customer", 7, new={"is_study": 1}, old={"is_study": 0}, at="2025-03-04 16:00:00"), final),
    ]


def test_shuffled_and_repeated_deliveries_give_the_same_history():
    expected = None
    for seed in range(8):
        events = _school_day() * (1 + seed % 3)
        random.Random(seed).shuffle(events)
        t = Timeline()
        for body, reread in events:
            t.customer_event(body, reread, "2025-03-05 08:00:00")
        path = path_of(t.snap)
        expected = expected or path
        assert path == expected
    assert expected == [
        ("1", utc("2025-03-03 10:00:00")),
        ("2", utc("2025-03-03 11:00:00")),
        ("3", utc("2025-03-03 12:00:00")),
        ("success", utc("2025-03-04 16:00:00")),
    ]


def test_a_change_no_event_explains_yet_applies_at_the_reread_then_takes_the_events_own_time():
    t = Timeline()
    lead_created(t)
    # the status-3 webhook is still on its way when the status-2 one is processed
    status_change(t, 1, 2, "2025-03-03 11:00:00", read="2025-03-03 12:00:05", lead_status_id=3)
    assert path_of(t.snap)[-1] == ("3", utc("2025-03-03 12:00:05"))
    status_change(t, 2, 3, "2025-03-03 12:00:00", read="2025-03-03 12:00:06")
    assert path_of(t.snap)[-1] == ("3", utc("2025-03-03 12:00:00"))


def test_a_repeated_delivery_changes_nothing():
    t = Timeline()
    snap = lead_created(t)
    deal = record(deals_of(snap)["customer-7"])
    again = lead_created(t)
    assert again == snap
    assert (
        drafts.apply_draft(deal, deals_of(again)["customer-7"], at=utc("2025-03-03 10:05:00"), source_version=1) is None
    )


# --- funnels -------------------------------------------------------------------------------------------------------
def test_first_sale_stages_follow_alfacrm_statuses_by_weight_with_gaps():
    statuses = [
        {"id": 1, "name": "Новый", "weight": 1},
        {"id": 2, "name": "Связались", "weight": 2},
        {"id": 7, "name": "Пробное проведено", "weight": 4},
        {"id": 3, "name": "Записан на пробное", "weight": 3},
        {"id": 4, "name": "Оплатил", "weight": 5},
        {"id": 5, "name": "Отказ", "weight": 6},
    ]
    specs = funnels.funnel_specs(statuses, settings(success=[4], failure=[5]))
    first = [(s.ext_id, s.name, s.status, s.order) for s in specs["first_sale"]]
    assert first == [
        ("no_status", "Без статуса", "in_process", 10),
        ("1", "Новый", "in_process", 20),
        ("2", "Связались", "in_process", 30),
        ("3", "Записан на пробное", "in_process", 40),
        ("7", "Пробное проведено", "in_process", 50),
        ("success", "Успешная продажа", "success", None),
        ("failed", "Отказ", "failed", None),
    ]
    assert [(s.ext_id, s.status) for s in specs["upsell"]] == [
        ("new", "in_process"),
        ("paid", "success"),
        ("cancelled", "failed"),
    ]
