"""End to end through the local stack: UIS sandbox notification → intake → text queue → text worker →
AlfaCRM sandbox, with the demo integration the stack creates; and the `make demo` texts part."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tools import demo_texts

pytestmark = pytest.mark.e2e


def test_request_and_chats_reach_alfacrm_as_leads_and_comments(start_local_stack: Callable[..., Any]) -> None:
    # Given the local stack with both sandboxes and the demo integration (UIS notifications point at it)
    stack = start_local_stack(sandbox=True)
    lines: list[str] = []
    # When the demo's texts scenario runs (a site request, a WhatsApp chat, a chat from a known client)
    result = demo_texts.run(stack, out=lines.append)
    # Then two new leads (the request, the WhatsApp chat) and the known client gets no duplicate
    names = sorted(c["name"] for c in result["created"])
    assert names == ["Ирина Ковалёва", "Павел"]
    irina = next(c for c in result["created"] if c["name"] == "Ирина Ковалёва")
    assert irina["phone"] == ["+79261234501"] and irina["custom_utm_source"] == "yandex"
    [request_comment] = result["comments"][irina["id"]]
    assert "Хочу записать сына" in request_comment and "Форма: Запись на пробный урок" in request_comment
    pavel = next(c for c in result["created"] if c["name"] == "Павел")
    [transcript] = result["comments"][pavel["id"]]
    # the manager reads who wrote each line: the visitor by name, the operator by full name
    assert [line.split("] ", 1)[1] for line in transcript.splitlines()[1:]] == [
        "Посетитель (Павел): Здравствуйте! Есть группы для взрослых по вечерам?",
        "Анна Смирнова: Добрый день! Да, вторник и четверг в 19:00.",
        "Посетитель (Павел): Отлично, запишите меня",
    ]
    # the known client (+7(916)123-45-67) got the chat's transcript on her existing card
    assert any(
        "Посетитель (Анна): Можно перенести занятие на пятницу?" in c and "Анна Смирнова: Конечно" in c
        for c in result["comments"][1]
    )
    # the lost chat whose notification never came: the poller's run made one task, a second run none
    lost = result["lost"]
    [task] = lost["tasks"]
    assert task["title"].startswith("Потерянный чат: ") and task["title"].endswith(demo_texts.LOST_CHAT_PHONE)
    assert task["customer_ids"] == [c["id"] for c in lost["created"]] and task["due_date"]
    assert lost["tasks_after_second_poll"] == 1
    assert any("Итого: новых лидов 2, новых комментариев 3." in line for line in lines)
