"""The columns UIS documents for the report methods the connector reads, and the ones it asks for.

Source: the Data API docs (`comagic/comagic.github.io`, `data_api/report/<method>/index.html`, table
"Параметры ответа"). Without `fields` a report returns only its "Ответ по умолчанию" columns — the chat
report's default set lacks the channel, site domain, tags, operator name, campaign and UTM — and a `fields`
name the method does not document is refused (`unexpected_parameters`), so every call names its columns and
only documented ones. A visitor's name and e-mail are in no chat report (`get.visitors` has them).
"""

from __future__ import annotations

from collections.abc import Iterable

# the columns both report pages document (ids, contacts, attribution, visitor profile)
_SHARED = frozenset(
    {
        "attributes",
        "campaign_id",
        "campaign_name",
        "channel",
        "channel_code",
        "channel_new",
        "communication_id",
        "communication_number",
        "communication_page_url",
        "communication_type",
        "date_time",
        "ef_id",
        "employee_full_name",
        "employee_id",
        "entrance_page",
        "eq_utm_campaign",
        "eq_utm_content",
        "eq_utm_expid",
        "eq_utm_medium",
        "eq_utm_referrer",
        "eq_utm_source",
        "eq_utm_term",
        "ext_id",
        "gclid",
        "id",
        "openstat_ad",
        "openstat_campaign",
        "openstat_service",
        "openstat_source",
        "person_id",
        "referrer",
        "referrer_domain",
        "sale_cost",
        "sale_date",
        "search_engine",
        "search_query",
        "segments",
        "site_domain_name",
        "site_id",
        "source_id",
        "source_name",
        "source_new",
        "status",
        "tags",
        "ua_client_id",
        "utm_campaign",
        "utm_content",
        "utm_medium",
        "utm_source",
        "utm_term",
        "visit_other_campaign",
        "visitor_city",
        "visitor_country",
        "visitor_custom_properties",
        "visitor_first_campaign_id",
        "visitor_first_campaign_name",
        "visitor_id",
        "visitor_phone_number",
        "visitor_region",
        "visitor_session_id",
        "visitor_type",
        "visits_count",
        "yclid",
        "ym_client_id",
        "ymclid",
    }
)
# get.chats_report (report/get_chats_report)
CHATS_REPORT_COLUMNS: frozenset[str] = _SHARED | {
    "answer_time",
    "chat_ad_url",
    "chat_channel_id",
    "chat_channel_name",
    "chat_channel_type",
    "chat_user_id",
    "chat_username",
    "duration",
    "employee_messages_count",
    "employee_raiting",
    "initiator",
    "is_group_chat",
    "is_transfer",
    "messages_count",
    "release_cause",
    "visitor_ids",
    "visitor_profile_url",
}
# get.offline_messages_report (report/get_offline_messages_report)
OFFLINE_MESSAGES_REPORT_COLUMNS: frozenset[str] = _SHARED | {
    "employee_answer_message",
    "employee_comment",
    "form_name",
    "form_type",
    "group_id",
    "group_name",
    "is_agree_to_mailing",
    "is_agree_to_process_personal_data",
    "process_time",
    "properties",
    "text",
    "visitor_device",
    "visitor_email",
    "visitor_name",
}

# get.chat_messages_report (report/get_chat_messages_report)
CHAT_MESSAGES_REPORT_COLUMNS: frozenset[str] = frozenset(
    {
        "id",
        "chat_id",
        "channel_id",
        "channel_type",
        "date_time",
        "is_group_chat",
        "visitor_id",
        "text",
        "source",
        "resource",
        "employee_id",
        "employee_full_name",
    }
)

# the "Ответ по умолчанию" columns: all a call without `fields` gets
CHATS_REPORT_DEFAULT: frozenset[str] = frozenset(
    {
        "id",
        "status",
        "initiator",
        "date_time",
        "duration",
        "answer_time",
        "communication_id",
        "chat_ad_url",
        "is_group_chat",
        "is_transfer",
        "release_cause",
        "employee_id",
        "employee_raiting",
        "site_id",
        "campaign_id",
        "visitor_phone_number",
        "visitor_id",
        "visitor_ids",
    }
)
OFFLINE_MESSAGES_REPORT_DEFAULT: frozenset[str] = frozenset(
    {
        "id",
        "text",
        "communication_id",
        "is_agree_to_process_personal_data",
        "is_agree_to_mailing",
        "status",
        "form_type",
        "properties",
        "employee_id",
        "site_id",
        "campaign_id",
        "visitor_phone_number",
        "visitor_email",
        "visitor_name",
        "visitor_id",
        "visitor_session_id",
    }
)

_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")

# What the connector reads from each report (facts, filters, lead names, comments, task titles).
CHAT_FIELDS: tuple[str, ...] = (
    "id",
    "communication_id",
    "date_time",
    "status",
    "site_id",
    "site_domain_name",
    "chat_channel_id",
    "chat_channel_type",
    "chat_channel_name",
    "visitor_id",
    "visitor_phone_number",
    "employee_full_name",
    "tags",
    "campaign_name",
    "search_engine",
    "search_query",
    *_UTM,
)
REQUEST_FIELDS: tuple[str, ...] = (
    "id",
    "communication_id",
    "date_time",
    "text",
    "status",
    "form_type",
    "form_name",
    "site_id",
    "site_domain_name",
    "visitor_id",
    "visitor_name",
    "visitor_phone_number",
    "visitor_email",
    "tags",
    "campaign_name",
    "search_engine",
    "search_query",
    *_UTM,
)
MESSAGE_FIELDS: tuple[str, ...] = (
    "id",
    "chat_id",
    "date_time",
    "source",
    "text",
    "employee_full_name",
    "resource",
)


def with_extra(base: tuple[str, ...], documented: frozenset[str], extra: Iterable[str]) -> list[str]:
    """`base` plus the documented columns among `extra` (extra-field mappings may name any of them; a name
    the report does not document — a notification-only parameter — is not asked for, UIS would refuse it)."""
    out = list(base)
    out += [name for name in dict.fromkeys(extra) if name in documented and name not in out]
    return out


def unknown(fields: Iterable[str], documented: frozenset[str]) -> list[str]:
    return [name for name in fields if name not in documented]
