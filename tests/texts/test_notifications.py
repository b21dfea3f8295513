"""Parsing text-queue messages: events named or inferred, UIS's loose values coerced at the edge."""

from __future__ import annotations

import pytest
from connector.errors import BadRequest
from connector.texts.facts import chat_facts, request_facts
from connector.uis.notifications import as_int, as_messages, as_tags, clean, parse_message

from tests.texts.builders import chat_finished_post, message, offline_message_post


@pytest.mark.parametrize("value", [None, "", "  ", "null", "NULL", "{{visitor_email}}", "{{ tag_ids }}", ["{{x}}"]])
def test_every_spelling_of_nothing_is_none(value):
    assert clean(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (777, 777),
        ("777", 777),
        (" 777 ", 777),
        (777.0, 777),
        ("777.0", 777),
        ("abc", None),
        (True, None),
        ("{{chat_id}}", None),
    ],
)
def test_ids_as_numbers_or_strings(value, expected):
    assert as_int(value) == expected


@pytest.mark.parametrize("value", [[501, 503], ["501", "503"], "501,503", "501, 503", "[501, 503]", '["501","503"]'])
def test_tag_ids_as_list_comma_string_or_json_string(value):
    assert [t.id for t in as_tags(value)] == ["501", "503"]


def test_tags_with_names_and_empty_tag_ids():
    assert [(t.id, t.name) for t in as_tags([{"tag_id": 5, "tag_name": "Лид"}])] == [("5", "Лид")]
    assert as_tags("") == [] and as_tags("{{tag_ids}}") == [] and as_tags([]) == []


def test_messages_as_list_json_string_or_plain_log():
    listed = [{"source": "visitor", "text": "Привет"}]
    assert as_messages(listed) == listed
    assert as_messages('[{"source": "visitor", "text": "Привет"}]') == listed
    assert as_messages("12:00 Анна: Привет\n12:01 Посетитель: Здравствуйте") == [
        {"text": "12:00 Анна: Привет", "raw": True},
        {"text": "12:01 Посетитель: Здравствуйте", "raw": True},
    ]
    assert as_messages(None) is None and as_messages("{{messages}}") is None


def test_offline_message_post_nested_visitor_is_flattened():
    # Given the default POST body of an offline message
    n = parse_message(message("offline_message", offline_message_post()))
    # When it becomes request facts
    req = request_facts(n, "Europe/Moscow")
    # Then the nested visitor fields are the request's
    assert (req.offline_message_id, req.communication_id) == (700042, 90000042)
    assert (req.visitor_name, req.visitor_phone, req.visitor_email) == ("Ирина", "79261234501", "irina@example.ru")
    assert req.text == "Хочу на пробный урок" and req.site_domain_name == "school.ru"
    assert req.param("campaign_name") == "Яндекс Директ" and req.key == "om700042"


def test_get_query_form_with_stringified_ids_and_empty_values():
    # Given a GET notification: every value a string, absent ones empty
    payload = {
        "notification_name": "Чат",
        "chat_id": "777",
        "communication_id": "90000077",
        "tag_ids": "501,503",
        "messages": "",
        "visitor_name": "",
        "visitor_id": "3000077",
        "status": "succeed",
        "site_domain_name": "school.ru",
        "utm_source": "",
    }
    chat = chat_facts(parse_message(message("chat_finished", payload, method="GET")), "Europe/Moscow")
    assert (chat.chat_id, chat.communication_id, chat.visitor_id) == (777, 90000077, 3000077)
    assert [t.id for t in chat.tags] == ["501", "503"]
    assert chat.visitor_name is None and chat.messages is None and "utm_source" not in chat.params


@pytest.mark.parametrize(
    ("payload", "event"),
    [
        (offline_message_post(), "offline_message"),
        (chat_finished_post(), "chat_finished"),
        ({k: v for k, v in chat_finished_post().items() if k != "status"}, "lost_chat"),
        ({"tag_info": {"tag_id": 501, "tag_name": "Лид"}, "chat_id": 777}, "set_mark"),
    ],
)
def test_event_inferred_from_fields_when_the_url_does_not_name_it(payload, event):
    n = parse_message(message(None, payload))
    assert n.event == event and n.inferred


def test_url_event_wins_for_marks():
    n = parse_message(message("unset_mark", {"tag_info": {"tag_id": 501, "tag_name": "Лид"}, "chat_id": 777}))
    assert n.event == "unset_mark" and not n.inferred


def test_chat_finished_post_gives_chat_facts():
    chat = chat_facts(parse_message(message("chat_finished", chat_finished_post())), "Europe/Moscow")
    assert chat.chat_id == 777 and chat.visitor_name == "Павел" and chat.status == "succeed"
    assert chat.messages and len(chat.messages) == 2
    # the default body carries no phone: that fact is unknown, not known-absent
    assert chat.visitor_phone is None and not chat.knows("visitor_phone")
    assert chat.param("utm_source") == "yandex"


def test_poller_report_row_is_complete():
    row = {
        "id": 5000001,
        "communication_id": 9,
        "date_time": "2025-03-14 12:00:00",
        "status": "new",
        "site_id": 17001,
        "site_domain_name": "school.ru",
        "chat_channel_type": "whatsapp",
        "visitor_phone_number": 79161234567,
        "tags": [],
    }
    chat = chat_facts(parse_message(message("chat_started", row, source="poller")), "Europe/Moscow")
    assert chat.complete and chat.visitor_phone == "79161234567" and chat.channel_type == "whatsapp"


@pytest.mark.parametrize("bad", ["not json", "[]", {"event": "offline_message"}, message(None, {"foo": "bar"})])
def test_unreadable_messages_are_bad_requests(bad):
    with pytest.raises(BadRequest):
        parse_message(bad)


def test_a_malformed_message_is_refused_without_echoing_personal_data():
    # Given a queue message whose payload is not an object (its values hold a visitor's name and phone)
    bad = {
        "integration_id": "int1",
        "payload": [{"visitor_name": "Ирина Ковалёва", "visitor_phone_number": "79261234501"}],
    }
    # When it is parsed, Then the refusal (logged and parked) names the field, not the visitor
    with pytest.raises(BadRequest) as err:
        parse_message(bad)
    assert "payload" in err.value.message
    assert "Ири" not in err.value.message and "7926" not in err.value.message


def _key(event, payload):
    return parse_message({"integration_id": "i", "event": event, "payload": payload}).dedup_key


def test_parked_keys_name_the_event_or_hash_what_it_says_never_none():
    """Issue 9, defect 2: `cNone` and `chatNone#lost_chat` were one parked item for every event lacking an id."""
    assert _key("offline_message", {"offline_message_id": "7", "communication_id": 9}) == "om7"
    assert _key("offline_message", {"communication_id": "9"}) == "c9"
    assert _key("lost_chat", {"chat_id": 5}) == "chat5#lost_chat"
    assert _key("set_mark", {"chat_id": 5, "tag_id": 3}) != _key("set_mark", {"chat_id": 5, "tag_id": 4})
    nameless = [
        _key("offline_message", {"visitor_message": "a"}),
        _key("offline_message", {"visitor_message": "b"}),
        _key("lost_chat", {"visitor_name": "a"}),
        _key("lost_chat", {"visitor_name": "b"}),
        _key("set_mark", {"chat_id": 5}),
        _key("set_mark", {"chat_id": 5, "visitor_name": "x"}),
    ]
    assert len(set(nameless)) == len(nameless)
    assert not any("None" in key for key in nameless)
    # the same event delivered again is the same item
    assert _key("lost_chat", {"visitor_name": "a"}) == _key("lost_chat", {"visitor_name": "a"})
