"""The uploader against the UIS sandbox: what UIS ends up holding, call by call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from connector.deals import drafts, snapshots
from connector.deals.views import deals_view
from connector.models.deals import DealRef, Fact
from connector.models.texts import CustomerLink
from connector.settings import SettingsDocument
from connector.store.base import int_pk
from connector.timeutil import to_iso
from connector.uis.client import UisClient

from tests.deals.builders import INTEGRATION_ID, utc
from tests.deals.conftest import DEAL_SETTINGS, UIS_TOKEN, UIS_URL


def uis_path(uis, ext_id):
    return [
        (p["stage_ext_id"], p["modified_stage_date_time"]) for p in uis.deals[ext_id]["path"] if not p["is_generated"]
    ]


def calls(uis, method):
    return sum(1 for c in uis.rpc_log if c["method"] == method)


def school_day(alfacrm, captured, deliver, clock):
    """Two leads (one converts and pays twice, one fails), all delivered to the worker."""
    anna = alfacrm.ui_create_customer(
        {
            "name": "Анна Смирнова",
            "is_study": 0,
            "lead_status_id": 1,
            "phone": ["8 (916) 123-45-67"],
            "teacher_ids": [1],
        }
    )
    boris = alfacrm.ui_create_customer({"name": "Борис", "is_study": 0, "lead_status_id": 1, "email": ["b@example.ru"]})
    clock.advance(3600)
    alfacrm.ui_update_customer(anna["id"], {"lead_status_id": 3})
    alfacrm.ui_update_customer(boris["id"], {"lead_status_id": 5})
    clock.advance(3600)
    alfacrm.ui_update_customer(anna["id"], {"is_study": 1})
    alfacrm.ui_create_pay({"customer_id": anna["id"], "income": "4500", "teacher_id": 1})
    clock.advance(600)
    extra = alfacrm.ui_create_pay(
        {"customer_id": anna["id"], "income": "1200", "teacher_id": 2, "document_date": "2025-03-04"}
    )
    clock.advance(600)
    for body in captured.take():
        deliver(body)
    return anna, boris, extra


def test_a_flush_creates_funnels_fields_contacts_and_uploads_each_transition_once(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    anna, boris, extra = school_day(alfacrm, captured, deliver, clock)
    # When the uploader flushes
    report = flush()
    # Then UIS has both funnels, the user fields, the contacts, and every deal's path with AlfaCRM's times
    assert report.state == "uploaded" and report.parked == []
    assert set(uis.funnels) == {"first_sale", "upsell"}
    assert set(uis.user_fields) == {"teacher", "branch"}
    assert uis.contacts[f"customer-{anna['id']}"]["phone_numbers"] == ["79161234567"]
    assert uis.contacts[f"customer-{boris['id']}"]["emails"] == ["b@example.ru"]
    assert uis_path(uis, f"customer-{anna['id']}") == [
        ("1", "2025-03-03 09:00:00"),
        ("3", "2025-03-03 10:00:00"),
        ("success", "2025-03-03 11:00:00"),
    ]
    assert uis_path(uis, f"customer-{boris['id']}") == [("1", "2025-03-03 09:00:00"), ("failed", "2025-03-03 10:00:00")]
    assert uis.deals[f"customer-{anna['id']}"]["revenue"] == 4500
    upsell = uis.deals[f"pay-{extra['id']}"]
    assert uis_path(uis, f"pay-{extra['id']}") == [("new", "2025-03-03 11:10:00"), ("paid", "2025-03-03 11:10:00")]
    assert upsell["revenue"] == 1200 and upsell["user_fields"]["teacher"] == "Волков Игорь Петрович"
    assert upsell["user_fields"]["branch"] == "Центральный"
    # in one call each
    assert (calls(uis, "create.deal_contacts"), calls(uis, "upload.deals_history")) == (1, 1)
    # And the deals read as uploaded, the points are counted
    assert {d["upload"]["state"] for d in deals_view(store, INTEGRATION_ID)} == {"uploaded"}
    day = store.integrations.points(INTEGRATION_ID, "2025-03-03")
    assert day["deals"] == uis.points_spent == report.points
    # And a second flush with nothing pending costs nothing
    spent = uis.points_spent
    assert flush().state == "idle" and uis.points_spent == spent


def test_later_changes_send_only_what_uis_lacks(alfacrm, captured, deliver, flush, uis, clock):
    anna, boris, extra = school_day(alfacrm, captured, deliver, clock)
    flush()
    # When Boris comes back to an in-process status and Anna's extra payment is corrected
    clock.advance(3600)
    alfacrm.ui_update_customer(boris["id"], {"lead_status_id": 2})
    alfacrm.ui_update_pay(extra["id"], {"income": "1300"})
    alfacrm.ui_update_customer(anna["id"], {"phone": ["+7 916 123-45-67", "+7 903 555-12-34"]})
    for body in captured.take():
        deliver(body)
    uploads_before = calls(uis, "upload.deals_history")
    report = flush()
    # Then one upload carries Boris's new transition and Anna's payment row again with its stage time
    assert report.rows == 2 and calls(uis, "upload.deals_history") == uploads_before + 1
    assert uis_path(uis, f"customer-{boris['id']}")[-1] == ("2", "2025-03-03 12:20:00")
    assert uis_path(uis, f"pay-{extra['id']}") == [("new", "2025-03-03 11:10:00"), ("paid", "2025-03-03 11:10:00")]
    assert uis.deals[f"pay-{extra['id']}"]["revenue"] == 1300
    assert uis.deals[f"pay-{extra['id']}"]["modified_date_time"] == "2025-03-03 12:20:00"
    # And only the changed contact is updated, in one call
    assert calls(uis, "update.deal_contacts") == 1
    assert uis.contacts[f"customer-{anna['id']}"]["phone_numbers"] == ["79161234567", "79035551234"]


def test_a_deal_uis_refuses_is_parked_and_the_others_are_uploaded(alfacrm, captured, deliver, flush, uis, clock, store):
    # Given UIS already holds a later stage for one deal (uploaded by someone else)
    anna, boris, _extra = school_day(alfacrm, captured, deliver, clock)
    flush()
    uis.deals[f"customer-{boris['id']}"]["path"][-1]["modified_stage_date_time"] = "2025-03-09 10:00:00"
    clock.advance(3600)
    alfacrm.ui_update_customer(boris["id"], {"lead_status_id": 2})
    alfacrm.ui_update_customer(anna["id"], {"name": "Анна С. Смирнова"})
    for body in captured.take():
        deliver(body)
    # When the uploader flushes
    report = flush()
    # Then Boris is parked with UIS's message, visible and replayable; Anna's change is uploaded
    assert report.parked == [f"first_sale#customer-{boris['id']}"]
    views = {d["ext_id"]: d for d in deals_view(store, INTEGRATION_ID)}
    assert views[f"customer-{boris['id']}"]["upload"]["state"] == "parked"
    assert "earlier" in views[f"customer-{boris['id']}"]["upload"]["error"]
    assert views[f"customer-{anna['id']}"]["upload"] == {"state": "uploaded", "error": None}
    assert uis.deals[f"customer-{anna['id']}"]["name"] == "Анна С. Смирнова"
    parked = store.integrations.parked(INTEGRATION_ID)
    assert [(p.kind, p.key, p.payload) for p in parked] == [
        ("deal", f"first_sale#customer-{boris['id']}", {"funnel": "first_sale", "ext_id": f"customer-{boris['id']}"})
    ]
    # And after UIS's copy is fixed, a replay uploads it and clears the parked item
    uis.deals[f"customer-{boris['id']}"]["path"][-1]["modified_stage_date_time"] = "2025-03-03 10:00:00"
    assert store.deals.mark_pending(INTEGRATION_ID, DealRef(funnel="first_sale", ext_id=f"customer-{boris['id']}"))
    assert flush().parked == []
    assert uis_path(uis, f"customer-{boris['id']}")[-1] == ("2", "2025-03-03 12:20:00")
    assert store.integrations.parked(INTEGRATION_ID) == []


def test_uis_never_names_the_bad_row_so_the_bad_deal_is_found_by_bisection(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    """UIS's `data.field` is `deals.modified_stage_date_time`, with no row index (data_api/index.html)."""
    anna, boris, extra = school_day(alfacrm, captured, deliver, clock)
    flush()
    uis.deals[f"customer-{boris['id']}"]["path"][-1]["modified_stage_date_time"] = "2025-03-09 10:00:00"
    clock.advance(60)
    alfacrm.ui_update_customer(boris["id"], {"lead_status_id": 2})
    alfacrm.ui_update_pay(extra["id"], {"income": "1250"})
    alfacrm.ui_update_customer(anna["id"], {"name": "Анна Смирнова-Ли"})
    for body in captured.take():
        deliver(body)
    report = flush()
    assert report.parked == [f"first_sale#customer-{boris['id']}"]
    assert uis.deals[f"customer-{anna['id']}"]["name"] == "Анна Смирнова-Ли"
    assert uis.deals[f"pay-{extra['id']}"]["revenue"] == 1250


def test_limit_exceeded_leaves_everything_pending_for_the_next_run(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    school_day(alfacrm, captured, deliver, clock)
    uis.fail("limit_exceeded", count=10, method="upload.deals_history")
    report = flush()
    assert report.state == "deferred" and "limit" in (report.error or "")
    assert uis.deals == {}
    assert {d["upload"]["state"] for d in deals_view(store, INTEGRATION_ID)} == {"pending"}
    uis._failures.clear()
    assert flush().state == "uploaded" and len(uis.deals) == 3


def test_transport_errors_leave_the_pending_marks(alfacrm, captured, deliver, flush, uis, clock, store):
    school_day(alfacrm, captured, deliver, clock)
    uis.fail("http", count=3, http_status=502)  # every attempt of the first call
    assert flush().state == "deferred"
    assert len(store.deals.pending_keys(INTEGRATION_ID)) == 3
    assert flush().state == "uploaded"
    assert store.deals.pending_keys(INTEGRATION_ID) == []


def test_more_than_1000_rows_go_in_several_calls_without_splitting_a_deal(flush, uis, store, integration):
    # Given 11 leads that went back and forth between two statuses 100 times each (1100 rows to send)
    settings = integration.settings.deals
    pk = int_pk(INTEGRATION_ID)
    items = []
    start = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
    for cid in range(1, 12):
        snap = snapshots.new_snapshot(cid, to_iso(start))
        snap.name = f"Ученик {cid}"
        snap.facts["lead_status_id"] = [
            Fact(at=to_iso(start + timedelta(minutes=i)), value=1 + i % 2) for i in range(100)
        ]
        draft = drafts.derive_deals(snap, settings, drafts.Directory())[0]
        deal = drafts.apply_draft(None, draft, at=to_iso(start), source_version=1)
        assert deal is not None and len(deal.path) == 100
        items.append({"pk": pk, "sk": f"CUST#{cid}", **snap.model_dump(mode="json")})
        items.append(
            {
                "pk": pk,
                "sk": f"DEAL#first_sale#{deal.ext_id}",
                **deal.model_dump(mode="json"),
                "version": 1,  # as save_deal would have written it
                "gsi1pk": f"PENDING#{INTEGRATION_ID}",
                "gsi1sk": f"first_sale#{deal.ext_id}",
            }
        )
    store.table.put_many(items)
    # When the uploader flushes
    report = flush()
    # Then two upload calls carried the rows, no deal split across them, and UIS has every transition
    assert report.rows == 1100 and calls(uis, "upload.deals_history") == 2
    assert len(uis.deals) == 11
    assert all(len(uis_path(uis, f"customer-{cid}")) == 100 for cid in range(1, 12))
    assert calls(uis, "create.deal_contacts") == 1


def test_an_unknown_stage_forces_a_funnel_sync_first(alfacrm, captured, deliver, flush, uis, clock):
    # Given the funnels are synced, then the school adds a status in AlfaCRM
    lead = alfacrm.ui_create_customer({"name": "Вера", "is_study": 0, "lead_status_id": 1})
    for body in captured.take():
        deliver(body)
    flush()
    alfacrm.lookups["lead-status"][9] = {"id": 9, "name": "Ждёт звонка", "is_enabled": 1, "weight": 2}
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 9})
    for body in captured.take():
        deliver(body)
    # When the uploader flushes
    report = flush()
    # Then the stage exists in UIS and the deal reached it
    assert report.parked == []
    assert "9" in uis.funnels["first_sale"]["stages"]
    assert uis.funnels["first_sale"]["stages"]["9"]["name"] == "Ждёт звонка"
    assert uis_path(uis, f"customer-{lead['id']}")[-1][0] == "9"


def test_views_follow_the_contract(alfacrm, captured, deliver, flush, uis, clock, store):
    school_day(alfacrm, captured, deliver, clock)
    flush()
    views = deals_view(store, INTEGRATION_ID, "upsell")
    assert len(views) == 1
    assert set(views[0]) == {
        "ext_id",
        "funnel",
        "stage",
        "revenue",
        "contact_ext_id",
        "communication_id",
        "history",
        "upload",
    }
    assert views[0]["history"][0] == {"stage": "new", "at": utc("2025-03-03 11:10:00")}
    assert datetime.fromisoformat(views[0]["history"][0]["at"].replace("Z", "+00:00")).tzinfo == UTC
    assert [d["funnel"] for d in deals_view(store, INTEGRATION_ID)][:1] == ["first_sale"]


def test_a_lead_linked_to_its_uis_chat_after_its_deal_was_built_reaches_uis_with_that_chat(
    alfacrm, captured, deliver, flush, uis, store
):
    """Given the connector created a lead from a UIS chat and AlfaCRM's create webhook was processed before
    the text worker stored the link (the webhook fires during the create call), when the uploader flushes,
    then UIS receives the first-sale deal with the chat as its communication."""
    lead = alfacrm.ui_create_customer({"name": "Павел", "is_study": 0, "lead_status_id": 1, "phone": ["89265550101"]})
    for body in captured.take():
        deliver(body)
    assert deals_view(store, INTEGRATION_ID, "first_sale")[0]["communication_id"] is None
    store.texts.link_customer(
        INTEGRATION_ID, lead["id"], CustomerLink(communication_id=90000004, communication_type="chat")
    )

    flush()

    sent = uis.deals[f"customer-{lead['id']}"]
    assert (sent["communication_id"], sent["communication_type"]) == (90000004, "chat")
    [shown] = deals_view(store, INTEGRATION_ID, "first_sale")
    assert shown["communication_id"] == 90000004 and shown["upload"]["state"] == "uploaded"


def test_a_phone_added_to_an_uploaded_customer_reaches_the_uis_contact(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    """Given a lead whose deal and contact UIS already holds, when only its phones change in AlfaCRM, then the
    next flush replaces the UIS contact's phone list with the full new list."""
    lead = alfacrm.ui_create_customer({"name": "Лидия", "is_study": 0, "lead_status_id": 1, "phone": ["89161112233"]})
    for body in captured.take():
        deliver(body)
    flush()
    assert uis.contacts[f"customer-{lead['id']}"]["phone_numbers"] == ["79161112233"]
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"phone": ["89161112233", "+7 903 444-55-66"], "email": ["l@example.ru"]})
    for body in captured.take():
        deliver(body)
    uploads_before = calls(uis, "upload.deals_history")

    flush()

    contact = uis.contacts[f"customer-{lead['id']}"]
    assert contact["phone_numbers"] == ["79161112233", "79034445566"]
    assert contact["emails"] == ["l@example.ru"]
    # in one contacts call; the deal's rows are unchanged, so none is re-sent, and nothing stays pending
    assert calls(uis, "update.deal_contacts") == 1
    assert calls(uis, "upload.deals_history") == uploads_before
    assert [d["upload"]["state"] for d in deals_view(store, INTEGRATION_ID)] == ["uploaded"]
    assert store.deals.pending_keys(INTEGRATION_ID) == []


def test_a_changed_contact_uis_no_longer_has_is_created_again_before_its_deal(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    """Given a lead whose contact was removed in UIS after it was synced, when the lead changes in AlfaCRM
    and the uploader flushes, then the contact is created again (update says "not found") and the deal's
    new row arrives with it — nothing is parked."""
    lead = alfacrm.ui_create_customer({"name": "Олег", "is_study": 0, "lead_status_id": 1, "phone": ["89161112200"]})
    for body in captured.take():
        deliver(body)
    flush()
    del uis.contacts[f"customer-{lead['id']}"]
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 2, "phone": ["89161112201"]})
    for body in captured.take():
        deliver(body)

    report = flush()

    assert report.parked == []
    assert uis.contacts[f"customer-{lead['id']}"]["phone_numbers"] == ["79161112201"]
    assert uis_path(uis, f"customer-{lead['id']}")[-1] == ("2", "2025-03-03 09:10:00")
    assert uis.deals[f"customer-{lead['id']}"]["contact_ext_ids"] == [f"customer-{lead['id']}"]


class UploadRace(UisClient):
    """A UIS call during which something else happens in AlfaCRM and reaches the deal worker."""

    during_upload = None

    def upload_deals_history(self, rows):
        hook, self.during_upload = self.during_upload, None
        if hook is not None:
            hook()
        return super().upload_deals_history(rows)


def test_an_upsell_withdrawn_while_its_first_upload_is_in_flight_ends_cancelled_in_uis(
    alfacrm, captured, deliver, flush, uis, clock, store, clients
):
    """Given a client's second payment is pending as an upsell deal, when the first payment is deleted while
    the uploader's call carrying that upsell is in flight (so the second payment becomes the first sale),
    then UIS, which received the upsell as paid, ends with it cancelled — its revenue is not counted twice."""
    client = alfacrm.ui_create_customer({"name": "Инна", "is_study": 1})
    first = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4000", "document_date": "2025-03-01"})
    second = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "1500", "document_date": "2025-03-02"})
    for body in captured.take():
        deliver(body)
    racing = UploadRace(UIS_URL, UIS_TOKEN, http=clients.uis_client._http, clock=clock.monotonic)
    clients.uis_client = racing

    def delete_first_payment():
        clock.advance(60)
        alfacrm.ui_delete_pay(first["id"])
        for body in captured.take():
            deliver(body)

    racing.during_upload = delete_first_payment
    flush()
    assert uis_path(uis, f"pay-{second['id']}")[-1][0] == "paid"  # what the in-flight call carried

    clock.advance(60)
    flush()

    assert uis_path(uis, f"pay-{second['id']}")[-1][0] == "cancelled"
    assert uis.deals[f"customer-{client['id']}"]["revenue"] == 1500
    assert store.deals.pending_keys(INTEGRATION_ID) == []


def school_day_changes(alfacrm, captured, deliver, clock, anna, boris, extra):
    """Every deal of the school day changes after it was uploaded: three deals pending again."""
    clock.advance(600)
    alfacrm.ui_update_customer(anna["id"], {"name": "Анна С. Смирнова"})
    alfacrm.ui_update_customer(boris["id"], {"lead_status_id": 2})
    alfacrm.ui_update_pay(extra["id"], {"income": "1300"})
    for body in captured.take():
        deliver(body)


def test_a_user_field_deleted_in_uis_is_created_again_and_no_deal_is_parked(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    """Given the school day is in UIS and someone deletes the "teacher" deal field in UIS, when every deal
    changes and the uploader flushes, then UIS's "not found" for a row's user field is treated as a sync
    problem of the account: the field is created again and the same batch uploaded — nothing is parked."""
    anna, boris, extra = school_day(alfacrm, captured, deliver, clock)
    flush()
    del uis.user_fields["teacher"]
    school_day_changes(alfacrm, captured, deliver, clock, anna, boris, extra)

    report = flush()

    assert report.parked == [] and report.state == "uploaded"
    assert store.integrations.parked(INTEGRATION_ID) == []
    assert "teacher" in uis.user_fields
    assert uis.deals[f"customer-{anna['id']}"]["name"] == "Анна С. Смирнова"
    assert uis.deals[f"pay-{extra['id']}"]["revenue"] == 1300
    assert uis.deals[f"pay-{extra['id']}"]["user_fields"]["teacher"] == "Волков Игорь Петрович"
    assert uis_path(uis, f"customer-{boris['id']}")[-1] == ("2", "2025-03-03 11:30:00")
    assert {d["upload"]["state"] for d in deals_view(store, INTEGRATION_ID)} == {"uploaded"}
    # And the points the sync and the upload spent are counted once
    assert store.integrations.points(INTEGRATION_ID, "2025-03-03")["deals"] == uis.points_spent


def test_a_stage_deleted_in_uis_is_created_again_before_the_deal_reaches_it(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    """Given the funnels are in UIS and the empty stage "2" is deleted there, when a lead moves to status 2
    and the uploader flushes, then the stage is created again and the deal reaches it — not parked."""
    anna, boris, extra = school_day(alfacrm, captured, deliver, clock)
    flush()
    del uis.funnels["first_sale"]["stages"]["2"]
    school_day_changes(alfacrm, captured, deliver, clock, anna, boris, extra)

    report = flush()

    assert report.parked == [] and store.integrations.parked(INTEGRATION_ID) == []
    assert "2" in uis.funnels["first_sale"]["stages"]
    assert uis_path(uis, f"customer-{boris['id']}")[-1] == ("2", "2025-03-03 11:30:00")
    assert {d["upload"]["state"] for d in deals_view(store, INTEGRATION_ID)} == {"uploaded"}


def test_a_stage_uis_lacks_even_after_a_sync_defers_the_flush_instead_of_parking_deal_after_deal(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    """Given the closing stage "success" of the first-sale funnel is deleted in UIS (the connector cannot
    create a closing stage again), when deals change and the uploader flushes, then after one forced sync the
    flush is deferred with UIS's message: every deal stays pending, none is parked; the next flushes do not
    force a sync again for a while (points), and once UIS has the stage again the deals are uploaded."""
    anna, boris, extra = school_day(alfacrm, captured, deliver, clock)
    flush()
    success = uis.funnels["first_sale"]["stages"].pop("success")
    school_day_changes(alfacrm, captured, deliver, clock, anna, boris, extra)

    report = flush()

    assert report.state == "deferred" and report.parked == []
    assert "stage_ext_id" in (report.error or "")
    assert store.integrations.parked(INTEGRATION_ID) == []
    assert {d["upload"]["state"] for d in deals_view(store, INTEGRATION_ID)} == {"pending"}
    assert len(store.deals.pending_keys(INTEGRATION_ID)) == 3
    # And a minute later the flush is deferred again without another funnel read
    reads = calls(uis, "get.sales_funnel")
    clock.advance(60)
    assert flush().state == "deferred"
    assert calls(uis, "get.sales_funnel") == reads
    # And once UIS has the stage again, the deals are uploaded
    uis.funnels["first_sale"]["stages"]["success"] = success
    clock.advance(60)
    assert flush().state == "uploaded"
    assert uis.deals[f"customer-{anna['id']}"]["name"] == "Анна С. Смирнова"
    assert store.deals.pending_keys(INTEGRATION_ID) == []


# --- issue 8: what the published UIS docs say ---------------------------------------------------------------
def deliver_all(captured, deliver):
    for body in captured.take():
        deliver(body)


def test_each_changed_contact_is_updated_in_a_call_of_its_own(alfacrm, captured, deliver, flush, uis, clock, store):
    """ca_contact/update_deal_contacts takes one contact, at the top level of `params`: two customers whose
    phones and e-mails change reach UIS in two calls (a `contacts` list is refused, and was: issue 8.1)."""
    anna, boris, _extra = school_day(alfacrm, captured, deliver, clock)
    flush()
    clock.advance(600)
    alfacrm.ui_update_customer(anna["id"], {"email": ["anna@example.ru"]})
    alfacrm.ui_update_customer(boris["id"], {"phone": ["+7 903 111-22-33"]})
    deliver_all(captured, deliver)

    report = flush()

    assert uis.contacts[f"customer-{anna['id']}"]["emails"] == ["anna@example.ru"]
    assert uis.contacts[f"customer-{boris['id']}"]["phone_numbers"] == ["79031112233"]
    assert calls(uis, "update.deal_contacts") == 2 == report.points
    assert store.integrations.points(INTEGRATION_ID, "2025-03-03")["deals"] == uis.points_spent
    assert store.deals.pending_keys(INTEGRATION_ID) == []


def test_emails_differing_only_in_case_reach_uis_once_and_the_deal_keeps_its_contact(
    alfacrm, captured, deliver, flush, uis
):
    """ca_contact/create_deal_contacts: "E-mail должен быть уникальным в списке" (issue 8.2)."""
    lead = alfacrm.ui_create_customer(
        {"name": "Нина", "is_study": 0, "lead_status_id": 1, "email": ["nina@example.ru", "Nina@Example.ru"]}
    )
    deliver_all(captured, deliver)

    flush()

    assert uis.contacts[f"customer-{lead['id']}"]["emails"] == ["nina@example.ru"]
    assert uis.deals[f"customer-{lead['id']}"]["contact_ext_ids"] == [f"customer-{lead['id']}"]


def test_one_contact_uis_refuses_does_not_send_the_other_deals_without_contacts(
    alfacrm, captured, deliver, flush, uis, store
):
    """UIS's error names `contacts.emails`, not which contact: the refused one is found by bisection and the
    other customers' deals carry their contacts (issue 8.3)."""
    good = [
        alfacrm.ui_create_customer({"name": f"Ученик {i}", "is_study": 0, "lead_status_id": 1, "phone": [p]})
        for i, p in enumerate(("89161110001", "89161110002", "89161110003"))
    ]
    bad = alfacrm.ui_create_customer({"name": "Опечатка", "is_study": 0, "lead_status_id": 1, "email": ["x@school"]})
    deliver_all(captured, deliver)

    report = flush()

    assert report.parked == []
    for customer in good:
        ext_id = f"customer-{customer['id']}"
        assert ext_id in uis.contacts and uis.deals[ext_id]["contact_ext_ids"] == [ext_id]
    assert f"customer-{bad['id']}" not in uis.contacts
    assert f"customer-{bad['id']}" in uis.deals  # the deal itself still reaches UIS


def test_a_contact_update_uis_refuses_stays_pending_and_is_parked_with_uis_message_if_it_keeps_failing(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    lead = alfacrm.ui_create_customer({"name": "Лидия", "is_study": 0, "lead_status_id": 1, "phone": ["89161112233"]})
    deliver_all(captured, deliver)
    flush()
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"email": ["lidia@school"]})  # UIS refuses it as an e-mail
    deliver_all(captured, deliver)

    flush()
    [view] = deals_view(store, INTEGRATION_ID, "first_sale")
    assert view["upload"]["state"] == "pending" and "emails" in (view["upload"]["error"] or "")
    for _ in range(3):
        clock.advance(60)
        flush()
    [view] = deals_view(store, INTEGRATION_ID, "first_sale")
    assert view["upload"]["state"] == "parked" and "mail" in (view["upload"]["error"] or "").lower()
    assert [p.key for p in store.integrations.parked(INTEGRATION_ID)] == [f"first_sale#customer-{lead['id']}"]


def test_an_upload_applied_whose_answer_was_lost_is_read_back_not_sent_again(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    """UIS applies the upload but the answer is lost (504): re-sending the rows would be refused as older than
    the deal's last stage and park the deal; the next flush reads back what UIS holds and sends only the rest."""
    _anna, boris, _extra = school_day(alfacrm, captured, deliver, clock)
    uis.fail("applied", method="upload.deals_history", http_status=504)
    assert flush().state == "deferred"
    clock.advance(600)
    alfacrm.ui_update_customer(boris["id"], {"lead_status_id": 2})
    deliver_all(captured, deliver)

    report = flush()

    assert report.parked == [] and store.integrations.parked(INTEGRATION_ID) == []
    assert uis_path(uis, f"customer-{boris['id']}") == [
        ("1", "2025-03-03 09:00:00"),
        ("failed", "2025-03-03 10:00:00"),
        ("2", "2025-03-03 11:30:00"),
    ]
    assert {d["upload"]["state"] for d in deals_view(store, INTEGRATION_ID)} == {"uploaded"}
    assert calls(uis, "get.deals_history") == 1


def test_a_deal_uis_calls_created_in_the_future_is_retried_later_not_parked(
    alfacrm, captured, deliver, flush, uis, clock, store, integration
):
    """The zone of UIS's date-times is not documented (get.account reports the account's zone): a school two
    hours ahead of its UIS account makes a new deal look "created in the future" to UIS. It is not parked: it
    waits (pending, the refusal shown) or goes in UIS's zone, and reaches UIS at the latest once UIS's clock has
    caught up."""
    ahead = integration.model_copy(update={"id": "ahead0001", "timezone": "Asia/Yekaterinburg"})
    store.integrations.create(ahead)
    uis.clock = lambda: clock() - timedelta(hours=2)  # the UIS account runs on Moscow time
    lead = alfacrm.ui_create_customer({"name": "Рано", "is_study": 0, "lead_status_id": 1})
    for body in captured.take():
        deliver(body, integration_id=ahead.id)

    report = flush(ahead.id)
    assert report.parked == [] and store.integrations.parked(ahead.id) == []
    [view] = deals_view(store, ahead.id, "first_sale")
    assert view["upload"]["state"] == "uploaded" or "future" in (view["upload"]["error"] or "")

    clock.advance(2 * 3600 + 60)
    flush(ahead.id)
    assert f"customer-{lead['id']}" in uis.deals


def test_a_school_ahead_of_its_uis_account_writes_deal_times_in_the_uis_accounts_zone(
    alfacrm, captured, deliver, flush, uis, clock, store, integration
):
    """get.account named the UIS account's zone at creation (`uis.timezone`): deal rows are written in it, so a
    school two hours ahead of its UIS account is not refused as "in the future" (and waits for nothing)."""
    ahead = integration.model_copy(
        update={
            "id": "ahead0002",
            "timezone": "Asia/Yekaterinburg",
            "uis": integration.uis.model_copy(update={"timezone": "Europe/Moscow"}),
        }
    )
    store.integrations.create(ahead)
    uis.clock = lambda: clock() - timedelta(hours=2)  # the UIS account runs on Moscow time
    lead = alfacrm.ui_create_customer({"name": "Вовремя", "is_study": 0, "lead_status_id": 1})
    for body in captured.take():
        deliver(body, integration_id=ahead.id)

    report = flush(ahead.id)

    assert report.state == "uploaded" and report.parked == []
    created = datetime.strptime(uis.deals[f"customer-{lead['id']}"]["created_date_time"], "%Y-%m-%d %H:%M:%S")
    assert created <= uis.clock()
    assert {d["upload"]["state"] for d in deals_view(store, ahead.id)} == {"uploaded"}


def test_a_deal_whose_new_contact_uis_refuses_goes_without_it_and_gets_it_once_the_contact_is_fixed(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    """A contact UIS refuses to create is never recorded as synced: the deal reaches UIS without a contact, stays
    pending with UIS's message, is parked after a few flushes, and — once the e-mail is fixed in AlfaCRM —
    its current row goes again with the contact."""
    lead = alfacrm.ui_create_customer({"name": "Опечатка", "is_study": 0, "lead_status_id": 1, "email": ["x@school"]})
    deliver_all(captured, deliver)
    ext_id = f"customer-{lead['id']}"

    flush()
    assert ext_id in uis.deals and uis.deals[ext_id]["contact_ext_ids"] == [] and ext_id not in uis.contacts
    [view] = deals_view(store, INTEGRATION_ID, "first_sale")
    assert view["upload"]["state"] == "pending" and "emails" in (view["upload"]["error"] or "")
    for _ in range(2):
        clock.advance(60)
        flush()
    assert [p.key for p in store.integrations.parked(INTEGRATION_ID)] == [f"first_sale#{ext_id}"]

    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"email": ["x@school.ru"]})
    deliver_all(captured, deliver)
    flush()

    assert uis.contacts[ext_id]["emails"] == ["x@school.ru"]
    assert uis.deals[ext_id]["contact_ext_ids"] == [ext_id]
    [view] = deals_view(store, INTEGRATION_ID, "first_sale")
    assert view["upload"] == {"state": "uploaded", "error": None}
    assert store.integrations.parked(INTEGRATION_ID) == []


def test_a_manager_deleted_in_the_uis_cabinet_is_created_again_not_a_reason_to_park(
    alfacrm, captured, deliver, flush, uis, clock, store
):
    lead = alfacrm.ui_create_customer({"name": "Гоша", "is_study": 0, "lead_status_id": 1, "assigned_id": 2})
    deliver_all(captured, deliver)
    flush()
    uis.deal_employees.clear()  # deleted in the cabinet (UIS refuses rows naming it: deals.employee_ext_id)
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 2})
    deliver_all(captured, deliver)

    report = flush()

    assert report.state == "uploaded" and report.parked == []
    assert set(uis.deal_employees) == {"user-2"} and calls(uis, "create.deal_employees") == 2
    assert uis.deals[f"customer-{lead['id']}"]["employee_ext_id"] == "user-2"


def test_deals_carry_the_responsible_manager_and_the_lead_source(alfacrm, captured, deliver, flush, uis):
    """As UIS's own amoCRM and Bitrix24 integrations do: `employee_ext_id` (made once with create.deal_employees)
    and `source` on each row, for UIS's analysis by employee and by source."""
    lead = alfacrm.ui_create_customer(
        {"name": "Гоша", "is_study": 0, "lead_status_id": 1, "assigned_id": 2, "lead_source_id": 1}
    )
    other = alfacrm.ui_create_customer(
        {"name": "Маша", "is_study": 0, "lead_status_id": 1, "assigned_id": 2, "lead_source_id": 3}
    )
    deliver_all(captured, deliver)

    flush()

    assert uis.deal_employees == {"user-2": {"ext_id": "user-2", "name": "Ольга Менеджер"}}
    assert calls(uis, "create.deal_employees") == 1
    deal = uis.deals[f"customer-{lead['id']}"]
    assert (deal["employee_ext_id"], deal["source"]) == ("user-2", "Сайт")
    assert uis.deals[f"customer-{other['id']}"]["source"] == "Звонок"


@pytest.mark.parametrize("archive_flag", [False, True])
def test_a_lead_refused_with_a_reason_is_a_failed_first_sale_and_a_cleared_reason_reopens_it(
    alfacrm, captured, deliver, flush, uis, clock, archive_flag
):
    """KO_alfacrm_data's real change log shows refusals as `lead_reject_id` in fields_new; no record or client
    model has an archive flag (`removed` is an index filter). Refused → failed, whatever the flag; reason
    cleared → back in process."""
    alfacrm.configure({"archive_flag_in_records": archive_flag})
    lead = alfacrm.ui_create_customer({"name": "Тимур", "is_study": 0, "lead_status_id": 2})
    refused = alfacrm.ui_create_customer({"name": "Юля", "is_study": 0, "lead_status_id": 2})
    clock.advance(600)
    alfacrm.ui_archive_customer(lead["id"], reason_id=1)
    alfacrm.ui_update_customer(refused["id"], {"lead_reject_id": 3})  # refused without archiving
    deliver_all(captured, deliver)
    flush()
    assert uis_path(uis, f"customer-{lead['id']}")[-1] == ("failed", "2025-03-03 09:10:00")
    assert uis_path(uis, f"customer-{refused['id']}")[-1] == ("failed", "2025-03-03 09:10:00")

    clock.advance(600)
    alfacrm.ui_restore_customer(lead["id"])
    deliver_all(captured, deliver)
    flush()
    assert uis_path(uis, f"customer-{lead['id']}")[-1] == ("2", "2025-03-03 09:20:00")


def test_only_the_pay_items_the_settings_name_are_upsell_revenue(alfacrm, captured, deliver, flush, uis, store):
    """A goods sale (the real capture: pay_type_id 9, commodity_id set, a pen) or a refund is no upsell: with
    `deals.upsell.pay_item_ids` [1] only tuition payments become upsell deals."""
    store.integrations.save_settings(
        INTEGRATION_ID,
        SettingsDocument.model_validate(
            {**DEAL_SETTINGS, "deals": {**DEAL_SETTINGS["deals"], "upsell": {"enabled": True, "pay_item_ids": [1]}}}
        ),
    )
    client = alfacrm.ui_create_customer({"name": "Инна", "is_study": 1})
    alfacrm.ui_create_pay(
        {"customer_id": client["id"], "income": "4000", "pay_item_id": 1, "document_date": "2025-03-01"}
    )
    tuition = alfacrm.ui_create_pay(
        {"customer_id": client["id"], "income": "4000", "pay_item_id": 1, "document_date": "2025-03-05"}
    )
    pen = alfacrm.ui_create_pay(
        {"customer_id": client["id"], "income": "120", "pay_item_id": 2, "pay_type_id": 9, "commodity_id": 14}
    )
    deliver_all(captured, deliver)
    flush()
    assert f"pay-{tuition['id']}" in uis.deals and f"pay-{pen['id']}" not in uis.deals
