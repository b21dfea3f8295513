"""Where the facts about one chat or request come from — the one module that assembles them.

Sources, in the order the text worker consults them:
1. the notification (a POST body, a GET query, the poller's `get.chats_report` row, a Chat API callback),
   already flattened and cleaned by `connector.uis.notifications` → `chat_facts` / `request_facts`;
2. what an earlier event of the same chat stored in its progress item (`ChatProgress.facts`);
3. UIS's reports, read only when a rule needs a fact none of the above gave — at most one call per event
   (`UisReads`: one `get.chats_report` / `get.offline_messages_report` row, filtered by id), plus the
   chat's messages for a transcript the notification did not carry.

UIS points are scarce (e.g. 60/min, 3000/day per account): every read goes through the event's metered UIS
access (purpose `texts`), so each point is in the integration's ledger. Report windows stay under UIS's
3-month limit; a chat may have started long before it ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from connector.errors import BadRequest, UisUnavailable
from connector.models.messages import MARK_EVENTS
from connector.models.raw import JsonObject, JsonValue
from connector.models.texts import ChatFacts, RequestFacts, Tag, VisitorCard
from connector.settings import ExtraField
from connector.timeutil import parse_local, utc_to_local, utcnow
from connector.uis import columns
from connector.uis.notifications import (
    Notification,
    as_int,
    as_messages,
    as_str,
    as_tags,
    is_placeholder,
    local_time,
    other_params,
    pick,
    provided,
)
from connector.uis.points import UisPoints

CHAT_LOOKBACK = timedelta(days=85)
REQUEST_LOOKBACK = timedelta(days=30)
# a little slack for clocks (UIS stamps in the account's local time)
CLOCK_SLACK = timedelta(minutes=10)

# notification parameters that are facts of their own (the rest go to `params`, for extra fields)
_CHAT_KNOWN = frozenset(
    {
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
)
_REQUEST_KNOWN = frozenset(
    {
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
)
_REPORT_KNOWN = frozenset(
    {
        "id",
        "communication_id",
        "status",
        "date_time",
        "site_id",
        "site_domain_name",
        "chat_channel_id",
        "chat_channel_type",
        "chat_channel_name",
        "visitor_id",
        "visitor_name",
        "visitor_phone_number",
        "visitor_email",
        "employee_full_name",
        "tags",
        "visitor_card",
    }
)


def chat_fields(mappings: Iterable[ExtraField] = ()) -> list[str]:
    """The `get.chats_report` columns to ask for: what the chat facts need, plus every documented column an
    extra-field mapping names (UIS returns only its default columns otherwise, which lack channel, tags, UTM)."""
    return columns.with_extra(columns.CHAT_FIELDS, columns.CHATS_REPORT_COLUMNS, (m.source for m in mappings))


def request_fields(mappings: Iterable[ExtraField] = ()) -> list[str]:
    """The `get.offline_messages_report` columns to ask for (the default set lacks date, site domain, UTM)."""
    return columns.with_extra(
        columns.REQUEST_FIELDS, columns.OFFLINE_MESSAGES_REPORT_COLUMNS, (m.source for m in mappings)
    )


class NotReadyYet(UisUnavailable):
    """UIS has not put the chat/request in its report yet: retry later (SQS redelivery)."""

    code = "uis_not_ready"


# --- 1. the notification ------------------------------------------------------------------------------
def chat_facts(n: Notification, tz: str | None) -> ChatFacts:
    """The chat a notification (or the poller's report row) describes."""
    p = n.params
    if n.is_report_row:
        return report_chat_facts(p, tz)
    chat_id = as_int(pick(p, "chat_id"))
    if chat_id is None:
        raise BadRequest(f"{n.event} notification without chat_id")
    status = as_str(pick(p, "status"))
    if status is None and n.event == "lost_chat":
        status = "lost"
    return ChatFacts(
        chat_id=chat_id,
        communication_id=as_int(pick(p, "communication_id")),
        status=status,
        started_at=local_time(p.get("created_at") or p.get("date_time"), tz),
        site_id=as_int(pick(p, "site_id")),
        site_domain_name=as_str(pick(p, "site_domain_name")),
        channel_id=as_int(pick(p, "channel_id")),
        channel_type=as_str(pick(p, "channel_type")),
        channel_name=as_str(pick(p, "channel_name")),
        visitor_id=as_int(pick(p, "visitor_id")),
        visitor_name=as_str(pick(p, "visitor_name")),
        visitor_phone=as_str(pick(p, "visitor_phone")),
        visitor_email=as_str(pick(p, "visitor_email")),
        employee_full_name=as_str(pick(p, "employee_full_name")),
        tags=_notified_tags(n),
        messages=as_messages(p.get("messages") if "messages" in p else p.get("chat_log")),
        params=other_params(p, _CHAT_KNOWN),
        provided=_provided_chat(p),
    )


def _notified_tags(n: Notification) -> list[Tag]:
    p = n.params
    tags = as_tags(p.get("tag_ids"), p.get("tag_names")) or as_tags(p.get("tags"))
    mark = n.mark_tag
    if n.event == "set_mark" and mark and not any(t.id == mark.id for t in tags):
        tags.append(mark)
    if n.event == "unset_mark" and mark:
        tags = [t for t in tags if not ((mark.id and t.id == mark.id) or (mark.name and t.matches(mark.name)))]
    return tags


def _provided_chat(p: JsonObject) -> set[str]:
    names = {name for name in ("site_domain_name", "site_id", "channel_type", "channel_id") if provided(p, name)}
    names |= {name for name in ("visitor_phone", "visitor_email") if provided(p, name)}
    if "tag_ids" in p or "tags" in p:
        names.add("tags")
    return names | {k for k, v in p.items() if not is_placeholder(v)}


def request_facts(n: Notification, tz: str | None) -> RequestFacts:
    """The site request an `offline_message` notification describes."""
    p = n.params
    om_id = as_int(pick(p, "offline_message_id"))
    if om_id is None and as_int(pick(p, "communication_id")) is None:
        raise BadRequest("offline_message notification without offline_message_id or communication_id")
    names = {name for name in ("site_domain_name", "site_id", "form_type") if provided(p, name)}
    names |= {k for k, v in p.items() if not is_placeholder(v)}
    names |= {name for name in ("visitor_phone", "visitor_email") if provided(p, name)}
    return RequestFacts(
        offline_message_id=om_id,
        communication_id=as_int(pick(p, "communication_id")),
        created_at=local_time(p.get("date_time") or p.get("notification_time"), tz),
        form_type=as_str(pick(p, "form_type")),
        form_name=as_str(pick(p, "form_name")),
        site_id=as_int(pick(p, "site_id")),
        site_domain_name=as_str(pick(p, "site_domain_name")),
        visitor_id=as_int(pick(p, "visitor_id")),
        visitor_name=as_str(pick(p, "visitor_name")),
        visitor_phone=as_str(pick(p, "visitor_phone")),
        visitor_email=as_str(pick(p, "visitor_email")),
        text=as_str(pick(p, "visitor_message")),
        tags=as_tags(p.get("tag_ids")) or as_tags(p.get("tags")),
        params=other_params(p, _REQUEST_KNOWN),
        provided=names,
    )


def with_mark(n: Notification, chat: ChatFacts) -> ChatFacts:
    """A mark event's own tag wins over older facts: set → present, unset → absent."""
    tag = n.mark_tag
    if tag is None or n.event not in MARK_EVENTS:
        return chat
    others = [t for t in chat.tags if not _same_tag(t, tag)]
    if n.event == "set_mark":
        known = next((t for t in chat.tags if _same_tag(t, tag)), None)
        others.append(Tag(id=tag.id or (known.id if known else None), name=tag.name or (known.name if known else None)))
    return chat.model_copy(update={"tags": others})


def _same_tag(a: Tag, b: Tag) -> bool:
    return bool((a.id and a.id == b.id) or (a.name and b.name and a.matches(b.name)))


# --- 2. and 3.: stored facts and UIS's reports ---------------------------------------------------------------
def report_chat_facts(row: JsonObject, tz: str | None) -> ChatFacts:
    """A `get.chats_report` row (times are account-local, zone-less): every fact UIS has (`complete`)."""
    date_time = _report_str(row.get("date_time"))
    return ChatFacts(
        chat_id=_report_id(row.get("id")),
        communication_id=_report_int(row.get("communication_id")),
        status=_report_str(row.get("status")),
        started_at=parse_local(date_time, tz) if date_time else None,
        site_id=_report_int(row.get("site_id")),
        site_domain_name=_report_str(row.get("site_domain_name")),
        channel_id=_report_int(row.get("chat_channel_id")),
        channel_type=_report_str(row.get("chat_channel_type")),
        channel_name=_report_str(row.get("chat_channel_name")),
        visitor_id=_report_int(row.get("visitor_id")),
        visitor_name=_report_str(row.get("visitor_name")),
        # the report types the phone as a number
        visitor_phone=_report_str(row.get("visitor_phone_number")),
        visitor_email=_report_str(row.get("visitor_email")),
        visitor_card=_card(row.get("visitor_card")),
        employee_full_name=_report_str(row.get("employee_full_name")),
        tags=_report_tags(row),
        params={k: v for k, v in row.items() if k not in _REPORT_KNOWN and v not in (None, "")},
        complete=True,
    )


def merge_chat_report(chat: ChatFacts, report: ChatFacts) -> ChatFacts:
    """These (notification) facts completed by a report row's (or the stored facts'): the report fills what is
    missing; the notification's own messages, status and parameters stay (they are the newer word)."""
    data = chat.model_dump()
    for name, value in report.model_dump().items():
        if name in {"params", "tags", "messages", "provided", "complete"}:
            continue
        if data.get(name) in (None, "") and value not in (None, ""):
            data[name] = value
    data["tags"] = _merge_tags(report.tags, chat.tags)
    data["params"] = {**report.params, **chat.params}
    data["messages"] = chat.messages if chat.messages is not None else report.messages
    data["complete"] = True
    return ChatFacts.model_validate(data)


def merge_request_report(req: RequestFacts, row: JsonObject, tz: str | None) -> RequestFacts:
    """A request completed by its `get.offline_messages_report` row; the notification's own values stay."""
    date_time = _report_str(row.get("date_time"))
    report: dict[str, object] = {
        "offline_message_id": _report_int(row.get("id")),
        "communication_id": _report_int(row.get("communication_id")),
        "created_at": parse_local(date_time, tz) if date_time else None,
        "form_type": _report_str(row.get("form_type")),
        "form_name": _report_str(row.get("form_name")),
        "site_id": _report_int(row.get("site_id")),
        "site_domain_name": _report_str(row.get("site_domain_name")),
        "visitor_id": _report_int(row.get("visitor_id")),
        "visitor_name": _report_str(row.get("visitor_name")),
        "visitor_phone": _report_str(row.get("visitor_phone_number")),
        "visitor_email": _report_str(row.get("visitor_email")),
        "text": _report_str(row.get("text")),
    }
    data = req.model_dump()
    for name, value in report.items():
        if data.get(name) in (None, "") and value not in (None, ""):
            data[name] = value
    data["tags"] = _merge_tags(_report_tags(row), req.tags)
    skip = {"id", "tags", "date_time", "text", "visitor_phone_number", *report}
    data["params"] = {**{k: v for k, v in row.items() if k not in skip and v not in (None, "")}, **req.params}
    data["complete"] = True
    return RequestFacts.model_validate(data)


def _card(value: JsonValue) -> VisitorCard | None:
    """The `visitor_card` the poller adds to a report row it announces (texts.visitors), if any."""
    return VisitorCard.model_validate(value) if isinstance(value, dict) else None


def _report_tags(row: JsonObject) -> list[Tag]:
    tags = row.get("tags")
    return [
        Tag(id=_report_str(t.get("tag_id")), name=_report_str(t.get("tag_name")))
        for t in (tags if isinstance(tags, list) else [])
        if isinstance(t, dict)
    ]


def _merge_tags(base: list[Tag], extra: list[Tag]) -> list[Tag]:
    """Tags of both, once each (matched by id, else by name); names filled in from either side."""
    out = [tag.model_copy() for tag in base]
    for tag in extra:
        same = next((t for t in out if (tag.id and t.id == tag.id) or (tag.name and t.matches(tag.name))), None)
        if same is None:
            out.append(tag.model_copy())
        else:
            same.id = same.id or tag.id
            same.name = same.name or tag.name
    return out


def _report_id(value: JsonValue) -> int:
    found = _report_int(value)
    if found is None:
        raise ValueError(f"a report row without an id: {value!r}")
    return found


def _report_int(value: JsonValue) -> int | None:
    if value is None or value == "" or isinstance(value, bool | list | dict):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _report_str(value: JsonValue) -> str | None:
    return None if value is None or value == "" else str(value)


class UisReads:
    """One event's reads of UIS's reports (each one call, charged to the event's metered UIS access)."""

    def __init__(
        self,
        points: UisPoints,
        *,
        tz: str | None,
        anchor: datetime | None = None,
        chat_fields: list[str] | None = None,
        request_fields: list[str] | None = None,
    ) -> None:
        self.points = points
        self.chat_fields = chat_fields
        self.request_fields = request_fields
        self.tz = tz
        self.anchor = anchor or utcnow()  # aware UTC: when the notification arrived

    @property
    def calls(self) -> int:
        return self.points.spent

    def _window(self, back: timedelta) -> tuple[datetime, datetime]:
        till = min(self.anchor + CLOCK_SLACK, utcnow() + CLOCK_SLACK)
        return utc_to_local(till - back, self.tz), utc_to_local(till, self.tz)

    def chat_row(self, *, chat_id: int | None = None, communication_id: int | None = None) -> JsonObject:
        """The chat's `get.chats_report` row (one call); NotReadyYet when UIS does not list it yet."""
        field, value = ("id", chat_id) if chat_id is not None else ("communication_id", communication_id)
        date_from, date_till = self._window(CHAT_LOOKBACK)
        rows = self.points.client.get_chats_report(
            date_from,
            date_till,
            filter={"field": field, "operator": "=", "value": value},
            fields=self.chat_fields,
            limit=10,
        )
        row = next((r for r in rows if str(r.get(field)) == str(value)), None)
        if row is None:
            raise NotReadyYet(f"UIS get.chats_report does not list chat {field}={value} yet", mnemonic="not_ready")
        return row

    def complete_chat(self, chat: ChatFacts) -> ChatFacts:
        return merge_chat_report(chat, report_chat_facts(self.chat_row(chat_id=chat.chat_id), self.tz))

    def messages(self, chat_id: int) -> list[JsonObject]:
        """The chat's messages in order (`get.chat_messages_report`; one call per 1000 messages)."""
        rows = list(self.points.client.iter_chat_messages_report(chat_id=chat_id))
        return sorted(rows, key=lambda m: (str(m.get("date_time") or ""), _report_int(m.get("id")) or 0))

    def complete_request(self, req: RequestFacts) -> RequestFacts:
        field, value = (
            ("id", req.offline_message_id)
            if req.offline_message_id is not None
            else ("communication_id", req.communication_id)
        )
        date_from, date_till = self._window(REQUEST_LOOKBACK)
        rows = self.points.client.get_offline_messages_report(
            date_from,
            date_till,
            filter={"field": field, "operator": "=", "value": value},
            fields=self.request_fields,
            limit=10,
        )
        row = next((r for r in rows if str(r.get(field)) == str(value)), None)
        if row is None:
            raise NotReadyYet(
                f"UIS get.offline_messages_report does not list request {field}={value} yet", mnemonic="not_ready"
            )
        return merge_request_report(req, row, self.tz)


def mark_chat(n: Notification, reads: UisReads) -> ChatFacts | str:
    """The chat a mark notification is about (UIS's mark body is call-oriented and names no chat by
    default): looked up by its `communication_id` (one report call) → the facts, or why it is no chat's."""
    kind = as_str(n.params.get("communication_type"))
    communication_id = as_int(n.params.get("communication_id"))
    if kind not in (None, "chat"):
        return f"the mark is about a {kind}, not a chat"
    if communication_id is None:
        return "the mark is not about a chat (add chat_id or communication_id to the notification)"
    row = reads.chat_row(communication_id=communication_id)
    named = n.model_copy(update={"params": {**n.params, "chat_id": row.get("id")}})
    return with_mark(n, merge_chat_report(chat_facts(named, reads.tz), report_chat_facts(row, reads.tz)))
