"""Text rules, pure: filters, when a lead is created, extra-field decisions, lead names, request comments.

Everything here works on `ChatFacts` / `RequestFacts` and the typed settings; nothing does I/O. Filters
follow contract.md: OR within a list, AND across lists, an empty list means "any"; `sites` match the
domain or the site id, `channels` the channel type or id, `tags` a tag id or name, `form_types` the form type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from connector.models.messages import ENDED_EVENTS
from connector.models.raw import JsonObject, JsonValue
from connector.models.texts import ChatFacts, RequestFacts, Tag
from connector.settings import ChatFilters, ChatsSettings, ExtraField, RequestFilters, RequestsSettings
from connector.timeutil import utc_to_local

# Channel types of get.chats_report → what a manager reads in a lead name.
CHANNEL_LABELS = {
    "comagic": "на сайте",
    "whatsapp": "WhatsApp",
    "waba": "WhatsApp",
    "telegram": "Telegram",
    "telegram_private": "Telegram",
    "vkontakte_groups": "ВКонтакте",
    "viber": "Viber",
    "avito": "Авито",
    "auto_ru": "Авто.ру",
    "cian": "ЦИАН",
    "facebook": "Facebook",
    "instagram": "Instagram",
    "sms": "SMS",
    "email": "e-mail",
    "max": "MAX",
}

# Form types of offline messages (UIS dictionary comagic:consultant:offline_message_form_type).
FORM_TYPE_LABELS = {
    "standard": "стандартная",
    "custom": "пользовательская",
    "facebook": "Facebook Ads",
    "dataapi": "DataAPI",
}

# AlfaCRM customer fields that hold lists (a mapped value is added to the list, never replaces it).
LIST_FIELDS = frozenset({"phone", "email", "web", "addr"})
# ... and those holding ids (`branch_ids` is replaced whole by AlfaCRM's update: always merged here).
ID_LIST_FIELDS = frozenset({"branch_ids", "teacher_ids"})


# --- filters -------------------------------------------------------------------------------------------
def _norm_site(text: str) -> str:
    text = text.strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    return text.removeprefix("www.").rstrip("/")


def site_matches(wanted: Iterable[str], domain: str | None, site_id: int | None) -> bool:
    names = {_norm_site(domain)} if domain else set()
    ids = {str(site_id)} if site_id is not None else set()
    return any(_norm_site(w) in names or w.strip() in ids for w in wanted)


def channel_matches(
    wanted: Iterable[str], channel_type: str | None, channel_id: int | None, channel_name: str | None = None
) -> bool:
    have = {v.strip().lower() for v in (channel_type, channel_name) if v}
    if channel_id is not None:
        have.add(str(channel_id))
    return any(w.strip().lower() in have for w in wanted)


def tags_match(wanted: Iterable[str], tags: Iterable[Tag]) -> bool:
    tag_list = list(tags)
    return any(tag.matches(w) for w in wanted for tag in tag_list)


def chat_passes_filters(filters: ChatFilters, chat: ChatFacts) -> tuple[bool, str]:
    """(passes, reason). The reason names the first list the chat fails, or says it passed."""
    if filters.sites and not site_matches(filters.sites, chat.site_domain_name, chat.site_id):
        return False, f"site {chat.site_domain_name or chat.site_id or 'unknown'} is not in the chat filter"
    if filters.channels and not channel_matches(
        filters.channels, chat.channel_type, chat.channel_id, chat.channel_name
    ):
        return False, f"channel {chat.channel_type or chat.channel_id or 'unknown'} is not in the chat filter"
    if filters.tags and not tags_match(filters.tags, chat.tags):
        return False, "the chat has none of the filter's tags"
    return True, "passes the chat filters"


def request_passes_filters(filters: RequestFilters, req: RequestFacts) -> tuple[bool, str]:
    if filters.sites and not site_matches(filters.sites, req.site_domain_name, req.site_id):
        return False, f"site {req.site_domain_name or req.site_id or 'unknown'} is not in the request filter"
    if filters.form_types and not (req.form_type and req.form_type.lower() in {f.lower() for f in filters.form_types}):
        return False, f"request type {req.form_type or 'unknown'} is not in the request filter"
    return True, "passes the request filters"


# --- what a notification lacks ------------------------------------------------------------------------
def chat_missing(chats: ChatsSettings, chat: ChatFacts, *, wants_customer: bool) -> list[str]:
    """Facts the rules need but the notification did not give (each would need a UIS report to learn).

    A filter that already matches needs nothing more; one that does not match needs the alternative
    spelling only when it is unknown (a site filter by id, a domain-only notification).
    """
    if chat.complete:
        return []
    missing: list[str] = []
    f = chats.filters
    if (
        f.sites
        and not site_matches(f.sites, chat.site_domain_name, chat.site_id)
        and not (chat.knows("site_domain_name") and chat.knows("site_id"))
    ):
        missing.append("site")
    if (
        f.channels
        and not channel_matches(f.channels, chat.channel_type, chat.channel_id, chat.channel_name)
        and not (chat.knows("channel_type") and chat.knows("channel_id"))
    ):
        missing.append("channel")
    wanted_tags = list(f.tags)
    if chats.create_lead.enabled and chats.create_lead.on == "tag_set":
        wanted_tags += chats.create_lead.tags
    if (
        wanted_tags
        and not tags_match(wanted_tags, chat.tags)
        and (not chat.knows("tags") or any(t.name is None for t in chat.tags))
    ):
        # tag ids only (the notification's `tag_ids`) while settings may list names
        missing.append("tags")
    if wants_customer and not chat.has_contacts and not (chat.knows("visitor_phone") and chat.knows("visitor_email")):
        missing.append("contacts")
    if wants_customer and _unknown_sources(chats.extra_fields, chat):
        missing.append("extra_fields")
    return missing


def _unknown_sources(mappings: Iterable[ExtraField], facts: ChatFacts | RequestFacts) -> list[str]:
    """Mapped UIS parameters the notification did not carry at all (the default bodies lack UTM for
    requests, phone and channel for chats): the report has them."""
    return [m.source for m in mappings if facts.param(m.source) in (None, "") and not facts.knows(m.source)]


def request_missing(settings: RequestsSettings, req: RequestFacts) -> list[str]:
    if req.complete:
        return []
    filters = settings.filters
    missing: list[str] = []
    if req.offline_message_id is None or (req.communication_id is None and not req.knows("communication_id")):
        # both ids name the request (de-duplication across deliveries; the communication links the lead)
        missing.append("ids")
    if (
        filters.sites
        and not site_matches(filters.sites, req.site_domain_name, req.site_id)
        and not (req.knows("site_domain_name") and req.knows("site_id"))
    ):
        missing.append("site")
    if filters.form_types and not req.form_type and not req.knows("form_type"):
        missing.append("form_type")
    if not req.has_contacts and not (req.knows("visitor_phone") or req.knows("visitor_email")):
        missing.append("contacts")
    if _unknown_sources(settings.extra_fields, req):
        missing.append("extra_fields")
    return missing


# --- when a chat creates a lead ------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatPlan:
    """What one chat event may do in AlfaCRM."""

    create_lead: bool  # create the lead if no customer exists
    transcript: bool  # post the transcript (the chat has ended)
    reason: str

    @property
    def acts(self) -> bool:
        return self.create_lead or self.transcript


def chat_plan(chats: ChatsSettings, event: str, chat: ChatFacts) -> ChatPlan:
    """Decide what this event may do before spending any UIS or AlfaCRM call.

    The lead is created on the configured event; a later event of the same chat also creates it when the
    configured moment has already passed unseen (a chat_started the poller missed, a tag set without a
    mark notification but visible on the finished chat), so no chat that qualified is left without a lead.
    """
    ended = event in ENDED_EVENTS
    lead = False
    why = "create_lead is off"
    cl = chats.create_lead
    if cl.enabled:
        if cl.on == "chat_started":
            lead = event in {"chat_started", *ENDED_EVENTS, "set_mark"}
            why = "lead on chat start"
        elif cl.on == "chat_finished":
            lead = ended
            why = "lead on chat end" if ended else f"lead is created at chat end, not on {event}"
        else:  # tag_set: on a listed tag, whichever event shows it
            lead = event != "unset_mark" and tags_match(cl.tags, chat.tags)
            why = "a listed tag is set" if lead else "none of the listed tags is set"
    transcript = ended
    if event == "lost_chat" and not chat.messages and chat.messages is not None:
        transcript = False
    if not (lead or transcript):
        return ChatPlan(False, False, why)
    return ChatPlan(lead, transcript, why)


# --- names and texts ------------------------------------------------------------------------------------
def channel_label(chat: ChatFacts) -> str:
    if chat.channel_type and chat.channel_type.lower() in CHANNEL_LABELS:
        return CHANNEL_LABELS[chat.channel_type.lower()]
    return chat.channel_name or chat.channel_type or "на сайте"


def chat_lead_name(chat: ChatFacts) -> str:
    """The visitor's name; without a phone or e-mail a name a manager recognises as a chat (channel, visitor):
    "Чат WhatsApp, посетитель 12345", or "Павел (чат WhatsApp, посетитель 12345)" when the visitor gave one."""
    if chat.visitor_name and chat.has_contacts:
        return chat.visitor_name
    label = channel_label(chat)
    who = f"посетитель {chat.visitor_id}" if chat.visitor_id is not None else f"чат {chat.chat_id}"
    where = f"на сайте {chat.site_domain_name}" if label == "на сайте" and chat.site_domain_name else label
    if chat.visitor_name:
        return f"{chat.visitor_name} (чат {where}, {who})"
    return f"Чат {where}, {who}"


def request_lead_name(req: RequestFacts) -> str:
    if req.visitor_name:
        return req.visitor_name
    return f"Заявка с сайта {req.site_domain_name}" if req.site_domain_name else "Заявка с сайта"


_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


def _fmt_time(moment: datetime | None, tz: str | None) -> str | None:
    return utc_to_local(moment, tz).strftime("%d.%m.%Y %H:%M") if moment else None


def request_comment(req: RequestFacts, tz: str | None) -> str:
    """The comment a manager reads on the customer's card: the request text, site, form, campaign, UTM."""
    site = req.site_domain_name or (f"сайт {req.site_id}" if req.site_id else None)
    lines = [f"Заявка с сайта {site}" if site else "Заявка с сайта"]
    form = FORM_TYPE_LABELS.get((req.form_type or "").lower(), req.form_type)
    if req.form_name or form:
        lines.append("Форма: " + ", ".join(v for v in (req.form_name, form) if v))
    pairs: list[tuple[str, JsonValue]] = [
        ("Время", _fmt_time(req.created_at, tz)),
        ("Имя", req.visitor_name),
        ("Телефон", req.visitor_phone),
        ("E-mail", req.visitor_email),
        ("Сообщение", req.text),
        ("Рекламная кампания", req.param("campaign_name")),
        ("Поисковая система", req.param("search_engine")),
        ("Поисковый запрос", req.param("search_query")),
    ]
    lines += [f"{label}: {value}" for label, value in pairs if value not in (None, "")]
    utm = [f"{k}={req.param(k)}" for k in _UTM if req.param(k) not in (None, "")]
    if utm:
        lines.append("UTM: " + ", ".join(utm))
    ids = [
        f"заявка {req.offline_message_id}" if req.offline_message_id else None,
        f"обращение {req.communication_id}" if req.communication_id else None,
    ]
    lines.append("UIS: " + ", ".join(i for i in ids if i))
    return "\n".join(lines)


# --- extra fields ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldValue:
    target: str
    value: JsonValue
    update_always: bool


def extra_field_values(mappings: Iterable[ExtraField], facts: ChatFacts | RequestFacts) -> list[FieldValue]:
    """The mapped values this chat/request has (a mapping whose UIS parameter is empty writes nothing)."""
    out = []
    for m in mappings:
        value = facts.param(m.source)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value if v not in (None, ""))
        if value in (None, ""):
            continue
        out.append(FieldValue(m.target, value, m.update_always))
    return out


def as_ids(value: object) -> list[int]:
    """A mapped value for an id-list field: `2`, `"2"`, `"2, 3"`, `[2, "3"]` → [2, 3] (non-ids dropped)."""
    items = value if isinstance(value, list | tuple) else str(value).replace(";", ",").split(",")
    out: list[int] = []
    for item in items:
        text = str(item).strip()
        if text.endswith(".0"):
            text = text[:-2]
        if text.isdigit() and int(text) not in out:
            out.append(int(text))
    return out


@dataclass
class CustomerFields:
    """AlfaCRM customer fields to send, by kind: id lists (`branch_ids`, `teacher_ids`), text lists (`phone`,
    `email`, `web`, `addr`) and single values."""

    ids: dict[str, list[int]] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    values: JsonObject = field(default_factory=dict)

    def body(self) -> dict[str, object]:
        return {**self.values, **self.ids, **self.lists}


def fields_for_new_lead(values: Iterable[FieldValue]) -> CustomerFields:
    """Extra fields in a lead's creation body (list fields as lists)."""
    fields = CustomerFields()
    for v in values:
        if v.target in ID_LIST_FIELDS:
            ids = fields.ids.setdefault(v.target, [])
            ids += [i for i in as_ids(v.value) if i not in ids]
        elif v.target in LIST_FIELDS:
            items = fields.lists.setdefault(v.target, [])
            if str(v.value) not in items:
                items.append(str(v.value))
        else:
            fields.values[v.target] = v.value
    return fields


def fields_for_existing(values: Iterable[FieldValue], current: Mapping[str, object]) -> dict[str, object]:
    """Updates for an existing customer: a field is written when `update_always` is set or it is empty.

    `current` maps field names to the customer's values (custom fields by their `custom_*` names). List
    fields gain the value (never lose theirs); an unchanged value is not sent.
    """
    updates = CustomerFields()
    for v in values:
        have = current.get(v.target)
        empty = have in (None, "", [], {})
        if not (v.update_always or empty):
            continue
        if v.target in ID_LIST_FIELDS:
            ids = as_ids(updates.ids.get(v.target) or have or [])
            merged = ids + [i for i in as_ids(v.value) if i not in ids]
            if merged != ids:
                updates.ids[v.target] = merged
        elif v.target in LIST_FIELDS:
            before = updates.lists.get(v.target) or have or []
            items = [str(x) for x in (before if isinstance(before, list | tuple) else [before])]
            if str(v.value) not in items:
                updates.lists[v.target] = [*items, str(v.value)]
        elif str(have) != str(v.value):
            updates.values[v.target] = v.value
    return updates.body()
