"""The columns of the UIS report methods the sandbox serves, as the Data API docs tabulate them.

Source: `comagic/comagic.github.io`, `data_api/report/<method>/index.html`, table "Параметры ответа": per column
"Ответ по умолчанию" (returned when the call names no `fields`) and "Фильтрация" (may appear in a `filter`).
Nested keys of `tags`, `visitor_custom_properties` and `segments` (`tag_id`, `property_name`…) are not columns.
Kept apart from the connector's own list (`connector.uis.columns`) on purpose: the sandbox must not share
the client's mistakes.
"""

from __future__ import annotations

# name: (returned by default, filterable)
Columns = dict[str, tuple[bool, bool]]

# the columns both report pages document with the same flags (attribution, visitor profile)
_SHARED: Columns = {
    "id": (True, True),
    "status": (True, True),
    "communication_number": (False, True),
    "communication_page_url": (False, False),
    "communication_id": (True, True),
    "communication_type": (False, False),
    "ua_client_id": (False, False),
    "ym_client_id": (False, False),
    "sale_date": (False, True),
    "sale_cost": (False, True),
    "search_query": (False, True),
    "search_engine": (False, True),
    "referrer_domain": (False, True),
    "referrer": (False, True),
    "entrance_page": (False, True),
    "gclid": (False, True),
    "yclid": (False, True),
    "ef_id": (False, True),
    "channel": (False, True),
    "employee_id": (True, True),
    "employee_full_name": (False, True),
    "tags": (False, True),
    "site_id": (True, True),
    "site_domain_name": (False, True),
    "campaign_id": (True, True),
    "campaign_name": (False, True),
    "visit_other_campaign": (False, False),
    "visitor_phone_number": (True, True),
    "visitor_id": (True, True),
    "person_id": (False, True),
    "visitor_type": (False, True),
    "visits_count": (False, True),
    "visitor_first_campaign_id": (False, True),
    "visitor_first_campaign_name": (False, True),
    "visitor_city": (False, True),
    "visitor_region": (False, True),
    "visitor_country": (False, True),
    "visitor_custom_properties": (False, True),
    "segments": (False, True),
    "utm_source": (False, True),
    "utm_medium": (False, True),
    "utm_term": (False, True),
    "utm_content": (False, True),
    "utm_campaign": (False, True),
    "openstat_ad": (False, True),
    "openstat_campaign": (False, True),
    "openstat_service": (False, True),
    "openstat_source": (False, True),
    "attributes": (False, True),
    "eq_utm_source": (False, True),
    "eq_utm_medium": (False, True),
    "eq_utm_term": (False, True),
    "eq_utm_content": (False, True),
    "eq_utm_campaign": (False, True),
    "eq_utm_referrer": (False, True),
    "eq_utm_expid": (False, True),
    "source_id": (False, True),
    "source_name": (False, True),
    "source_new": (False, True),
    "channel_new": (False, True),
    "channel_code": (False, True),
    "ext_id": (False, True),
}

# report/get_chats_report
CHATS_REPORT: Columns = {
    **_SHARED,
    "initiator": (True, True),
    "date_time": (True, False),
    "duration": (True, True),
    "answer_time": (True, True),
    "chat_ad_url": (True, False),
    "chat_channel_id": (False, True),
    "chat_channel_type": (False, True),
    "chat_channel_name": (False, False),
    "chat_user_id": (False, True),
    "chat_username": (False, True),
    "messages_count": (False, False),
    "is_group_chat": (True, False),
    "is_transfer": (True, False),
    "release_cause": (True, True),
    "ymclid": (False, False),
    "employee_raiting": (True, False),
    "employee_messages_count": (False, False),
    "visitor_ids": (True, False),
    "visitor_session_id": (False, True),
    "visitor_profile_url": (False, True),
}

# report/get_offline_messages_report
OFFLINE_MESSAGES_REPORT: Columns = {
    **_SHARED,
    "date_time": (False, False),
    "text": (True, False),
    "is_agree_to_process_personal_data": (True, False),
    "is_agree_to_mailing": (True, False),
    "process_time": (False, False),
    "form_type": (True, True),
    "form_name": (False, True),
    "ymclid": (False, True),
    "properties": (True, False),
    "group_id": (False, True),
    "group_name": (False, True),
    "employee_answer_message": (False, False),
    "employee_comment": (False, False),
    "visitor_email": (True, True),
    "visitor_name": (True, True),
    "visitor_session_id": (True, True),
    "visitor_device": (False, True),
}

# report/get_chat_messages_report
CHAT_MESSAGES_REPORT: Columns = {
    "id": (True, True),
    "chat_id": (True, True),
    "channel_id": (False, True),
    "channel_type": (False, True),
    "date_time": (True, False),
    "is_group_chat": (True, False),
    "visitor_id": (True, False),
    "text": (True, False),
    "source": (True, False),
    "resource": (True, False),
    "employee_id": (True, True),
    "employee_full_name": (True, False),
}

# ca_deal/get_deals_history: the page has no "Ответ по умолчанию" column, every documented column is returned
# (no `user_fields`: the page lists none)
DEALS_HISTORY: Columns = {
    "ext_id": (True, True),
    "name": (True, True),
    "created_date_time": (True, True),
    "closed_date_time": (True, True),
    "modified_stage_date_time": (True, True),
    "contact_ext_ids": (True, True),
    "tag_ext_ids": (True, True),
    "main_contact_ext_id": (True, True),
    "employee_ext_id": (True, True),
    "revenue": (True, True),
    "sales_funnel_ext_id": (True, True),
    "stage_ext_id": (True, True),
    "comments": (True, False),
    "source": (True, True),
    "is_generated": (True, True),
    "communication_id": (True, True),
    "communication_type": (True, True),
}
