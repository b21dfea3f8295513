"""Lost-chat task titles: the user's template (contract.md "Title template parameters") filled from a chat.

The settings layer already refuses unknown or malformed parameters (`connector.settings.LostChatTask`);
rendering still tolerates them, because a document stored before a rule changed must not break the
task: an unknown parameter renders as empty, like a missing value.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from connector.models.texts import ChatFacts
from connector.settings import TITLE_PARAMS
from connector.timeutil import utc_to_local

# AlfaCRM keeps task titles in a short string column (the exact limit is undocumented): stay well under it
MAX_TITLE_CHARS = 255
STARTED_AT_FORMAT = "%d.%m.%Y %H:%M"  # how AlfaCRM's Russian UI writes date-times
_SPACES = re.compile(r"[ \t\u00a0]{2,}")


def _text(value: object) -> str:
    """None and blank become "", never "None"; numbers keep their plain form."""
    if value is None or isinstance(value, bool):
        return ""
    return str(value).strip()


def title_values(chat: ChatFacts, tz: str | None) -> dict[str, str]:
    """Every title parameter for this chat, as display text ("" when UIS did not give it)."""
    started = utc_to_local(chat.started_at, tz).strftime(STARTED_AT_FORMAT) if chat.started_at else ""
    tags = ", ".join(name for name in (_text(t.name) or _text(t.id) for t in chat.tags) if name)
    values = {
        "visitor_name": _text(chat.visitor_name),
        "visitor_phone": _text(chat.visitor_phone),
        "visitor_email": _text(chat.visitor_email),
        "site": _text(chat.site_domain_name) or _text(chat.site_id),
        # the channel's own name ("WhatsApp школы") reads better than its type ("whatsapp")
        "channel": _text(chat.channel_name) or _text(chat.channel_type),
        "chat_id": _text(chat.chat_id),
        "communication_id": _text(chat.communication_id),
        "started_at": started,
        "operator": _text(chat.employee_full_name),
        "tags": tags,
    }
    assert set(values) == set(TITLE_PARAMS), "title parameters drifted from connector.settings.TITLE_PARAMS"
    return values


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill `{param}`s; unknown ones render empty; the doubled spaces empty values leave are collapsed."""
    try:
        filled = string.Formatter().vformat(template, (), _Blank(values))
    except (ValueError, IndexError, KeyError, AttributeError):
        # only a document stored before validation can get here: show it as written rather than fail
        filled = template
    lines = [_SPACES.sub(" ", line).strip() for line in filled.splitlines()]
    return " ".join(line for line in lines if line)


def render_title(template: str, chat: ChatFacts, tz: str | None, *, fallback: str = "Потерянный чат") -> str:
    """The task title; never empty (a template of parameters only, all missing, gets `fallback` + chat id)."""
    title = render(template, title_values(chat, tz))
    if not title.strip(" :-—,"):
        title = f"{fallback} #{chat.chat_id}"
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return title
