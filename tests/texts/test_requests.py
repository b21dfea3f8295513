"""Site requests (заявки) → AlfaCRM: filters, find or create the lead, the comment, extra fields, once."""

from __future__ import annotations

import pytest

from tests.texts.conftest import World, texts_settings


def request_settings(**requests):
    return texts_settings(requests=requests)


def submit(world: World, **spec):
    spec.setdefault("visitor_name", "Ирина Ковалёва")
    spec.setdefault("visitor_phone_number", "79261234501")
    spec.setdefault("visitor_email", "irina@example.ru")
    spec.setdefault("text", "Хочу на пробный урок")
    world.uis.submit_request(**spec)
    return world.deliver()


def test_request_creates_a_lead_with_defaults_fields_and_a_comment(world: World):
    # Given requests on, create_lead on, a mapped UTM field, UIS notifying by POST (utm_source added)
    world.integration(request_settings(extra_fields=[{"source": "utm_source", "target": "custom_utm_source"}]))
    world.notify("offline_message", extra_params=["utm_source"])
    # When a visitor submits a form
    [outcome] = submit(world, utm_source="yandex")
    # Then one lead in branch 1 with the lead defaults, the visitor's contacts and the mapped field
    [lead] = world.new_customers()
    assert outcome.status == "done" and outcome.lead_created and outcome.uis_calls == 0
    assert lead["name"] == "Ирина Ковалёва" and lead["is_study"] == 0 and lead["branch_ids"] == [1]
    assert (lead["lead_status_id"], lead["lead_source_id"]) == (1, 2)
    assert lead["phone"] == ["+79261234501"] and lead["email"] == ["irina@example.ru"]
    assert lead["custom_utm_source"] == "yandex"
    # and the request text, site, campaign and UTM on the card
    [comment] = world.comments(lead["id"])
    assert comment.startswith("Заявка с сайта school.ru")
    assert "Сообщение: Хочу на пробный урок" in comment and "Рекламная кампания: Яндекс Директ" in comment
    assert "UTM: utm_source=yandex" in comment
    # and the link the deals side reads
    link = world.store.texts.customer_link("int1", lead["id"])
    assert link is not None and link.communication_type == "offline_message"


def test_request_without_a_name_is_named_after_the_site(world: World):
    world.integration(request_settings())
    world.notify("offline_message")
    submit(world, visitor_name=None)
    [lead] = world.new_customers()
    assert lead["name"] == "Заявка с сайта school.ru"


@pytest.mark.parametrize("phone", ["+7(916)123-45-67", "89161234567", "79161234567"])
def test_request_from_a_known_phone_comments_on_the_existing_client(world: World, phone: str):
    # Given AlfaCRM holds a client with +7(916)123-45-67
    world.integration(request_settings())
    world.notify("offline_message")
    # When a request comes with the same number in another mask
    [outcome] = submit(world, visitor_phone_number=phone, visitor_email=None)
    # Then no new lead: the comment lands on the client's card
    assert world.new_customers() == [] and not outcome.lead_created
    assert any("Хочу на пробный урок" in c for c in world.comments(1))
    # and no link: the connector did not create that customer
    assert world.store.texts.customer_link("int1", 1) is None


def test_request_found_by_email_when_the_phone_is_unknown(world: World):
    world.integration(request_settings())
    world.notify("offline_message")
    submit(world, visitor_phone_number="79990000001", visitor_email="ANNA.SMIRNOVA@example.ru")
    assert world.new_customers() == []
    assert any("Хочу на пробный урок" in c for c in world.comments(1))


def test_archived_lead_is_found_not_duplicated(world: World):
    world.integration(request_settings())
    world.notify("offline_message")
    submit(world, visitor_phone_number="+7 903 555-12-34", visitor_email=None)
    assert world.new_customers() == []
    assert any("Хочу на пробный урок" in c for c in world.comments(4))


def test_requests_off_do_nothing(world: World):
    world.integration(request_settings(enabled=False))
    world.notify("offline_message")
    [outcome] = submit(world)
    assert outcome.status == "skipped" and world.new_customers() == []


def test_inactive_integration_does_nothing(world: World):
    world.integration(request_settings(), active=False)
    world.notify("offline_message")
    [outcome] = submit(world)
    assert (outcome.status, outcome.reason) == ("skipped", "integration inactive")
    assert world.new_customers() == [] and world.alfacrm.stats.get("requests", 0) == 0


@pytest.mark.parametrize(
    ("sites", "passes"),
    [([], True), (["school.ru"], True), (["17001"], True), (["camp.school.ru"], False), (["17002", "other.ru"], False)],
)
def test_site_filter_by_domain_or_id(world: World, sites, passes):
    world.integration(request_settings(filters={"sites": sites, "form_types": []}))
    world.notify("offline_message")
    [outcome] = submit(world)
    assert (len(world.new_customers()) == 1) is passes
    if not passes:
        assert "site" in outcome.reason


@pytest.mark.parametrize(
    ("form_types", "passes"), [([], True), (["custom"], True), (["standard", "custom"], True), (["standard"], False)]
)
def test_request_type_filter(world: World, form_types, passes):
    # Given a request-type filter: the default body has no form_type, so UIS is asked once (and only then)
    world.integration(request_settings(filters={"sites": [], "form_types": form_types}))
    world.notify("offline_message")
    [outcome] = submit(world, form_type="custom")
    assert (len(world.new_customers()) == 1) is passes
    assert outcome.uis_calls == (1 if form_types else 0)


def test_filters_and_across_lists(world: World):
    world.integration(request_settings(filters={"sites": ["school.ru"], "form_types": ["standard"]}))
    world.notify("offline_message")
    [outcome] = submit(world, form_type="custom")
    assert outcome.status == "skipped" and world.new_customers() == []


def test_create_lead_off_comments_existing_only(world: World):
    world.integration(request_settings(create_lead=False))
    world.notify("offline_message")
    [unknown] = submit(world)
    [known] = submit(world, visitor_phone_number="89161234567", text="Вопрос по расписанию")
    assert unknown.status == "skipped" and "create_lead is off" in unknown.reason
    assert world.new_customers() == []
    assert any("Вопрос по расписанию" in c for c in world.comments(1)) and known.status == "done"


def test_duplicates_make_one_lead_and_one_comment(world: World):
    world.integration(request_settings())
    world.notify("offline_message")
    # When UIS's notification is delivered three times
    world.uis.submit_request(visitor_name="Ирина", visitor_phone_number="79261234509", text="Запишите")
    outcomes = world.deliver(times=3)
    # Then one lead, one comment
    [lead] = world.new_customers()
    [comment] = world.comments(lead["id"])
    assert "Запишите" in comment
    assert [o.status for o in outcomes] == ["done", "skipped", "skipped"]
    # a duplicate costs no AlfaCRM and no UIS call
    assert outcomes[1].alfacrm_calls == 0 and outcomes[1].uis_calls == 0


def test_get_form_with_stringified_values(world: World):
    world.integration(request_settings())
    world.notify("offline_message", method="GET")
    [outcome] = submit(world, visitor_phone_number="79261234502")
    [lead] = world.new_customers()
    assert outcome.status == "done" and lead["phone"] == ["+79261234502"]
    assert "Хочу на пробный урок" in world.comments(lead["id"])[0]


def test_event_inferred_when_the_url_does_not_name_it(world: World):
    world.integration(request_settings())
    world.notify("offline_message", name_event=False, stringify_ids=True)
    [outcome] = submit(world)
    assert outcome.event == "offline_message" and len(world.new_customers()) == 1


def test_update_always_on_and_off_on_an_existing_customer(world: World):
    # Given a known client whose custom_utm_source is "yandex" and custom_child_age is "10", note empty
    world.integration(
        request_settings(
            extra_fields=[
                {"source": "utm_source", "target": "custom_utm_source", "update_always": True},
                {"source": "campaign_name", "target": "custom_child_age", "update_always": False},
                {"source": "search_query", "target": "note", "update_always": False},
            ]
        )
    )
    world.notify("offline_message", extra_params=["utm_source"])
    # When a request from that client arrives
    submit(world, visitor_phone_number="+7 916 123 45 67", utm_source="google", search_query="курсы")
    client = world.customer(1)
    # Then update-always overwrites, the filled field stays, the empty field is filled
    assert client["custom_utm_source"] == "google"
    assert client["custom_child_age"] == "10"
    assert client["note"] == "курсы"
    assert client["branch_ids"] == [1]


def test_alfacrm_refusing_the_lead_is_reported_and_parked(world: World):
    # Given an account where a lead needs a field the connector does not send
    world.alfacrm.configure({"required_customer_fields": ("name", "dob")})
    world.integration(request_settings())
    world.notify("offline_message")
    # When a request arrives
    [outcome] = submit(world)
    # Then nothing is created, the record succeeds, and the event is parked with AlfaCRM's own words
    assert outcome.status == "parked" and world.new_customers() == []
    [parked] = world.store.integrations.parked("int1")
    assert parked.kind == "text_event" and parked.key.startswith("om")
    assert "dob" in parked.error and "Необходимо заполнить" in parked.error
    assert parked.payload["event"] == "offline_message"
    # and once the account is fixed, replaying it creates the lead
    world.alfacrm.configure({"required_customer_fields": ("name",)})
    assert world.run(parked.payload).lead_created


def test_branch_mapping_is_merged_into_branch_ids_never_replacing_them(world: World):
    from tests.texts.builders import message, offline_message_post

    # Given a mapping of the form's "branch" parameter (the school's branch 2) to branch_ids, update always
    world.integration(
        request_settings(extra_fields=[{"source": "branch", "target": "branch_ids", "update_always": True}])
    )
    # When a new visitor's request names branch 2
    new = world.run(message("offline_message", offline_message_post(branch=2, offline_message_id=1)))
    # Then the lead is in the configured branch and in branch 2
    [lead] = world.new_customers()
    assert new.lead_created and sorted(lead["branch_ids"]) == [1, 2]
    # When a known client (branch 1 only) sends one naming branch 2 (as a string, as GET forms do)
    known = world.run(
        message(
            "offline_message",
            offline_message_post(
                branch="2", offline_message_id=2, visitor_phone_number="89161234567", visitor_email=None
            ),
        )
    )
    # Then the client is in both branches: merged, nothing replaced
    assert known.status == "done" and sorted(world.customer(1)["branch_ids"]) == [1, 2]


@pytest.mark.parametrize("first", ["communication_id", "offline_message_id"])
def test_deliveries_naming_the_request_by_different_ids_make_one_comment(world: World, first: str):
    # Given one request delivered twice: once with only its communication id, once with only its request id
    # (two notifications with different bodies, e.g. a GET one listing only communication_id)
    world.integration(request_settings())
    world.notify("offline_message")
    world.uis.submit_request(visitor_name="Ирина", visitor_phone_number="79261234577", text="Запишите")
    [msg] = world.messages()
    only = {
        name: {**msg, "payload": {k: v for k, v in msg["payload"].items() if k != other}}
        for name, other in (("communication_id", "offline_message_id"), ("offline_message_id", "communication_id"))
    }
    second = "offline_message_id" if first == "communication_id" else "communication_id"
    # When both are processed, and the first shape comes once more
    outcomes = [world.run(only[first]), world.run(only[second]), world.run(only[first])]
    # Then one lead and one comment: both name the same request
    [lead] = world.new_customers()
    [comment] = world.comments(lead["id"])
    assert "Запишите" in comment
    assert [o.status for o in outcomes] == ["done", "skipped", "skipped"]
    # a repeated delivery costs no UIS call
    assert outcomes[2].uis_calls == 0


# --- issue 8.12: phone search spellings -------------------------------------------------------------------
def test_a_customer_stored_as_11_digits_is_found_by_an_account_matching_exact_text(world: World):
    """AlfaCRM's phone matching is not documented; a client used against a real account searches with the
    11-digit 7XXXXXXXXXX form. An account matching the stored text exactly finds "79031234599" only so."""
    world.alfacrm.configure({"phone_search": "exact"})
    known = world.alfacrm.ui_create_customer({"name": "Зоя", "is_study": 0, "phone": ["79031234599"]})
    world.integration(request_settings())
    world.notify("offline_message")
    submit(world, visitor_phone_number="+7 (903) 123-45-99", visitor_email=None)
    assert [c["id"] for c in world.new_customers()] == [known["id"]]  # no second card for Зоя
    assert any("Хочу на пробный урок" in c for c in world.comments(known["id"]))


def test_once_the_account_spelling_is_learned_a_new_lead_with_a_phone_costs_search_create_comment(world: World):
    """An account matching digits inside stored numbers (the national digits find "+7(916)123-45-67"): the
    spelling that found a differently written number answers for the account, so a new visitor's phone costs
    one search, then the create and the comment."""
    world.integration(request_settings())
    world.notify("offline_message")
    submit(world, visitor_phone_number="+7 916 123 45 67", visitor_email=None)  # the seeded client: learned
    [outcome] = submit(world, visitor_phone_number="79264445566", visitor_email=None, visitor_name="Новая")
    assert outcome.lead_created and outcome.alfacrm_calls == 3


def test_a_cold_container_searches_with_the_spelling_another_container_learned(world: World):
    """The spelling is kept per AlfaCRM account in the state table: a container that just started makes its
    first new lead with a phone with one search (not one per spelling), for one state-table read more than
    its next event, which the runtime's memory answers."""
    world.integration(request_settings())
    world.notify("offline_message")
    submit(world, visitor_phone_number="+7 916 123 45 67", visitor_email=None)  # the seeded client: learned
    world.cold_container()
    searches, reads = world.alfacrm.stats["customer/index"], world.store.calls
    [first] = submit(world, visitor_phone_number="79264445566", visitor_email=None, visitor_name="Новая")
    first_reads, searches = world.store.calls - reads, world.alfacrm.stats["customer/index"] - searches
    assert first.lead_created and searches == 1
    reads = world.store.calls
    [second] = submit(world, visitor_phone_number="79264445577", visitor_email=None, visitor_name="Вторая")
    assert second.lead_created and second.alfacrm_calls == 3  # search, create, comment
    # the new container reads the integration record (the store's 10-s memory) and the spelling, once
    assert first_reads - (world.store.calls - reads) == 2


def test_a_cold_container_of_an_account_nothing_was_learned_for_reads_the_store_once(world: World):
    """Nothing learned yet (no item): the container remembers that too and does not ask again per event; the
    first lead it creates teaches the account's matching (kept in the store), so the next costs 3 calls."""
    world.integration(request_settings())
    world.notify("offline_message")
    world.cold_container()
    reads = world.store.calls
    submit(world, visitor_phone_number="79264445588", visitor_email=None, visitor_name="Третья")
    first_reads, reads = world.store.calls - reads, world.store.calls
    [second] = submit(world, visitor_phone_number="79264445599", visitor_email=None, visitor_name="Четвёртая")
    # the integration record, the (absent) spelling, and the matching the first lead taught, written once
    assert first_reads - (world.store.calls - reads) == 3
    assert second.lead_created and second.alfacrm_calls == 3  # search, create, comment


# --- issue 12.5: a new lead at the floor --------------------------------------------------------------------
def test_the_first_lead_of_an_account_teaches_its_matching_so_new_leads_cost_search_create_comment(world: World):
    """A fresh account where no phone search has found anyone yet: a miss tries every spelling (three
    searches). The lead the connector creates holds the phone as written (E.164), so one search by its national
    digits, once per account, shows the server matches inside stored numbers: every later new visitor costs
    search + create + comment (3 calls, 4 with an e-mail), and a repeat visitor search + comment."""
    world.integration(request_settings())
    world.notify("offline_message")
    [first] = submit(world, visitor_phone_number="79264440001", visitor_email=None, visitor_name="Первая")
    # the container's login, 3 spellings, the create, the probe, the comment
    assert first.lead_created and first.alfacrm_calls == 1 + 3 + 1 + 1 + 1
    [phone_only] = submit(world, visitor_phone_number="79264440002", visitor_email=None, visitor_name="Вторая")
    [with_email] = submit(world, visitor_phone_number="79264440003", visitor_email="v3@example.ru", visitor_name="Т")
    [repeat] = submit(world, visitor_phone_number="+7 926 444-00-02", visitor_email=None, visitor_name="Вторая")
    assert phone_only.lead_created and phone_only.alfacrm_calls == 3
    assert with_email.lead_created and with_email.alfacrm_calls == 4
    assert not repeat.lead_created and repeat.alfacrm_calls == 2
    # no duplicate: the repeat visitor's comment is on the lead the second request made
    assert [c["name"] for c in world.new_customers()] == ["Первая", "Вторая", "Т"]


def test_an_account_matching_exact_text_is_probed_once_and_never_again(world: World):
    """An exact-text server does not find "+79264440011" by "9264440011": the probe learns nothing, is kept
    as done, and the next new lead costs no probe (its misses still try every spelling: AlfaCRM's matching
    leaves no cheaper proof that nobody has the number)."""
    world.alfacrm.configure({"phone_search": "exact"})
    world.integration(request_settings())
    world.notify("offline_message")
    searches = []
    for n in (1, 2):
        before = world.alfacrm.stats["customer/index"]
        [made] = submit(world, visitor_phone_number=f"7926444001{n}", visitor_email=None, visitor_name=f"Лид {n}")
        assert made.lead_created
        searches.append(world.alfacrm.stats["customer/index"] - before)
    assert searches == [3 + 1, 3]  # every spelling each time, the probe once
    [repeat] = submit(world, visitor_phone_number="79264440012", visitor_email=None, visitor_name="Вторая")
    assert not repeat.lead_created  # found as written


# --- issue 8.13: the comment author -------------------------------------------------------------------------
def test_comments_are_signed_by_the_api_user_when_alfacrm_requires_an_author(world: World):
    world.alfacrm.configure({"comment_requires_user_id": True})
    world.integration(request_settings())
    world.notify("offline_message")
    [outcome] = submit(world)
    [lead] = world.new_customers()
    assert outcome.status == "done" and world.comments(lead["id"])
    assert world.alfacrm.state()["communications"][-1]["user_id"] == 3  # the sandbox's API user


def test_comments_are_signed_by_the_author_the_settings_name(world: World):
    world.alfacrm.configure({"comment_requires_user_id": True})
    world.integration(texts_settings(comment_author_id=2))
    world.notify("offline_message")
    submit(world)
    assert world.alfacrm.state()["communications"][-1]["user_id"] == 2
