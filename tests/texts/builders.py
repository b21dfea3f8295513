"""Builders for text-queue messages shaped like UIS's default notification templates (POST and GET)."""

from __future__ import annotations

from typing import Any


def message(
    event: str | None,
    payload: dict[str, Any],
    *,
    method: str = "POST",
    source: str = "notification",
    iid: str = "int1",
    received_at: str = "2025-03-14T09:00:00Z",
) -> dict[str, Any]:
    return {
        "integration_id": iid,
        "received_at": received_at,
        "source": source,
        "event": event,
        "method": method,
        "payload": payload,
    }


def offline_message_post(**over: Any) -> dict[str, Any]:
    """The default POST body of "Офлайн заявка" (visitor fields nested under `visitor`)."""
    visitor = {
        "visitor_name": "Ирина",
        "visitor_phone_number": "79261234501",
        "visitor_email": "irina@example.ru",
        "visitor_message": "Хочу на пробный урок",
        "visitor_id": 3000042,
        "session_id": 5000042,
    }
    visitor.update({k: over.pop(k) for k in list(over) if k in visitor})
    body = {
        "notification_name": "Заявка",
        "notification_time": "2025-03-14 12:00:00",
        "visitor": visitor,
        "offline_message_id": 700042,
        "site_domain_name": "school.ru",
        "campaign_id": 1201,
        "campaign_name": "Яндекс Директ",
        "communication_id": 90000042,
        "search_engine": "yandex",
        "search_query": "английский",
    }
    body.update(over)
    return body


def chat_finished_post(**over: Any) -> dict[str, Any]:
    """The default POST body of "Завершение чата" (no phone, site id or channel: UIS does not send them)."""
    body = {
        "notification_name": "Чат завершён",
        "notification_time": "2025-03-14 12:10:00",
        "site_domain_name": "school.ru",
        "campaign_id": 1201,
        "campaign_name": "Яндекс Директ",
        "communication_id": 90000077,
        "search_engine": None,
        "search_query": None,
        "session_id": 5000077,
        "ua_client_id": None,
        "utm_campaign": "spring",
        "utm_content": None,
        "utm_medium": "cpc",
        "utm_source": "yandex",
        "utm_term": None,
        "chat_id": 777,
        "tag_ids": [501],
        "messages": [
            {"date_time": "2025-03-14 12:01:00", "source": "visitor", "text": "Здравствуйте"},
            {
                "date_time": "2025-03-14 12:02:00",
                "source": "operator",
                "employee_full_name": "Анна Смирнова",
                "text": "Добрый день!",
            },
        ],
        "employee_full_name": "Анна Смирнова",
        "visitor_info": {"visitor_name": "Павел", "visitor_id": 3000077},
        "status": "succeed",
    }
    body.update(over)
    return body
