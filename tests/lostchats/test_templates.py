"""Lost-chat task titles: every parameter, missing values, and the settings-time check of the template."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from connector.errors import ValidationFailed
from connector.models.texts import ChatFacts, Tag
from connector.settings import TITLE_PARAMS, parse_settings
from connector.texts.templates import render_title

FULL = ChatFacts(
    chat_id=5000123,
    communication_id=90001,
    status="lost",
    started_at=datetime(2025, 3, 14, 9, 5, tzinfo=UTC),  # 12:05 in Moscow
    site_id=17001,
    site_domain_name="school.ru",
    channel_type="whatsapp",
    channel_name="WhatsApp школы",
    visitor_name="Мария",
    visitor_phone="79161234567",
    visitor_email="maria@example.ru",
    employee_full_name="Анна Смирнова",
    tags=[Tag(id="501", name="Лид"), Tag(id="503", name="Пробное")],
)


def test_every_parameter_is_rendered() -> None:
    # Given a template that uses all ten parameters
    template = " | ".join(f"{{{name}}}" for name in TITLE_PARAMS)
    # When it is rendered for a chat that has every value
    title = render_title(template, FULL, "Europe/Moscow")
    # Then each value appears, times in the integration's zone
    assert title == (
        "Мария | 79161234567 | maria@example.ru | school.ru | WhatsApp школы | 5000123 | 90001 | "
        "14.03.2025 12:05 | Анна Смирнова | Лид, Пробное"
    )


def test_missing_values_render_empty_and_spaces_collapse() -> None:
    # Given a chat with no visitor name, e-mail or operator
    chat = ChatFacts(chat_id=7, visitor_phone="79030000000")
    # When the default-style template is rendered
    title = render_title("Потерянный чат: {visitor_name}  {visitor_phone} {visitor_email} {operator}", chat, None)
    # Then nothing says "None" and no doubled spaces remain
    assert title == "Потерянный чат: 79030000000"
    assert "None" not in render_title("{site} {channel} {tags} {started_at} {communication_id}", chat, None)


def test_a_title_of_missing_values_only_still_names_the_chat() -> None:
    assert render_title("{visitor_name} {visitor_email}", ChatFacts(chat_id=42), None) == "Потерянный чат #42"


def test_unknown_parameter_is_refused_when_settings_are_saved() -> None:
    # Given a settings document whose task title uses a parameter that does not exist
    doc = {"texts": {"chats": {"lost_chat_task": {"enabled": True, "title": "Чат {visitor_nmae}"}}}}
    # When it is validated, Then the error names the title field
    with pytest.raises(ValidationFailed) as failed:
        parse_settings(doc)
    assert failed.value.field == "texts.chats.lost_chat_task.title"
    assert "visitor_nmae" in failed.value.message
