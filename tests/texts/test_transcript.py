"""The transcript a manager reads on the customer's card: who wrote each line, in Russian; time; files as
links; long transcripts split into marked parts without losing a word."""

from __future__ import annotations

from typing import Any

from connector.models.texts import ChatFacts
from connector.texts.transcript import MAX_PART_BYTES, render, transcript_parts
from connector.uis.notifications import as_messages

TZ = "Europe/Moscow"


def chat(**over: Any) -> ChatFacts:
    values: dict[str, Any] = {
        "chat_id": 777,
        "channel_type": "whatsapp",
        "site_domain_name": "school.ru",
        "visitor_name": "Павел",
    }
    values.update(over)
    return ChatFacts(**values)


def msg(source: str | None, text: str, at: str = "2025-03-14 12:01:00", **extra: Any) -> dict[str, Any]:
    return {"date_time": at, "source": source, "text": text, **extra}


def lines(facts: ChatFacts, messages: list[dict[str, Any]]) -> list[str]:
    return render(facts, messages, TZ).splitlines()


def test_every_author_is_named_as_a_manager_reads_it():
    messages = [
        msg("autoinvite", "Здравствуйте! Чем помочь?", "2025-03-14 12:00:00"),
        msg("visitor", "Есть группы для взрослых?", "2025-03-14 12:01:00"),
        msg("chatbot", "Соединяю с оператором", "2025-03-14 12:01:30"),
        msg("system", "Оператор принял чат", "2025-03-14 12:02:00"),
        msg("operator", "Да, вторник и четверг", "2025-03-14 12:03:00", employee_full_name="Анна Смирнова"),
        msg("operator", "Запишу вас", "2025-03-14 12:04:00"),
        msg("form_text", "Телефон: 79265550101", "2025-03-14 12:05:00"),
        msg("whisper", "Новый тип сообщения", "2025-03-14 12:06:00"),
    ]
    assert lines(chat(), messages) == [
        "Переписка в чате WhatsApp (UIS, чат 777), сайт school.ru",
        "[14.03 12:00] Автоприглашение: Здравствуйте! Чем помочь?",
        "[14.03 12:01] Посетитель (Павел): Есть группы для взрослых?",
        "[14.03 12:01] Чат-бот: Соединяю с оператором",
        "[14.03 12:02] Система: Оператор принял чат",
        "[14.03 12:03] Анна Смирнова: Да, вторник и четверг",
        "[14.03 12:04] Оператор: Запишу вас",
        "[14.03 12:05] Форма: Телефон: 79265550101",
        "[14.03 12:06] whisper: Новый тип сообщения",
    ]


def test_the_visitor_without_a_known_name_is_just_the_visitor():
    assert lines(chat(visitor_name=None), [msg("visitor", "Здравствуйте")])[1:] == [
        "[14.03 12:01] Посетитель: Здравствуйте"
    ]


def test_files_are_links_under_their_author():
    file = {"file_name": "расписание.pdf", "file_url": "https://files.example/1.pdf"}
    messages = [
        msg("operator", "Вот расписание", resource=[file], employee_full_name="Анна Смирнова"),
        msg("visitor", "", resource={"file_name": "фото.jpg"}),
    ]
    assert lines(chat(), messages)[1:] == [
        "[14.03 12:01] Анна Смирнова: Вот расписание",
        "Файл «расписание.pdf»: https://files.example/1.pdf",
        "[14.03 12:01] Посетитель (Павел): Файл «фото.jpg» (без ссылки)",
    ]


def test_uis_text_log_lines_get_the_same_labels_and_time():
    # Given a notification whose `messages` is UIS's text log (operators by name, others by source)
    log = (
        "2025-03-14 12:01:00 visitor: Здравствуйте! Есть группы для взрослых по вечерам?\n"
        "2025-03-14 12:02:00 Анна Смирнова: Добрый день! Да, вторник и четверг в 19:00.\n"
        "2025-03-14 12:02:30 system: Чат передан\n"
        "2025-03-14 12:03:00 visitor: Отлично, запишите меня:\n"
        "вторник, 19:00\n"
        "2025-03-14 12:04:00 operator: Записала"
    )
    assert lines(chat(), as_messages(log) or [])[1:] == [
        "[14.03 12:01] Посетитель (Павел): Здравствуйте! Есть группы для взрослых по вечерам?",
        "[14.03 12:02] Анна Смирнова: Добрый день! Да, вторник и четверг в 19:00.",
        "[14.03 12:02] Система: Чат передан",
        "[14.03 12:03] Посетитель (Павел): Отлично, запишите меня:",
        "вторник, 19:00",  # the continuation of a multi-line message, kept as written
        "[14.03 12:04] Оператор: Записала",
    ]


def test_a_free_text_log_line_is_kept_as_written():
    assert lines(chat(), as_messages("12:00 Анна: Привет") or [])[1:] == ["12:00 Анна: Привет"]


def test_a_long_transcript_is_split_into_marked_parts_and_nothing_is_lost():
    texts = [f"Сообщение номер {i}: расскажите подробнее про группу для детей {i} лет." for i in range(120)]
    messages = [
        msg("visitor" if i % 2 else "operator", t, employee_full_name=None if i % 2 else "Анна Смирнова")
        for i, t in enumerate(texts)
    ]
    parts = transcript_parts(chat(), messages, TZ)
    assert len(parts) > 1
    assert all(len(p.encode()) <= MAX_PART_BYTES for p in parts)
    assert [p.splitlines()[0] for p in parts] == [f"(часть {k}/{len(parts)})" for k in range(1, len(parts) + 1)]
    body = [line for p in parts for line in p.splitlines()[1:]]
    assert body == lines(chat(), messages)
    assert body[1] == f"[14.03 12:01] Анна Смирнова: {texts[0]}"
    assert body[2] == f"[14.03 12:01] Посетитель (Павел): {texts[1]}"
