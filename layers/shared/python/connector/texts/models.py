"""The clean facts about one chat or request that every text rule works on.

UIS reaches us in several shapes (a notification body, a GET query, a `get.chats_report` row, a Chat API
callback); each is coerced into `ChatFacts` / `RequestFacts` once, here, so the rules see clean types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.timeutil import parse_local


class Tag(BaseModel):
    id: str | None = None
    name: str | None = None

    def matches(self, wanted: str) -> bool:
        w = wanted.strip().lower()
        return w in {str(self.id or "").lower(), str(self.name or "").strip().lower()}


class _Facts(BaseModel):
    """What chats and requests share: which facts are known, and whether the visitor left contacts."""

    visitor_phone: str | None = None
    visitor_email: str | None = None
    # merged with a report row: every fact UIS has is known
    complete: bool = False
    # fact names the notification carried, even empty ("visitor_phone", "site_domain_name", "tags"…)
    provided: set[str] = Field(default_factory=set)

    def knows(self, name: str) -> bool:
        """Is the value of this fact known (possibly known to be empty)?"""
        return self.complete or name in self.provided or getattr(self, name, None) not in (None, [])

    @property
    def has_contacts(self) -> bool:
        return bool(self.visitor_phone or self.visitor_email)


class ChatFacts(_Facts):
    model_config = ConfigDict(extra="ignore")

    chat_id: int
    communication_id: int | None = None
    status: str | None = None  # new | active | lost | succeed | refused (get.chats_report)
    started_at: datetime | None = None  # aware UTC
    site_id: int | None = None
    site_domain_name: str | None = None
    channel_id: int | None = None
    channel_type: str | None = None  # comagic (site widget), whatsapp, telegram, ...
    channel_name: str | None = None
    visitor_id: int | None = None
    visitor_name: str | None = None
    visitor_phone: str | None = None
    visitor_email: str | None = None
    employee_full_name: str | None = None
    tags: list[Tag] = Field(default_factory=list)
    messages: list[dict[str, Any]] | None = None  # as in get.chat_messages_report, when known
    # every other parameter UIS gave (utm_*, campaign_name, search_query…) for extra-field mapping
    params: dict[str, Any] = Field(default_factory=dict)
    # True once the facts come from (or were merged with) a `get.chats_report` row: a None then means
    # "UIS has no such value", not "the notification did not say"; enrichment is never needed again.

    def merged_with_report(self, report: ChatFacts) -> ChatFacts:
        """These (notification) facts completed by a report row: the row fills what is missing; the
        notification's own messages, status and parameters stay (they are the newer word)."""
        data = self.model_dump()
        for name, value in report.model_dump().items():
            if name in {"params", "tags", "messages", "provided", "complete"}:
                continue
            if data.get(name) in (None, "") and value not in (None, ""):
                data[name] = value
        data["tags"] = _merge_tags(report.tags, self.tags)
        data["params"] = {**report.params, **self.params}
        data["messages"] = self.messages if self.messages is not None else report.messages
        data["complete"] = True
        return ChatFacts.model_validate(data)

    def for_store(self) -> dict[str, Any]:
        """What is kept between events of one chat (no messages: the transcript is read at the end)."""
        return self.model_dump(mode="json", exclude={"messages"})

    @property
    def finished(self) -> bool:
        return self.status in {"lost", "succeed", "refused"}

    def param(self, name: str) -> Any:
        """A UIS parameter by its notification/report name, for extra fields and templates."""
        direct = {
            "chat_id": self.chat_id,
            "communication_id": self.communication_id,
            "site_domain_name": self.site_domain_name,
            "site_id": self.site_id,
            "chat_channel_type": self.channel_type,
            "chat_channel_name": self.channel_name,
            "chat_channel_id": self.channel_id,
            "visitor_name": self.visitor_name,
            "visitor_phone_number": self.visitor_phone,
            "visitor_phone": self.visitor_phone,
            "visitor_email": self.visitor_email,
            "visitor_id": self.visitor_id,
            "employee_full_name": self.employee_full_name,
        }
        if name in direct and direct[name] is not None:
            return direct[name]
        return self.params.get(name)

    @classmethod
    def from_report_row(cls, row: dict[str, Any], tz: str | None) -> ChatFacts:
        """A `get.chats_report` row (times are account-local, zone-less)."""
        known = {
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
        }
        return cls(
            chat_id=int(row["id"]),
            communication_id=_int(row.get("communication_id")),
            status=row.get("status"),
            started_at=parse_local(row["date_time"], tz) if row.get("date_time") else None,
            site_id=_int(row.get("site_id")),
            site_domain_name=row.get("site_domain_name") or None,
            channel_id=_int(row.get("chat_channel_id")),
            channel_type=row.get("chat_channel_type") or None,
            channel_name=row.get("chat_channel_name") or None,
            visitor_id=_int(row.get("visitor_id")),
            visitor_name=row.get("visitor_name") or None,
            # the report types the phone as a number
            visitor_phone=_str(row.get("visitor_phone_number")),
            visitor_email=row.get("visitor_email") or None,
            employee_full_name=row.get("employee_full_name") or None,
            tags=[Tag(id=_str(t.get("tag_id")), name=t.get("tag_name")) for t in row.get("tags") or []],
            params={k: v for k, v in row.items() if k not in known and v not in (None, "")},
            complete=True,
        )


class RequestFacts(_Facts):
    """A site request (offline message, "заявка")."""

    model_config = ConfigDict(extra="ignore")

    offline_message_id: int | None = None
    communication_id: int | None = None
    created_at: datetime | None = None  # aware UTC
    form_type: str | None = None
    form_name: str | None = None
    site_id: int | None = None
    site_domain_name: str | None = None
    visitor_id: int | None = None
    visitor_name: str | None = None
    visitor_phone: str | None = None
    visitor_email: str | None = None
    text: str | None = None
    tags: list[Tag] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)

    def merged_with_report(self, row: dict[str, Any], tz: str | None) -> RequestFacts:
        """Completed by a `get.offline_messages_report` row; the notification's own values stay."""
        report = {
            "offline_message_id": _int(row.get("id")),
            "communication_id": _int(row.get("communication_id")),
            "created_at": parse_local(row["date_time"], tz) if row.get("date_time") else None,
            "form_type": row.get("form_type") or None,
            "form_name": row.get("form_name") or None,
            "site_id": _int(row.get("site_id")),
            "site_domain_name": row.get("site_domain_name") or None,
            "visitor_id": _int(row.get("visitor_id")),
            "visitor_name": row.get("visitor_name") or None,
            "visitor_phone": _str(row.get("visitor_phone_number")),
            "visitor_email": row.get("visitor_email") or None,
            "text": row.get("text") or None,
        }
        data = self.model_dump()
        for name, value in report.items():
            if data.get(name) in (None, "") and value not in (None, ""):
                data[name] = value
        row_tags = [Tag(id=_str(t.get("tag_id")), name=t.get("tag_name")) for t in row.get("tags") or []]
        data["tags"] = _merge_tags(row_tags, self.tags)
        skip = {"id", "tags", "date_time", "text", "visitor_phone_number", *report}
        data["params"] = {**{k: v for k, v in row.items() if k not in skip and v not in (None, "")}, **self.params}
        data["complete"] = True
        return RequestFacts.model_validate(data)

    @property
    def key(self) -> str:
        """The request's progress key before enrichment. A delivery naming only the communication is
        re-keyed by the request id once the report gives it (`REQ#c<id>` then aliases `REQ#om<id>`)."""
        if self.offline_message_id is not None:
            return f"om{self.offline_message_id}"
        return f"c{self.communication_id}"

    def param(self, name: str) -> Any:
        direct = {
            "offline_message_id": self.offline_message_id,
            "communication_id": self.communication_id,
            "form_type": self.form_type,
            "form_name": self.form_name,
            "site_domain_name": self.site_domain_name,
            "site_id": self.site_id,
            "visitor_name": self.visitor_name,
            "visitor_phone_number": self.visitor_phone,
            "visitor_phone": self.visitor_phone,
            "visitor_email": self.visitor_email,
            "visitor_message": self.text,
            "text": self.text,
        }
        if name in direct and direct[name] is not None:
            return direct[name]
        return self.params.get(name)


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


def _int(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
