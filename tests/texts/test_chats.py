"""Chats → AlfaCRM: filters, the lead on the configured event, the transcript at the end, once."""

from __future__ import annotations

import json

import pytest
from connector.models.texts import CustomerLink
from connector.texts.facts import chat_facts, chat_fields
from connector.texts.transcript import MAX_PART_BYTES
from connector.texts.visitors import Visitors
from connector.uis.notifications import parse_message

from tests.texts.builders import chat_finished_post, message
from tests.texts.conftest import World, texts_settings


def chat_settings(on: str = "chat_finished", tags=(), **chats):
    chats.setdefault("create_lead", {"enabled": True, "on": on, "tags": list(tags)})
    return texts_settings(chats=chats)


def open_chat(
    world: World,
    *,
    channel: str = "comagic",
    phone: str | None = "79261230001",
    name="Павел",
    text: str = "Здравствуйте, есть места?",
    site_id: int = 17001,
) -> int:
    chat = world.uis.start_chat(
        chat_channel_type=channel, site_id=site_id, visitor_name=name, visitor_phone_number=phone, message=text
    )
    world.uis.take_chat(chat["id"], employee_id=11)
    world.uis.post_message(chat["id"], "Да, в субботу в 11:00", source="operator")
    return int(chat["id"])


def poller_event(world: World, chat_id: int, event: str = "chat_started", *, with_card: bool = True) -> dict:
    """What the chat poller enqueues: its `get.chats_report` row (the columns the poller asks for) as payload,
    with the visitor's card from get.visitors (`with_card=False`: a row no one looked the visitor up for)."""
    integration = world.store.integrations.get("int1")
    assert integration is not None
    day = world.clock.now.replace(hour=0, minute=0, second=0)
    [row] = world.clients.uis(integration).get_chats_report(
        day,
        day.replace(hour=23, minute=59, second=59),
        filter={"field": "id", "operator": "=", "value": chat_id},
        fields=chat_fields(integration.settings.texts.chats.extra_fields),
    )
    if with_card:
        with world.rt.uis_points(integration, "texts") as points:
            Visitors(world.rt, integration, points).complete_rows([row])
    return message(event, row, source="poller")


def test_chat_finished_creates_the_lead_and_posts_the_transcript(world: World):
    # Given chats on, a lead on chat end, UIS notifying chat_finished with its default body (no phone in it)
    world.integration(chat_settings())
    world.notify("chat_finished")
    chat_id = open_chat(world)
    # When the chat ends
    world.uis.finish_chat(chat_id)
    [outcome] = world.deliver()
    # Then the lead (phone from the chats report: one UIS call), and the transcript on its card
    [lead] = world.new_customers()
    assert lead["name"] == "Павел" and lead["phone"] == ["+79261230001"] and lead["lead_source_id"] == 2
    [transcript] = world.comments(lead["id"])
    assert transcript.startswith("Переписка в чате на сайте")
    # UIS's text log read back with the authors a manager expects: the visitor by name, the operator by full name
    assert [line.split("] ", 1)[1] for line in transcript.splitlines()[1:]] == [
        "Посетитель (Павел): Здравствуйте, есть места?",
        f"{world.uis.employees[11]['full_name']}: Да, в субботу в 11:00",
    ]
    assert outcome.uis_calls == 1
    link = world.store.texts.customer_link("int1", lead["id"])
    assert link is not None and link.model_dump() == {
        "communication_id": world.uis.chats[chat_id]["communication_id"],
        "communication_type": "chat",
    }


def test_no_uis_call_when_the_notification_has_everything(world: World):
    # Given the user added the phone and channel to the notification body; messages come as a list
    world.integration(chat_settings())
    world.notify("chat_finished", extra_params=["visitor_phone_number", "chat_channel_type"], messages_as_list=True)
    chat_id = open_chat(world)
    world.uis.finish_chat(chat_id)
    [outcome] = world.deliver()
    assert outcome.uis_calls == 0 and outcome.lead_created
    assert world.uis.state()["points_spent"] == 0


def test_lead_on_chat_started_then_transcript_at_the_end(world: World):
    # Given leads on chat start (the poller announces starts), UIS notifying chat_finished
    world.integration(chat_settings(on="chat_started"))
    world.notify("chat_finished")
    chat_id = open_chat(world)
    # When the poller's chat_started arrives
    started = world.run(poller_event(world, chat_id))
    # Then the lead exists already, with no comment yet (the chat is going on) and no UIS call
    [lead] = world.new_customers()
    assert started.lead_created and started.uis_calls == 0 and world.comments(lead["id"]) == []
    # When the chat ends
    world.uis.post_message(chat_id, "Спасибо, запишите меня", source="visitor")
    world.uis.finish_chat(chat_id)
    [finished] = world.deliver()
    # Then the transcript goes to that lead, no second lead, no UIS call (facts were kept from the start)
    assert [c["id"] for c in world.new_customers()] == [lead["id"]]
    [transcript] = world.comments(lead["id"])
    assert "Спасибо, запишите меня" in transcript
    assert not finished.lead_created and finished.uis_calls == 0


def test_chat_started_does_nothing_when_leads_are_made_at_the_end(world: World):
    world.integration(chat_settings(on="chat_finished"))
    chat_id = open_chat(world)
    outcome = world.run(poller_event(world, chat_id))
    assert outcome.status == "skipped" and world.new_customers() == [] and outcome.uis_calls == 0


def test_lead_on_tag_set(world: World):
    # Given leads when the tag "Целевой" (by name) is set, UIS notifying set_mark with chat_id added
    world.integration(chat_settings(on="tag_set", tags=["Целевой"]))
    world.notify("set_mark", "unset_mark", "chat_finished", extra_params=["chat_id"])
    chat_id = open_chat(world)
    # When another tag is set: no lead
    world.uis.tag_chat(chat_id, 502)
    [other] = world.deliver()
    assert other.status == "skipped" and world.new_customers() == []
    # When the listed tag is set: the lead
    world.uis.tag_chat(chat_id, 504)
    [listed] = world.deliver()
    [lead] = world.new_customers()
    assert listed.lead_created and world.comments(lead["id"]) == []
    # and at the end the transcript lands on it
    world.uis.finish_chat(chat_id)
    world.deliver()
    assert len(world.new_customers()) == 1 and len(world.comments(lead["id"])) == 1


def test_chat_finished_without_the_listed_tag_creates_no_lead(world: World):
    world.integration(chat_settings(on="tag_set", tags=["504"]))
    world.notify("chat_finished")
    chat_id = open_chat(world)
    world.uis.finish_chat(chat_id)
    [outcome] = world.deliver()
    assert world.new_customers() == [] and outcome.status in {"skipped", "done"}


def test_repeat_chat_from_a_known_phone_reuses_the_customer(world: World):
    world.integration(chat_settings())
    world.notify("chat_finished")
    first = open_chat(world, phone="+7 926 123-00-01")
    world.uis.finish_chat(first)
    world.deliver()
    second = open_chat(world, phone="89261230001", text="Это снова я")
    world.uis.finish_chat(second)
    [outcome] = world.deliver()
    [lead] = world.new_customers()
    assert not outcome.lead_created and outcome.customer_id == lead["id"]
    assert len(world.comments(lead["id"])) == 2 and "Это снова я" in world.comments(lead["id"])[1]


@pytest.mark.parametrize(
    ("channels", "passes"), [([], True), (["whatsapp"], True), (["302"], True), (["telegram", "comagic"], False)]
)
def test_channel_filter_by_type_or_id(world: World, channels, passes):
    world.integration(chat_settings(filters={"sites": [], "channels": channels, "tags": []}))
    world.notify("chat_finished")
    chat_id = open_chat(world, channel="whatsapp")
    world.uis.finish_chat(chat_id)
    [outcome] = world.deliver()
    assert (len(world.new_customers()) == 1) is passes
    assert outcome.uis_calls == 1


@pytest.mark.parametrize(
    ("sites", "passes"), [([], True), (["camp.school.ru"], True), (["17002"], True), (["school.ru"], False)]
)
def test_chat_site_filter(world: World, sites, passes):
    world.integration(chat_settings(filters={"sites": sites, "channels": [], "tags": []}))
    world.notify("chat_finished")
    chat_id = open_chat(world, site_id=17002)
    world.uis.finish_chat(chat_id)
    world.deliver()
    assert (len(world.new_customers()) == 1) is passes


@pytest.mark.parametrize(("tags", "passes"), [([], True), (["Лид"], True), (["501"], True), (["Спам"], False)])
def test_chat_tag_filter_by_id_or_name(world: World, tags, passes):
    world.integration(chat_settings(filters={"sites": [], "channels": [], "tags": tags}))
    world.notify("chat_finished")
    chat_id = open_chat(world)
    world.uis.tag_chat(chat_id, 501)
    world.uis.finish_chat(chat_id)
    world.deliver()
    assert (len(world.new_customers()) == 1) is passes


def test_chats_off_do_nothing(world: World):
    world.integration(chat_settings(enabled=False))
    world.notify("chat_finished")
    world.uis.finish_chat(open_chat(world))
    [outcome] = world.deliver()
    assert outcome.status == "skipped" and world.new_customers() == [] and outcome.uis_calls == 0


def test_visitor_without_contacts_and_the_setting_off_gets_no_lead(world: World):
    world.integration(chat_settings(without_contacts=False))
    world.notify("chat_finished")
    world.uis.finish_chat(open_chat(world, phone=None, name=None))
    [outcome] = world.deliver()
    assert world.new_customers() == [] and "no phone or e-mail" in outcome.reason


def test_visitors_without_contacts_get_a_new_lead_per_chat_when_on(world: World):
    world.integration(chat_settings(without_contacts=True))
    world.notify("chat_finished")
    first = open_chat(world, channel="whatsapp", phone=None, name=None)
    world.uis.finish_chat(first)
    second = open_chat(world, channel="whatsapp", phone=None, name=None)
    world.uis.finish_chat(second)
    world.deliver()
    leads = world.new_customers()
    visitors = [world.uis.chats[c]["visitor_id"] for c in (first, second)]
    assert sorted(lead["name"] for lead in leads) == sorted(f"Чат WhatsApp, посетитель {v}" for v in visitors)
    assert all(lead["phone"] == [] and len(world.comments(lead["id"])) == 1 for lead in leads)


def test_transcript_only_when_the_chat_has_ended(world: World):
    # Given a lead on tag set; a tag set mid-chat
    world.integration(chat_settings(on="tag_set", tags=["Лид"]))
    world.notify("set_mark", extra_params=["chat_id"])
    chat_id = open_chat(world)
    world.uis.tag_chat(chat_id, 501)
    world.deliver()
    [lead] = world.new_customers()
    # Then no transcript while the chat goes on
    assert world.comments(lead["id"]) == []


def test_long_transcript_is_split_and_nothing_is_lost(world: World):
    world.integration(chat_settings())
    world.notify("chat_finished", messages_as_list=True)
    chat_id = open_chat(world)
    sentences = [f"Сообщение номер {i}: расскажите подробнее про группу для детей {i} лет." for i in range(80)]
    for i, text in enumerate(sentences):
        world.uis.post_message(chat_id, text, source="visitor" if i % 2 else "operator")
    world.uis.finish_chat(chat_id)
    [outcome] = world.deliver()
    [lead] = world.new_customers()
    parts = world.comments(lead["id"])
    assert len(parts) > 1 and outcome.comments == len(parts)
    assert all(len(p.encode()) <= MAX_PART_BYTES for p in parts)
    assert [p.splitlines()[0] for p in parts] == [f"(часть {k}/{len(parts)})" for k in range(1, len(parts) + 1)]
    joined = "\n".join(p.split("\n", 1)[1] for p in parts)
    assert all(text in joined for text in sentences)


def test_duplicate_chat_finished_three_times_one_lead_one_transcript(world: World):
    world.integration(chat_settings())
    world.notify("chat_finished")
    world.uis.finish_chat(open_chat(world))
    outcomes = world.deliver(times=3)
    [lead] = world.new_customers()
    assert len(world.comments(lead["id"])) == 1
    assert [o.status for o in outcomes] == ["done", "skipped", "skipped"]
    assert sum(o.uis_calls for o in outcomes) == 1


def test_chat_get_form_with_stringified_ids_and_comma_tags(world: World):
    world.integration(chat_settings(filters={"sites": [], "channels": [], "tags": ["Лид"]}))
    world.notify("chat_finished", method="GET", stringify_ids=True)
    chat_id = open_chat(world)
    world.uis.tag_chat(chat_id, 501)
    world.uis.finish_chat(chat_id)
    [outcome] = world.deliver()
    [lead] = world.new_customers()
    assert outcome.status == "done" and "Да, в субботу в 11:00" in world.comments(lead["id"])[0]


def test_lost_chat_creates_the_lead_posts_messages_and_hands_over_the_task(world: World):
    # Given a lead on chat end and the lost-chat task on
    world.integration(
        chat_settings(
            lost_chat_task={
                "enabled": True,
                "title": "Потерянный чат: {visitor_name}",
                "assigned_ids": [1],
                "due_hours": 24,
            }
        )
    )
    world.notify("lost_chat")
    chat = world.uis.start_chat(
        chat_channel_type="whatsapp",
        visitor_name="Олеся",
        visitor_phone_number="79261239999",
        message="Ответьте, пожалуйста",
    )
    # When nobody answers
    world.uis.lose_chat(chat["id"])
    [outcome] = world.deliver()
    # Then the lead, the visitor's message on it, and one task from the lost-chat module
    [lead] = world.new_customers()
    assert "Ответьте, пожалуйста" in world.comments(lead["id"])[0]
    tasks = [t for t in world.alfacrm.state()["tasks"] if "Олеся" in t["title"]]
    assert len(tasks) == 1 and outcome.uis_calls == 1


def test_uis_unavailable_fails_the_record_for_a_retry(world: World):
    from connector.errors import UisUnavailable

    world.integration(chat_settings())
    world.notify("chat_finished")
    world.uis.finish_chat(open_chat(world))
    [msg] = world.messages()
    world.uis.fail("http", count=1, method="get.chats_report")
    with pytest.raises(UisUnavailable):
        world.run(msg)
    assert world.new_customers() == []
    # the retry succeeds and makes exactly one lead
    assert world.run(msg).lead_created and len(world.new_customers()) == 1


def test_alfacrm_unavailable_during_the_transcript_retries_without_duplicates(world: World):
    from connector.errors import AlfaCrmUnavailable

    world.integration(chat_settings())
    world.notify("chat_finished")
    world.uis.finish_chat(open_chat(world))
    [msg] = world.messages()
    worker = world.worker()
    # the comment call fails (lead created before it)
    calls = {"n": 0}
    original = world.clients._alfacrm.add_comment

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise AlfaCrmUnavailable("AlfaCRM server error on communication/create (502)")
        return original(*args, **kwargs)

    world.clients._alfacrm.add_comment = flaky  # type: ignore[method-assign]
    with pytest.raises(AlfaCrmUnavailable):
        worker.handle(msg)
    again = world.worker().handle(msg)
    [lead] = world.new_customers()
    assert not again.lead_created and len(world.comments(lead["id"])) == 1


def test_a_copy_arriving_while_a_comment_whose_answer_was_lost_may_still_land_posts_it_once(world: World):
    """AlfaCRM applied the transcript's comment after the client gave up (a read timeout; PHP goes on after
    the gateway's 504): a second copy of the notification handled at once would read the comments before
    that write lands and post it again (found by `make chaos`). It waits one read timeout, then reads back."""
    from connector.errors import AlfaCrmUnavailable, ConcurrentUpdate

    world.integration(chat_settings())
    world.notify("chat_finished")
    world.uis.finish_chat(open_chat(world))
    [msg] = world.messages()
    client = world.clients._alfacrm
    original = client.add_comment
    landing: list[tuple[tuple[object, ...], dict[str, object]]] = []

    def answer_lost(*args, **kwargs):
        landing.append((args, kwargs))  # AlfaCRM is still writing it
        lost = AlfaCrmUnavailable("AlfaCRM did not answer (ReadTimeout)")
        lost.ambiguous = True  # type: ignore[attr-defined]
        raise lost

    client.add_comment = answer_lost  # type: ignore[method-assign]
    with pytest.raises(AlfaCrmUnavailable):
        world.worker().handle(msg)
    client.add_comment = original  # type: ignore[method-assign]
    # the second copy, at once: AlfaCRM shows no comment yet; it is tried again later (SQS)
    with pytest.raises(ConcurrentUpdate):
        world.worker().handle(msg)
    for args, kwargs in landing:
        original(*args, **kwargs)  # the write lands
    world.clock.advance(30)
    world.worker().handle(msg)
    [lead] = world.new_customers()
    assert len(world.comments(lead["id"])) == 1


def test_stale_claim_after_a_crash_finds_the_lead_instead_of_creating_another(world: World):
    # Given a worker that created the lead and died before recording it (the claim stays "claimed")
    integration = world.integration(chat_settings())
    world.notify("chat_finished")
    world.uis.finish_chat(open_chat(world))
    [msg] = world.messages()
    chat = chat_facts(parse_message(msg), "Europe/Moscow")
    world.store.texts.claim_step("int1", f"CHAT#{chat.chat_id}", "lead", now=world.clock.epoch())
    world.alfacrm.ui_create_customer({"name": "Павел", "phone": ["+79261230001"], "is_study": 0}, branch_id=1)
    # When the message comes back after the claim went stale
    world.clock.advance(600)
    outcome = world.run(msg)
    # Then the lead is found, not created again
    assert len(world.new_customers()) == 1 and not outcome.lead_created and integration.active


def test_unparseable_event_is_parked_not_retried(world: World):
    world.integration(chat_settings())
    outcome = world.run(message(None, {"foo": "bar"}))
    assert outcome.status == "parked"
    [parked] = world.store.integrations.parked("int1")
    assert "add ?event=" in parked.error


def test_builders_shape_is_what_uis_sends(world: World):
    # Given the default POST body from the builders (a chat that never reached the report)
    world.integration(chat_settings())
    from connector.errors import UisUnavailable

    with pytest.raises(UisUnavailable):  # not in the report yet → retried later, not dropped
        world.run(message("chat_finished", chat_finished_post(chat_id=424242)))


def test_tag_set_after_the_chat_ended_creates_the_lead_with_the_transcript(world: World):
    # Given leads when the tag "Целевой" is set; operators often tag a chat after closing it
    world.integration(chat_settings(on="tag_set", tags=["Целевой"]))
    world.notify("set_mark", "chat_finished", extra_params=["chat_id"])
    chat_id = open_chat(world)
    # When the chat ends untagged (no lead yet: the tag is not set), and then the tag is set
    world.uis.finish_chat(chat_id)
    [ended] = world.deliver()
    assert world.new_customers() == [] and ended.status in {"skipped", "done"}
    world.uis.tag_chat(chat_id, 504)
    world.deliver()
    # Then the lead exists and holds the transcript of the ended chat, once
    [lead] = world.new_customers()
    [transcript] = world.comments(lead["id"])
    assert "Да, в субботу в 11:00" in transcript
    # and a repeated set_mark adds nothing
    world.uis.untag_chat(chat_id, 504)
    world.uis.tag_chat(chat_id, 504)
    world.deliver()
    assert len(world.new_customers()) == 1 and len(world.comments(lead["id"])) == 1


def test_lost_chat_task_is_linked_to_the_lead_made_for_a_visitor_without_contacts(world: World):
    # Given leads for visitors without contacts, and the lost-chat task on
    world.integration(
        chat_settings(
            without_contacts=True,
            lost_chat_task={"enabled": True, "title": "Потерянный чат {chat_id}", "assigned_ids": [1], "due_hours": 2},
        )
    )
    world.notify("lost_chat")
    chat = world.uis.start_chat(chat_channel_type="whatsapp", visitor_name=None, visitor_phone_number=None)
    # When the chat is lost (nobody answered a visitor who left no phone or e-mail)
    world.uis.lose_chat(chat["id"])
    world.deliver()
    # Then the new lead, and one task linked to that lead (a manager opens the task and sees whom to contact)
    [lead] = world.new_customers()
    [task] = [t for t in world.alfacrm.state()["tasks"] if t["title"] == f"Потерянный чат {chat['id']}"]
    assert task["customer_ids"] == [lead["id"]]


def test_replayed_chat_without_contacts_never_lands_on_a_namesake(world: World):
    # Given chats without contacts on; AlfaCRM holds a lead "Петров Илья" (with his phone) from elsewhere;
    # and an account that refuses leads without a date of birth
    world.alfacrm.configure({"required_customer_fields": ("name", "dob")})
    world.integration(chat_settings(without_contacts=True))
    world.notify("chat_finished")
    chat_id = open_chat(world, phone=None, name="Петров Илья", text="Сколько стоит?")
    world.uis.finish_chat(chat_id)
    # When the chat's lead is refused (parked), the account is fixed and the event replayed
    [refused] = world.deliver()
    assert refused.status == "parked"
    world.alfacrm.configure({"required_customer_fields": ("name",)})
    [parked] = world.store.integrations.parked("int1")
    replayed = world.run(parked.payload)
    # Then the visitor gets a lead of his own with the transcript; the namesake's card is untouched
    [lead] = world.new_customers()
    assert replayed.lead_created and lead["name"].startswith("Петров Илья (чат") and lead["phone"] == []
    assert "Сколько стоит?" in world.comments(lead["id"])[0]
    namesake = next(c for c in world.customers() if c["name"] == "Петров Илья" and c["phone"])
    assert world.comments(namesake["id"]) == []


def test_stale_claim_for_a_visitor_without_contacts_finds_the_lead_it_created(world: World):
    # Given a worker that created a contactless chat's lead and died before recording it
    world.integration(chat_settings(without_contacts=True))
    world.notify("chat_finished")
    chat_id = open_chat(world, channel="whatsapp", phone=None, name=None)
    world.uis.finish_chat(chat_id)
    [msg] = world.messages()
    world.store.texts.claim_step("int1", f"CHAT#{chat_id}", "lead", now=world.clock.epoch())
    name = f"Чат WhatsApp, посетитель {world.uis.chats[chat_id]['visitor_id']}"
    world.alfacrm.ui_create_customer({"name": name, "is_study": 0}, branch_id=1)
    # When the message comes back after the claim went stale
    world.clock.advance(600)
    outcome = world.run(msg)
    # Then that lead gets the transcript; no second lead
    [lead] = world.new_customers()
    assert not outcome.lead_created and lead["name"] == name and len(world.comments(lead["id"])) == 1


def test_lead_made_from_a_chat_api_start_is_linked_to_the_chat_once_its_communication_is_known(world: World):
    # Given leads on chat start, announced by a Chat API adapter callback (no communication_id in it)
    world.integration(chat_settings(on="chat_started"))
    world.notify("chat_finished")
    chat_id = open_chat(world, phone="79261230042")
    chat = world.uis.chats[chat_id]
    started = world.run(
        message(
            "chat_started",
            {
                "chat_id": str(chat_id),
                "visitor_id": str(chat["visitor_id"]),
                "visitor_phone": "79261230042",
                "channel_id": str(chat["chat_channel_id"]),
                "initiator": "visitor",
            },
            source="chat_api",
        )
    )
    [lead] = world.new_customers()
    assert started.lead_created
    # When the chat ends (UIS's notification names the chat's communication)
    world.uis.finish_chat(chat_id)
    world.deliver()
    # Then the deals side can read the exact communication that made this lead
    assert world.store.texts.customer_link("int1", lead["id"]) == CustomerLink(
        communication_id=chat["communication_id"], communication_type="chat"
    )


def test_a_named_visitor_without_contacts_gets_a_lead_a_manager_recognises_as_a_chat(world: World):
    # Given chats without contacts on
    world.integration(chat_settings(without_contacts=True))
    world.notify("chat_finished")
    # When a visitor who gave only a name chats on WhatsApp
    chat_id = open_chat(world, channel="whatsapp", phone=None, name="Павел")
    world.uis.finish_chat(chat_id)
    world.deliver()
    # Then the lead says who, where and which visitor (no phone, no e-mail to tell him apart)
    [lead] = world.new_customers()
    assert lead["name"] == f"Павел (чат WhatsApp, посетитель {world.uis.chats[chat_id]['visitor_id']})"


def test_fields_known_only_at_chat_end_are_written_on_the_lead_made_at_chat_start(world: World):
    # Given leads on chat start, and three mappings: UTM source (update always off), campaign → note (off),
    # UTM campaign → custom_child_age (update always on)
    world.integration(
        chat_settings(
            on="chat_started",
            extra_fields=[
                {"source": "utm_source", "target": "custom_utm_source", "update_always": False},
                {"source": "campaign_name", "target": "note", "update_always": False},
                {"source": "utm_campaign", "target": "custom_child_age", "update_always": True},
            ],
        )
    )
    world.notify("chat_finished")
    chat = world.uis.start_chat(
        chat_channel_type="comagic", visitor_name="Павел", visitor_phone_number="79261230055", utm_campaign="winter"
    )
    chat_id = int(chat["id"])
    world.run(poller_event(world, chat_id))
    [lead] = world.new_customers()
    assert (lead["custom_utm_source"], lead["note"], lead["custom_child_age"]) == ("", "Яндекс Директ", "winter")
    # When UIS knows more by the chat's end (the session attributed to a source and another campaign)
    world.uis.chats[chat_id].update(utm_source="yandex", utm_campaign="spring", campaign_name="Весна")
    world.uis.post_message(chat_id, "Запишите меня", source="visitor")
    world.uis.finish_chat(chat_id)
    [finished] = world.deliver()
    # Then the empty field is filled, the filled one kept, the update-always one overwritten; no second lead
    lead = world.customer(lead["id"])
    assert (lead["custom_utm_source"], lead["note"], lead["custom_child_age"]) == ("yandex", "Яндекс Директ", "spring")
    assert len(world.new_customers()) == 1 and len(world.comments(lead["id"])) == 1
    # with one customer read, one update and the transcript
    assert finished.alfacrm_calls == 3


def test_no_customer_read_at_chat_end_when_the_mapped_values_did_not_change(world: World):
    world.integration(
        chat_settings(
            on="chat_started", extra_fields=[{"source": "campaign_name", "target": "note", "update_always": True}]
        )
    )
    world.notify("chat_finished")
    chat_id = open_chat(world)
    world.run(poller_event(world, chat_id))
    world.uis.finish_chat(chat_id)
    [finished] = world.deliver()
    [lead] = world.new_customers()
    assert lead["note"] == "Яндекс Директ" and len(world.comments(lead["id"])) == 1
    assert finished.alfacrm_calls == 1  # the transcript only


def test_a_lead_made_from_a_polled_chat_start_carries_the_utm_and_columns_its_mappings_name(world: World):
    """get.chats_report returns only its default columns without `fields` (report/get_chats_report): no UTM,
    no channel, no tags. The poller names what the facts need and every documented column a mapping names."""
    world.integration(
        chat_settings(
            on="chat_started",
            filters={"sites": [], "channels": ["whatsapp"], "tags": []},
            extra_fields=[
                {"source": "utm_source", "target": "custom_utm_source", "update_always": False},
                {"source": "ua_client_id", "target": "note", "update_always": False},
            ],
        )
    )
    chat = world.uis.start_chat(
        chat_channel_type="whatsapp", visitor_phone_number="79261230077", utm_source="vk", ua_client_id="GA1.2.77"
    )
    outcome = world.run(poller_event(world, int(chat["id"])))
    [lead] = world.new_customers()
    assert outcome.lead_created and (lead["custom_utm_source"], lead["note"]) == ("vk", "GA1.2.77")


def test_a_lead_made_on_a_polled_chat_start_is_named_after_the_visitor_from_get_visitors(world: World):
    """The chat report has the visitor's phone, not the name or e-mail the visitor typed: get.visitors does."""
    world.integration(chat_settings(on="chat_started"))
    chat = world.uis.start_chat(
        chat_channel_type="whatsapp", visitor_name="Эмма", visitor_phone_number="79261230088", visitor_email="e@x.ru"
    )
    outcome = world.run(poller_event(world, int(chat["id"]), with_card=False))
    [lead] = world.new_customers()
    assert outcome.lead_created and (lead["name"], lead["email"]) == ("Эмма", ["e@x.ru"])
    assert outcome.uis_calls == 1  # the event's own get.visitors: no one asked for this chat before


def test_a_lead_made_on_a_chat_start_the_poller_looked_up_costs_no_uis_call(world: World):
    """The poller asked get.visitors for the chats it announced (one call for all): the event has the card."""
    world.integration(chat_settings(on="chat_started"))
    chat = world.uis.start_chat(chat_channel_type="whatsapp", visitor_name="Эмма", visitor_phone_number="79261230089")
    event = poller_event(world, int(chat["id"]))
    assert event["payload"]["visitor_card"] == {"name": "Эмма", "phone": "79261230089"}
    outcome = world.run(event)
    [lead] = world.new_customers()
    assert outcome.lead_created and outcome.uis_calls == 0 and lead["name"] == "Эмма"


def test_a_chat_finished_notification_of_a_nameless_visitor_costs_no_get_visitors_call(world: World):
    """The default chat_finished body carries `visitor_info.visitor_name` (uis-api.md, notifications): empty
    there, UIS has no name for the visitor, so get.visitors is not asked (issue 8.5 asks it only where the
    notification lacks the name: poller-only chats). The event costs its one chats-report read, as before."""
    world.integration(chat_settings())
    world.notify("chat_finished")
    chat_id = open_chat(world, name=None)
    world.uis.finish_chat(chat_id)
    [outcome] = world.deliver()
    [lead] = world.new_customers()
    assert outcome.lead_created and lead["phone"] == ["+79261230001"]
    assert outcome.uis_calls == 1
    assert "get.visitors" not in [c["method"] for c in world.uis.rpc_log]


def test_a_chat_notification_without_the_visitor_name_field_asks_get_visitors_for_the_lead_name(world: World):
    """A body the user trimmed of `visitor_info` says nothing of the name: the lead asks get.visitors."""
    world.integration(chat_settings())
    world.notify("chat_finished")
    chat_id = open_chat(world, name="Эмма")
    world.uis.finish_chat(chat_id)
    [sent] = world.outbox.sent
    body = json.loads(sent["body"])
    body["chat_id"] = body.get("chat_id") or chat_id
    del body["visitor_info"]
    body["visitor_id"] = world.uis.chats[chat_id]["visitor_id"]
    sent["body"] = json.dumps(body)
    [outcome] = world.deliver()
    [lead] = world.new_customers()
    assert outcome.lead_created and lead["name"] == "Эмма"
    assert [c["method"] for c in world.uis.rpc_log].count("get.visitors") == 1
