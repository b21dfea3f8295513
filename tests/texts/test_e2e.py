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
    assert "Есть группы для взрослых" in transcript and "вторник и четверг в 19:00" in transcript
    # the known client (+7(916)123-45-67) got the chat's transcript on her existing card
    assert any("перенести занятие на пятницу" in c for c in result["comments"][1])
    assert any("Итого: новых лидов 2, новых комментариев 3." in line for line in lines)
