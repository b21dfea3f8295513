"""UIS text notifications: a text-queue message → a typed `Notification` (its event decided, its parameters
flattened and cleaned); `connector.texts.facts` turns one into `ChatFacts` / `RequestFacts`.

How UIS fills a notification is user-defined and undocumented (`../shared/reference/uis-api.md`,
"Notifications"): a POST body is JSON the user wrote around unquoted `{{param}}` placeholders, a GET carries
the same parameters as strings in the query. So every value is coerced here, once:
- ids arrive as numbers or strings (`"777"`, `777`, `777.0`);
- "nothing" arrives as `null`, a missing key, `""`, `"null"` or an unsubstituted `{{param}}`;
- `tag_ids` as a list, a comma-separated string or a JSON-looking string (`"[1, 2]"`);
- `messages` as a list or a JSON string (a plain text log is kept as one message);
- `visitor` / `visitor_info` / `tag_info` / `contact_info` / `call_info` objects are flattened.
The rules downstream only ever see `ChatFacts` / `RequestFacts`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import cast

from pydantic import BaseModel

from connector.errors import BadRequest
from connector.jsonbody import parse_json
from connector.models.messages import MARK_EVENTS, TextEventMessage, TextEventName, TextEventSource
from connector.models.parked import fingerprint
from connector.models.raw import JsonObject, JsonValue
from connector.models.texts import Tag
from connector.timeutil import from_iso, parse_local
from connector.uis.text_queue import read_message

# nested objects of the default bodies whose fields are ordinary parameters
_NESTED = ("visitor", "visitor_info", "tag_info", "contact_info", "call_info", "context")
_PLACEHOLDER = re.compile(r"^\{\{\s*[\w.\-]+\s*\}\}$")
_NOTHING = {"", "null", "none", "undefined", "nil"}

# parameter spellings → the one name the facts use (the notification, the report and the Chat API differ)
_ALIASES: dict[str, tuple[str, ...]] = {
    "chat_id": ("chat_id",),
    "communication_id": ("communication_id",),
    "offline_message_id": ("offline_message_id",),
    "site_id": ("site_id",),
    "site_domain_name": ("site_domain_name", "site_domain", "site"),
    "channel_id": ("chat_channel_id", "channel_id"),
    "channel_type": ("chat_channel_type", "channel_type"),
    "channel_name": ("chat_channel_name", "channel_name"),
    "visitor_id": ("visitor_id",),
    "visitor_name": ("visitor_name", "om_name", "name"),
    "visitor_phone": ("visitor_phone_number", "visitor_phone", "contact_phone_number", "om_phone", "phone"),
    "visitor_email": ("visitor_email", "om_email", "email"),
    "visitor_message": ("visitor_message", "om_message", "text", "message"),
    "employee_full_name": ("employee_full_name", "operator_name"),
    "status": ("status",),
    "form_type": ("form_type",),
    "form_name": ("form_name",),
    "tag_id": ("tag_id",),
    "tag_name": ("tag_name",),
}


# --- coercion ---------------------------------------------------------------------------------------
def clean(value: JsonValue) -> JsonValue:
    """None for every spelling of "nothing"; strings stripped; a one-item list (a repeated GET key) unwrapped."""
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], dict | list):
        value = value[0]
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NOTHING or _PLACEHOLDER.match(text):
            return None
        return text
    return value


def as_int(value: JsonValue) -> int | None:
    """An id given as a number or a string (`777`, `"777"`, `777.0`, `"777.0"`); anything else → None."""
    value = clean(value)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            number = float(value) if "." in value else int(value)
        except ValueError:
            return None
        if isinstance(number, float):
            return int(number) if number.is_integer() else None
        return number
    return None


def as_str(value: JsonValue) -> str | None:
    value = clean(value)
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        # a phone number substituted unquoted arrives as a JSON number
        return str(int(value))
    return str(value)


def _maybe_json(text: str) -> JsonValue:
    if text[:1] in "[{":
        try:
            return parse_json(text, "tags")
        except BadRequest:  # not JSON after all, or JSON nothing can keep (nested 100,000 deep, NaN)
            return None
    return None


def as_tags(value: JsonValue, names: JsonValue = None) -> list[Tag]:
    """`tag_ids` (list, `"1,2"`, `"[1, 2]"`) or a `tags` list of {tag_id, tag_name} / names → Tags."""
    value = clean(value)
    if value is None:
        return []
    if isinstance(value, str):
        parsed = _maybe_json(value)
        value = parsed if parsed is not None else [part for part in re.split(r"[,;]", value)]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        value = [value]
    tags: list[Tag] = []
    for item in value:
        if isinstance(item, dict):
            tag = Tag(
                id=as_str(item.get("tag_id", item.get("id"))), name=as_str(item.get("tag_name", item.get("name")))
            )
        else:
            text = as_str(item)
            if text is None:
                continue
            tag = Tag(id=text) if as_int(text) is not None else Tag(name=text)
        if tag.id or tag.name:
            tags.append(tag)
    extra_names = [as_str(n) for n in (names if isinstance(names, list) else [names])] if names else []
    # `tag_names` given next to `tag_ids`, in the same order
    for tag, name in zip(tags, extra_names, strict=False):
        if name and not tag.name:
            tag.name = name
    return tags


def as_messages(value: JsonValue) -> list[JsonObject] | None:
    """`messages` as a list or a JSON string; a plain text log becomes one message. None when absent."""
    value = clean(value)
    if value is None:
        return None
    if isinstance(value, str):
        parsed = _maybe_json(value)
        if parsed is None:
            # a text log ("Текст переписки"): one line per message, kept as written
            return [{"text": line, "raw": True} for line in value.splitlines() if line.strip()]
        value = parsed
    if isinstance(value, dict):
        value = value.get("messages", value.get("data", [value]))
    if not isinstance(value, list):
        return None
    out: list[JsonObject] = []
    for item in value:
        if isinstance(item, dict):
            out.append(item)
        elif as_str(item):
            out.append({"text": as_str(item)})
    return out


def flatten(payload: Mapping[str, JsonValue]) -> JsonObject:
    """Nested default-body objects lifted to the top level; a non-empty top-level value wins over a nested one."""
    flat = {key: value for key, value in payload.items() if key not in _NESTED}
    for key in _NESTED:
        nested = payload.get(key)
        if isinstance(nested, str):
            nested = _maybe_json(nested.strip())
        if not isinstance(nested, dict):
            continue
        for k, v in nested.items():
            if k not in flat or (clean(flat[k]) is None and clean(v) is not None):
                flat[k] = v
    return flat


def pick(flat: Mapping[str, JsonValue], name: str) -> JsonValue:
    for key in _ALIASES.get(name, (name,)):
        value = clean(flat.get(key))
        if value is not None:
            return value
    return None


def provided(flat: Mapping[str, JsonValue], name: str) -> bool:
    """The parameter was in the notification (even empty): "known to be absent" rather than "unknown"."""
    return any(key in flat and not is_placeholder(flat[key]) for key in _ALIASES.get(name, (name,)))


def is_placeholder(value: JsonValue) -> bool:
    return isinstance(value, str) and bool(_PLACEHOLDER.match(value.strip()))


def local_time(value: JsonValue, tz: str | None) -> datetime | None:
    text = as_str(value)
    if not text:
        return None
    try:
        if "T" in text:
            return from_iso(text)
        return parse_local(text, tz)
    except ValueError:
        return None


# --- the queue message --------------------------------------------------------------------------------
class Notification(BaseModel):
    """One text event, its kind decided and its parameters flattened and cleaned."""

    integration_id: str
    event: TextEventName
    source: TextEventSource
    method: str
    received_at: datetime | None
    params: JsonObject  # flattened payload, raw values (coerce with the helpers above)
    inferred: bool = False  # the event was inferred from the fields (no `?event=` in the URL)

    @property
    def is_request(self) -> bool:
        return self.event == "offline_message"

    @property
    def is_report_row(self) -> bool:
        """The poller puts a `get.chats_report` row as the payload (`id`, no `chat_id`): already complete."""
        return self.source == "poller" and "chat_id" not in self.params and as_int(self.params.get("id")) is not None

    @property
    def mark_tag(self) -> Tag | None:
        """The tag a set_mark / unset_mark notification is about."""
        tag = Tag(id=as_str(pick(self.params, "tag_id")), name=as_str(pick(self.params, "tag_name")))
        return tag if tag.id or tag.name else None

    @property
    def dedup_key(self) -> str:
        """What identifies the event (logs, parking): the request, or the chat (or communication) and the event,
        a mark's tag too. An event naming none of them is keyed by a hash of what it says, so two different
        events never share a parked item (`cNone`, `chatNone#lost_chat` once overwrote each other)."""
        comm = as_int(pick(self.params, "communication_id"))
        if self.is_request:
            om = as_int(pick(self.params, "offline_message_id"))
            if om is not None:
                return f"om{om}"
            return f"c{comm}" if comm is not None else f"om?{self.fingerprint}"
        chat = as_int(pick(self.params, "chat_id")) or as_int(self.params.get("id"))
        base = f"chat{chat}" if chat is not None else (f"c{comm}" if comm is not None else None)
        if base is None:
            return f"{self.event}?{self.fingerprint}"
        if self.event in MARK_EVENTS:
            tag = self.mark_tag
            return f"{base}#{self.event}#{(tag.id or tag.name) if tag else '?' + self.fingerprint}"
        return f"{base}#{self.event}"

    @property
    def fingerprint(self) -> str:
        return fingerprint({"event": self.event, "params": self.params})


def other_params(flat: Mapping[str, JsonValue], known: frozenset[str]) -> JsonObject:
    """Every other non-empty parameter (utm_*, campaign_name, search_query…), for extra fields and comments."""
    out: JsonObject = {}
    for key, value in flat.items():
        if key in known or key in _NESTED:
            continue
        cleaned = clean(value)
        if cleaned is None or isinstance(cleaned, dict):
            continue
        out[key] = cleaned
    return out


def infer_event(payload: Mapping[str, JsonValue], *, source: str = "notification") -> TextEventName | None:
    """The event a payload describes when the URL did not name it (None: cannot tell).

    Mark notifications say nothing about set vs unset: those are read as `set_mark` (a tag removal read as a
    set can at worst create the lead a set of that tag already created) — the README asks for `?event=`.
    """
    flat = flatten(payload)
    if clean(flat.get("offline_message_id")) is not None:
        return "offline_message"
    if source == "chat_api":
        if clean(flat.get("system_message_mnemonic")) == "chat_started" or clean(flat.get("initiator")) is not None:
            return "chat_started"
        if clean(flat.get("reason")) is not None:
            return "chat_finished"
    if any(clean(flat.get(k)) is not None for k in ("tag_id", "tag_name")) or isinstance(payload.get("tag_info"), dict):
        return "set_mark"
    if clean(flat.get("chat_id")) is not None:
        return "chat_finished" if clean(flat.get("status")) is not None else "lost_chat"
    if clean(flat.get("communication_id")) is not None and any(
        clean(flat.get(k)) is not None for k in ("visitor_message", "om_message", "visitor_email", "form_type")
    ):
        return "offline_message"
    return None


def parse_message(message: TextEventMessage | JsonObject | str | bytes) -> Notification:
    """A text-queue message → Notification. BadRequest when it cannot be understood (parked, not retried)."""
    msg = message if isinstance(message, TextEventMessage) else read_message(cast("JsonValue", message))
    event = msg.event
    inferred = event is None
    if event is None:
        event = infer_event(msg.payload, source=msg.source)
    if event is None:
        raise BadRequest("cannot tell which UIS event this is (event=None); add ?event=<name> to the notification URL")
    received = None
    if msg.received_at:
        try:
            received = from_iso(msg.received_at)
        except ValueError:
            received = None
    return Notification(
        integration_id=msg.integration_id,
        event=event,
        source=msg.source,
        method=msg.method,
        received_at=received,
        params=flatten(msg.payload),
        inferred=inferred,
    )
