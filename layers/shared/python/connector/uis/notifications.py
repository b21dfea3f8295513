"""UIS text notifications (a text-queue message) → a typed `Notification` → `ChatFacts` / `RequestFacts`.

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

import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector.errors import BadRequest
from connector.jsonbody import parse_json
from connector.texts.models import ChatFacts, RequestFacts, Tag
from connector.timeutil import from_iso, parse_local

TextEvent = Literal["offline_message", "chat_finished", "lost_chat", "set_mark", "unset_mark", "chat_started"]
TEXT_EVENTS: frozenset[str] = frozenset(
    {"offline_message", "chat_finished", "lost_chat", "set_mark", "unset_mark", "chat_started"}
)
CHAT_EVENTS: frozenset[str] = frozenset({"chat_finished", "lost_chat", "set_mark", "unset_mark", "chat_started"})

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
def clean(value: Any) -> Any:
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


def as_int(value: Any) -> int | None:
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


def as_str(value: Any) -> str | None:
    value = clean(value)
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        # a phone number substituted unquoted arrives as a JSON number
        return str(int(value))
    return str(value)


def _maybe_json(text: str) -> Any:
    if text[:1] in "[{":
        try:
            return parse_json(text, "tags")
        except BadRequest:  # not JSON after all, or JSON nothing can keep (nested 100,000 deep, NaN)
            return None
    return None


def as_tags(value: Any, names: Any = None) -> list[Tag]:
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


def as_messages(value: Any) -> list[dict[str, Any]] | None:
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
    out: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, dict):
            out.append(item)
        elif as_str(item):
            out.append({"text": as_str(item)})
    return out


def flatten(payload: dict[str, Any]) -> dict[str, Any]:
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


def _pick(flat: dict[str, Any], name: str) -> Any:
    for key in _ALIASES.get(name, (name,)):
        value = clean(flat.get(key))
        if value is not None:
            return value
    return None


def _provided(flat: dict[str, Any], name: str) -> bool:
    """The parameter was in the notification (even empty): "known to be absent" rather than "unknown"."""
    return any(key in flat and not _is_placeholder(flat[key]) for key in _ALIASES.get(name, (name,)))


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and bool(_PLACEHOLDER.match(value.strip()))


def _local_time(value: Any, tz: str | None) -> datetime | None:
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
class TextMessage(BaseModel):
    """A text-queue message as the intakes and the poller put it (docs/internals.md, "Queue messages")."""

    model_config = ConfigDict(extra="ignore")

    integration_id: str = Field(min_length=1)
    received_at: str | None = None
    source: str = "notification"
    event: str | None = None
    method: str = "POST"
    payload: dict[str, Any] = Field(default_factory=dict)


class Notification(BaseModel):
    """One text event, its kind decided and its parameters flattened and cleaned."""

    integration_id: str
    event: TextEvent
    source: str
    method: str
    received_at: datetime | None
    params: dict[str, Any]  # flattened payload, raw values (coerce with the helpers above)
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
        tag = Tag(id=as_str(_pick(self.params, "tag_id")), name=as_str(_pick(self.params, "tag_name")))
        return tag if tag.id or tag.name else None

    @property
    def dedup_key(self) -> str:
        """What identifies the communication this event is about (for logs and parking)."""
        if self.is_request:
            om = as_int(_pick(self.params, "offline_message_id"))
            return f"om{om}" if om is not None else f"c{as_int(_pick(self.params, 'communication_id'))}"
        chat = as_int(_pick(self.params, "chat_id")) or as_int(self.params.get("id"))
        return f"chat{chat}#{self.event}"

    # --- facts ------------------------------------------------------------------------------------
    def chat_facts(self, tz: str | None) -> ChatFacts:
        p = self.params
        if self.is_report_row:
            facts = ChatFacts.from_report_row(p, tz)
            facts.complete = True
            return facts
        chat_id = as_int(_pick(p, "chat_id"))
        if chat_id is None:
            raise BadRequest(f"{self.event} notification without chat_id")
        tags = as_tags(p.get("tag_ids"), p.get("tag_names")) or as_tags(p.get("tags"))
        if self.event == "set_mark" and self.mark_tag and not any(t.id == self.mark_tag.id for t in tags):
            tags.append(self.mark_tag)
        if self.event == "unset_mark" and self.mark_tag:
            gone = self.mark_tag
            tags = [t for t in tags if not ((gone.id and t.id == gone.id) or (gone.name and t.matches(gone.name)))]
        known = {
            "chat_id",
            "chat_channel_id",
            "channel_id",
            "chat_channel_type",
            "channel_type",
            "chat_channel_name",
            "channel_name",
            "communication_id",
            "status",
            "site_id",
            "site_domain_name",
            "visitor_id",
            "visitor_name",
            "visitor_phone_number",
            "visitor_phone",
            "visitor_email",
            "employee_full_name",
            "tag_ids",
            "tag_names",
            "tags",
            "messages",
            "tag_id",
            "tag_name",
        }
        provided = {
            name for name in ("site_domain_name", "site_id", "channel_type", "channel_id") if _provided(p, name)
        }
        if _provided(p, "visitor_phone"):
            provided.add("visitor_phone")
        if _provided(p, "visitor_email"):
            provided.add("visitor_email")
        if "tag_ids" in p or "tags" in p:
            provided.add("tags")
        provided |= {k for k, v in p.items() if not _is_placeholder(v)}
        status = as_str(_pick(p, "status"))
        if status is None and self.event == "lost_chat":
            status = "lost"
        return ChatFacts(
            chat_id=chat_id,
            communication_id=as_int(_pick(p, "communication_id")),
            status=status,
            started_at=_local_time(p.get("created_at") or p.get("date_time"), tz),
            site_id=as_int(_pick(p, "site_id")),
            site_domain_name=as_str(_pick(p, "site_domain_name")),
            channel_id=as_int(_pick(p, "channel_id")),
            channel_type=as_str(_pick(p, "channel_type")),
            channel_name=as_str(_pick(p, "channel_name")),
            visitor_id=as_int(_pick(p, "visitor_id")),
            visitor_name=as_str(_pick(p, "visitor_name")),
            visitor_phone=as_str(_pick(p, "visitor_phone")),
            visitor_email=as_str(_pick(p, "visitor_email")),
            employee_full_name=as_str(_pick(p, "employee_full_name")),
            tags=tags,
            messages=as_messages(p.get("messages") if "messages" in p else p.get("chat_log")),
            params=_params(p, known),
            provided=provided,
        )

    def request_facts(self, tz: str | None) -> RequestFacts:
        p = self.params
        om_id = as_int(_pick(p, "offline_message_id"))
        if om_id is None and as_int(_pick(p, "communication_id")) is None:
            raise BadRequest("offline_message notification without offline_message_id or communication_id")
        known = {
            "offline_message_id",
            "communication_id",
            "form_type",
            "form_name",
            "site_id",
            "site_domain_name",
            "site_domain",
            "visitor_id",
            "visitor_name",
            "visitor_phone_number",
            "visitor_phone",
            "visitor_email",
            "visitor_message",
            "om_name",
            "om_phone",
            "om_email",
            "om_message",
            "tag_ids",
            "tags",
        }
        provided = {name for name in ("site_domain_name", "site_id", "form_type") if _provided(p, name)}
        provided |= {k for k, v in p.items() if not _is_placeholder(v)}
        if _provided(p, "visitor_phone"):
            provided.add("visitor_phone")
        if _provided(p, "visitor_email"):
            provided.add("visitor_email")
        return RequestFacts(
            offline_message_id=om_id,
            communication_id=as_int(_pick(p, "communication_id")),
            created_at=_local_time(p.get("date_time") or p.get("notification_time"), tz),
            form_type=as_str(_pick(p, "form_type")),
            form_name=as_str(_pick(p, "form_name")),
            site_id=as_int(_pick(p, "site_id")),
            site_domain_name=as_str(_pick(p, "site_domain_name")),
            visitor_id=as_int(_pick(p, "visitor_id")),
            visitor_name=as_str(_pick(p, "visitor_name")),
            visitor_phone=as_str(_pick(p, "visitor_phone")),
            visitor_email=as_str(_pick(p, "visitor_email")),
            text=as_str(_pick(p, "visitor_message")),
            tags=as_tags(p.get("tag_ids")) or as_tags(p.get("tags")),
            params=_params(p, known),
            provided=provided,
        )


def _params(flat: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Every other non-empty parameter (utm_*, campaign_name, search_query…), for extra fields and comments."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in known or key in _NESTED:
            continue
        cleaned = clean(value)
        if cleaned is None or isinstance(cleaned, dict):
            continue
        out[key] = cleaned
    return out


def infer_event(payload: dict[str, Any], *, source: str = "notification") -> TextEvent | None:
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


def parse_message(message: dict[str, Any] | str | bytes) -> Notification:
    """A text-queue message → Notification. BadRequest when it cannot be understood (parked, not retried)."""
    if isinstance(message, bytes | str):
        try:
            message = json.loads(message)
        except ValueError as exc:
            raise BadRequest(f"text event is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise BadRequest("text event is not a JSON object")
    try:
        msg = TextMessage.model_validate(message)
    except ValidationError as exc:
        # the field and the rule only: pydantic's own text echoes the input (visitors' names and phones)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors(include_input=False)
        )
        raise BadRequest(f"text event is malformed: {problems}") from None
    payload = msg.payload
    event = clean(msg.event)
    inferred = False
    if event is None:
        event = infer_event(payload, source=msg.source)
        inferred = True
    if event not in TEXT_EVENTS:
        raise BadRequest(
            f"cannot tell which UIS event this is (event={msg.event!r}); add ?event=<name> to the notification URL"
        )
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
        method=msg.method.upper(),
        received_at=received,
        params=flatten(payload),
        inferred=inferred,
    )
