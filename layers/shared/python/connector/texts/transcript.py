"""A chat transcript a manager can read on the customer's card, split into comments that fit AlfaCRM.

AlfaCRM's comment limit is unverified (one client claims 2048 characters; whether characters or bytes is
unknown). Parts are therefore cut at `MAX_PART_BYTES` UTF-8 bytes, marker included: that fits 2048 whether
AlfaCRM counts characters or bytes, and stays under the AlfaCRM client's own 2000-character split, so a part
is never split again. Cuts fall between messages, then between words; nothing is ever dropped.
"""

from __future__ import annotations

import re
from datetime import datetime

from connector.models.raw import JsonObject, JsonValue
from connector.models.texts import ChatFacts
from connector.texts.rules import channel_label
from connector.timeutil import parse_local, utc_to_local

MAX_PART_BYTES = 2000
# room for "(часть 99/99)\n" in UTF-8 (Cyrillic letters are 2 bytes)
_MARKER_RESERVE = 40

SOURCE_LABELS = {
    "visitor": "Посетитель",
    "operator": "Оператор",
    "employee": "Оператор",
    "system": "Система",
    "autoinvite": "Автоприглашение",
    "chatbot": "Чат-бот",
    "bot": "Чат-бот",
    "form_text": "Форма",
}
OPERATOR_SOURCES = frozenset({"operator", "employee"})

# one line of UIS's text log ("Текст переписки" in a notification whose `messages` is not a list):
# "<yyyy-mm-dd hh:mm[:ss]> <employee_full_name or source>: <text>"; lines that do not match (the
# continuation of a multi-line message) are kept as written
_LOG_LINE = re.compile(r"^(?P<when>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?)\s+(?P<who>[^:]+?):(?:\s(?P<text>.*))?$")


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _time(value: JsonValue, tz: str | None) -> str | None:
    if not value:
        return None
    text = str(value).strip()
    try:
        if "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                return utc_to_local(moment, tz).strftime("%d.%m %H:%M")
            return moment.strftime("%d.%m %H:%M")
        return utc_to_local(parse_local(text, tz), tz).strftime("%d.%m %H:%M")
    except ValueError:
        return text


def _visitor(chat: ChatFacts) -> str:
    label = SOURCE_LABELS["visitor"]
    return f"{label} ({chat.visitor_name})" if chat.visitor_name else label


def _label(source: str, chat: ChatFacts, name: JsonValue = None) -> str:
    """Who wrote a message, as a manager reads it: "Посетитель (Павел)", the operator's full name,
    "Система", "Чат-бот"…; an unknown source as UIS wrote it."""
    key = source.strip().lower()
    if key == "visitor":
        return _visitor(chat)
    if key in OPERATOR_SOURCES or (not key and name):
        return str(name).strip() if name else SOURCE_LABELS["operator"]
    return SOURCE_LABELS.get(key, source.strip())


def _who(message: JsonObject, chat: ChatFacts) -> str:
    source = str(message.get("source") or message.get("author") or message.get("from") or "")
    name = message.get("employee_full_name") or message.get("operator_name")
    return _label(source, chat, name) or "—"


def _log_line(line: str, chat: ChatFacts, tz: str | None) -> str:
    """A line of UIS's text log in the same shape as a structured message; other lines unchanged."""
    match = _LOG_LINE.match(line.strip())
    if match is None:
        return line
    who = match["who"].strip()
    # the log names an operator by full name and everyone else by source
    label = _label(who, chat) if who.lower() in SOURCE_LABELS else who
    when = _time(match["when"], tz)
    return f"[{when}] {label}: {(match['text'] or '').strip()}"


def _files(message: JsonObject) -> list[str]:
    resources = message.get("resource") or message.get("resources") or message.get("files") or []
    if isinstance(resources, dict):
        resources = [resources]
    out = []
    for res in resources if isinstance(resources, list) else []:
        if not isinstance(res, dict):
            continue
        url = res.get("file_url") or res.get("url")
        name = res.get("file_name") or res.get("name") or "файл"
        if url:
            out.append(f"Файл «{name}»: {url}")
        else:
            out.append(f"Файл «{name}» (без ссылки)")
    if message.get("file_url") and not out:
        out.append(f"Файл «{message.get('file_name') or 'файл'}»: {message['file_url']}")
    return out


def render(chat: ChatFacts, messages: list[JsonObject], tz: str | None) -> str:
    """Header, then one line per message: `[dd.mm hh:mm] Who: text`, files as links."""
    head = f"Переписка в чате {channel_label(chat)} (UIS, чат {chat.chat_id})"
    if chat.site_domain_name:
        head += f", сайт {chat.site_domain_name}"
    lines = [head]
    for message in messages:
        if message.get("raw"):
            lines.append(_log_line(str(message.get("text") or ""), chat, tz))
            continue
        when = _time(message.get("date_time") or message.get("created_at") or message.get("time"), tz)
        text = str(message.get("text") or message.get("message") or "").strip()
        parts = [text] if text else []
        parts += _files(message)
        if not parts:
            continue
        prefix = f"[{when}] " if when else ""
        lines.append(f"{prefix}{_who(message, chat)}: " + "\n".join(parts))
    return "\n".join(lines)


def _pieces(line: str, limit: int) -> list[str]:
    """A line longer than `limit` bytes cut between words (or, for an endless word, between characters)."""
    if _nbytes(line) <= limit:
        return [line]
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if _nbytes(candidate) <= limit:
            current = candidate
            continue
        if current:
            out.append(current)
        while _nbytes(word) > limit:
            cut = limit
            while _nbytes(word[:cut]) > limit:
                cut -= 1
            out.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        out.append(current)
    return out


def split(text: str, max_bytes: int = MAX_PART_BYTES) -> list[str]:
    """Parts of at most `max_bytes` UTF-8 bytes each, with "(часть k/n)" markers when there are several."""
    if _nbytes(text) <= max_bytes:
        return [text]
    limit = max_bytes - _MARKER_RESERVE
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        for piece in _pieces(line, limit):
            candidate = f"{current}\n{piece}" if current else piece
            if current and _nbytes(candidate) > limit:
                chunks.append(current)
                current = piece
            else:
                current = candidate
    if current:
        chunks.append(current)
    total = len(chunks)
    return [f"(часть {k}/{total})\n{chunk}" for k, chunk in enumerate(chunks, start=1)]


def transcript_parts(
    chat: ChatFacts, messages: list[JsonObject], tz: str | None, max_bytes: int = MAX_PART_BYTES
) -> list[str]:
    return split(render(chat, messages, tz), max_bytes)
