"""The text side's contracts: the clean facts about one chat or request that every text rule works on, and
what the store keeps per chat and request (`ChatProgress` / `RequestProgress`, the `CHAT#` / `REQ#` items),
per created customer (`CustomerLink`) and per lost chat (`LostTaskClaim`).

UIS reaches us in several shapes (a notification body, a GET query, a `get.chats_report` row, a Chat API
callback); `connector.texts.facts` turns each into `ChatFacts` / `RequestFacts` once, so the rules see clean
types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from connector.models.raw import JsonObject, JsonValue


class Tag(BaseModel):
    id: str | None = None
    name: str | None = None

    def matches(self, wanted: str) -> bool:
        w = wanted.strip().lower()
        return w in {str(self.id or "").lower(), str(self.name or "").strip().lower()}


class VisitorCard(BaseModel):
    """What `get.visitors` knows of a chat's visitor (person/get_visitors): none of it is in a chat report.
    An empty card: asked, and UIS knew nothing (or the method is not available to the account)."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None


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
    # get.visitors' answer for the visitor, once asked (texts.visitors); used where no customer names the chat
    visitor_card: VisitorCard | None = None
    employee_full_name: str | None = None
    tags: list[Tag] = Field(default_factory=list)
    messages: list[JsonObject] | None = None  # as in get.chat_messages_report, when known
    # every other parameter UIS gave (utm_*, campaign_name, search_query…) for extra-field mapping
    params: JsonObject = Field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in {"lost", "succeed", "refused"}

    def param(self, name: str) -> JsonValue:
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
    params: JsonObject = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """The request's progress key before enrichment. A delivery naming only the communication is
        re-keyed by the request id once the report gives it (`REQ#c<id>` then aliases `REQ#om<id>`)."""
        if self.offline_message_id is not None:
            return f"om{self.offline_message_id}"
        return f"c{self.communication_id}"

    def param(self, name: str) -> JsonValue:
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


# --- what the store keeps --------------------------------------------------------------------------------
class StepState(BaseModel):
    """One AlfaCRM write of a chat or request (`step_lead`, `step_transcript`, `step_comment`): claimed before
    the call, done (with its result: the lead's id, the parts posted) or failed after it."""

    model_config = ConfigDict(extra="ignore")

    state: Literal["claimed", "done", "failed"]
    at: float = 0
    result: JsonValue = None
    error: str | None = None


class _Progress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    customer_id: int | None = None  # the AlfaCRM customer the communication is attached to
    customer_branch_id: int | None = None  # the branch to address that customer through
    step_lead: StepState | None = None

    def done(self, step: str) -> bool:
        state = getattr(self, f"step_{step}", None)
        return isinstance(state, StepState) and state.state == "done"


class ChatProgress(_Progress):
    """`CHAT#<chat_id>`: what the events of one chat learnt and wrote so far."""

    facts: ChatFacts | None = None  # merged with a report row once one was read: no second UIS call
    fields_applied: dict[str, str] = Field(default_factory=dict)  # mapped field → hash of the value written
    link_pending: bool = False  # our lead exists, but UIS has not named the chat's communication yet
    transcript_waiting: bool = False  # the chat ended without a customer: a later lead gets the transcript
    step_transcript: StepState | None = None

    @field_serializer("facts")
    def _facts_without_messages(self, facts: ChatFacts | None) -> JsonValue:
        # the transcript is read when it is posted: the messages are not kept between events
        return facts.model_dump(mode="json", exclude={"messages"}) if facts is not None else None


class RequestProgress(_Progress):
    """`REQ#om<offline_message_id>` (or, named by its communication only, `REQ#c<communication_id>`, which
    becomes an alias of the former once the report names the request)."""

    alias_of: str | None = None
    step_comment: StepState | None = None


class CustomerLink(BaseModel):
    """`CUSTCOMM#<customer_id>`: the UIS communication that made the connector create this customer (the
    first-sale deal carries it, so UIS attributes the sale to it)."""

    model_config = ConfigDict(extra="ignore")

    communication_id: int
    communication_type: Literal["chat", "offline_message"]


LostTaskState = Literal["claimed", "sending", "done", "released"]


class LostTaskClaim(BaseModel):
    """`CHAT#<chat_id>#lost_task`: the one AlfaCRM task of a lost chat (connector.texts.lost_chats)."""

    model_config = ConfigDict(extra="ignore")

    state: LostTaskState
    token: str = ""
    claimed_at: float = 0
    attempts: int = 0
    version: int = 0
    taken_over: LostTaskState | None = None  # the state a takeover found
    was_sending: bool = False  # released after the task's HTTP call had started: AlfaCRM may hold it
    title: str | None = None  # the title sent (a takeover searches AlfaCRM for it)
    customer_id: int | None = None
    task_id: int | None = None
    done_at: int | None = None
    recovered: bool = False
    error: str | None = None
    released_at: int | None = None
    settle_until: float | None = None  # released after a lost answer: not taken over before (it may still land)
