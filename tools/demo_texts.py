"""`make demo`, texts part: a site request and two chats through the UIS sandbox → what AlfaCRM now holds.

Called by tools/demo.py after the deals part with the running local stack (`run(stack)`). Everything goes
through the sandboxes' scenario routes over HTTP, the way UIS would produce it: the UIS sandbox sends its
notifications to the demo integration's webhook, the local stack queues them, the text worker writes to
the AlfaCRM sandbox. Then the leads, comments and fields are read back from the AlfaCRM sandbox's state.

Last, a lost chat whose `lost_chat` notification never arrives: the chat poller (`ChatPollSchedule`, fired
by hand) finds it in `get.chats_report` and the text worker creates the AlfaCRM task; a second poll creates
no second task.
"""

from __future__ import annotations

from typing import Any

import httpx

KNOWN_CLIENT_PHONE = "89161234567"  # the AlfaCRM sandbox's seeded client +7(916)123-45-67, spelled otherwise
LOST_CHAT_PHONE = "79037770303"


def _post(http: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = http.post(path, json=body or {})
    if reply.status_code >= 300:
        raise RuntimeError(f"UIS sandbox {path} answered {reply.status_code}: {reply.text[:300]}")
    result: dict[str, Any] = reply.json()
    return result


def _chat(http: httpx.Client, spec: dict[str, Any], replies: list[tuple[str, str]]) -> dict[str, Any]:
    chat = _post(http, "/_sandbox/chats", spec)
    _post(http, f"/_sandbox/chats/{chat['id']}/take", {"employee_id": 11})
    for source, text in replies:
        _post(http, f"/_sandbox/chats/{chat['id']}/messages", {"source": source, "text": text})
    return _post(http, f"/_sandbox/chats/{chat['id']}/finish", {})


def _state(alfacrm_url: str) -> dict[str, Any]:
    reply = httpx.get(f"{alfacrm_url}/_sandbox/state", timeout=10)
    reply.raise_for_status()
    state: dict[str, Any] = reply.json()
    return state


def _print_customer(customer: dict[str, Any], comments: list[str], out: Any, *, created: bool) -> None:
    kind = "новый лид" if created else ("клиент" if customer.get("is_study") else "лид")
    out(f"  #{customer['id']} {customer['name']} ({kind}, филиал {customer.get('branch_ids')})")
    out(
        f"     телефоны: {', '.join(customer.get('phone') or []) or '—'};"
        f" e-mail: {', '.join(customer.get('email') or []) or '—'}"
    )
    fields = {k: v for k, v in customer.items() if k.startswith("custom_") and v not in (None, "")}
    extras = {k: customer.get(k) for k in ("lead_status_id", "lead_source_id") if customer.get(k) is not None}
    if fields or extras:
        out("     поля: " + ", ".join(f"{k}={v}" for k, v in {**extras, **fields}.items()))
    for comment in comments:
        lines = comment.splitlines()
        out(f"     комментарий ({len(comment)} симв.):")
        for line in lines[:12]:
            out(f"       | {line}")
        if len(lines) > 12:
            out(f"       | … ещё {len(lines) - 12} строк")


def run(stack: Any, out: Any = None) -> dict[str, Any]:
    """Drive the texts scenario on a started local stack with sandboxes; print and return what AlfaCRM holds."""
    say = out or (lambda line: print(line, flush=True))
    uis_url, alfacrm_url = stack.sandboxes["uis"].url, stack.sandboxes["alfacrm"].url
    before = _state(alfacrm_url)
    known_ids = {c["id"] for c in before["customers"]}
    known_comments = {c["id"] for c in before["communications"]}

    say("")
    say("== Текстовые коммуникации: UIS → AlfaCRM ==")
    with httpx.Client(base_url=uis_url, timeout=30) as http:
        say("1) Заявка с сайта school.ru (Ирина, новый телефон)")
        _post(
            http,
            "/_sandbox/requests",
            {
                "site_id": 17001,
                "visitor_name": "Ирина Ковалёва",
                "visitor_phone_number": "79261234501",
                "visitor_email": "irina.kovaleva@example.ru",
                "form_name": "Запись на пробный урок",
                "text": "Хочу записать сына (8 лет) на пробный урок в субботу",
                "utm_source": "yandex",
                "utm_medium": "cpc",
                "search_query": "английский для детей",
            },
        )
        say("2) Чат в WhatsApp (Павел, новый телефон), завершён оператором")
        _chat(
            http,
            {
                "chat_channel_type": "whatsapp",
                "visitor_name": "Павел",
                "visitor_phone_number": "79265550101",
                "message": "Здравствуйте! Есть группы для взрослых по вечерам?",
            },
            [("operator", "Добрый день! Да, вторник и четверг в 19:00."), ("visitor", "Отлично, запишите меня")],
        )
        say(f"3) Чат на сайте от уже известного клиента ({KNOWN_CLIENT_PHONE} = +7(916)123-45-67)")
        _chat(
            http,
            {
                "chat_channel_type": "comagic",
                "site_id": 17001,
                "visitor_name": "Анна",
                "visitor_phone_number": KNOWN_CLIENT_PHONE,
                "message": "Можно перенести занятие на пятницу?",
            },
            [("operator", "Конечно, перенесла на пятницу 17:00.")],
        )
    stack.wait_idle(timeout=60)

    after = _state(alfacrm_url)
    comments: dict[int, list[str]] = {}
    for c in after["communications"]:
        if c["id"] not in known_comments and c.get("class") == "Customer":
            comments.setdefault(int(c["related_id"]), []).append(c["comment"])
    touched = [c for c in after["customers"] if c["id"] not in known_ids or c["id"] in comments]
    say("")
    say("AlfaCRM после обработки:")
    for customer in touched:
        _print_customer(customer, comments.get(customer["id"], []), say, created=customer["id"] not in known_ids)
    created = [c for c in touched if c["id"] not in known_ids]
    say(f"Итого: новых лидов {len(created)}, новых комментариев {sum(len(v) for v in comments.values())}.")
    lost = lost_chat(stack, say)
    return {"created": created, "comments": comments, "lost": lost}


def _poll(stack: Any) -> dict[str, Any]:
    """Fire `ChatPollSchedule` now (the local stack's route) and wait until the text worker is done."""
    reply = httpx.post(f"{stack.url}/_local/schedules/ChatPollSchedule", timeout=120)
    reply.raise_for_status()
    stack.wait_idle(timeout=60)
    summary: dict[str, Any] = reply.json()
    return summary


POLL_STATUS = {
    "polled": "опрошено",
    "not_due": "пропуск: интервал опроса ещё не прошёл",
    "budget": "пропуск: мало баллов UIS",
    "allowance": "пропуск: дневной лимит опроса",
    "failed": "ошибка",
}


def _poll_line(summary: dict[str, Any]) -> str:
    statuses = ", ".join(POLL_STATUS.get(k, k) for k in sorted(summary.get("by_status") or {})) or "—"
    if not summary.get("polls"):
        return statuses
    return (
        f"{statuses}: прочитано чатов {summary.get('chats_read', 0)}, "
        f"потерянных чатов {summary.get('lost_chat_events', 0)}, баллов UIS {summary.get('uis_points', 0)}"
    )


def lost_chat(stack: Any, say: Any) -> dict[str, Any]:
    """A chat nobody answered whose notification is lost; the poller catches it → one AlfaCRM task."""
    uis_url, alfacrm_url = stack.sandboxes["uis"].url, stack.sandboxes["alfacrm"].url
    before = _state(alfacrm_url)
    known_tasks = {t["id"] for t in before["tasks"]}
    known_customers = {c["id"] for c in before["customers"]}
    say("")
    say(f"4) Потерянный чат на сайте (Ольга, {LOST_CHAT_PHONE}): никто не ответил, а уведомление UIS не пришло")
    with httpx.Client(base_url=uis_url, timeout=30) as http:
        chat = _post(
            http,
            "/_sandbox/chats",
            {
                "chat_channel_type": "comagic",
                "site_id": 17001,
                "visitor_name": "Ольга",
                "visitor_phone_number": LOST_CHAT_PHONE,
                "message": "Добрый вечер! Сколько стоит индивидуальное занятие?",
            },
        )
        _post(http, f"/_sandbox/chats/{chat['id']}/lose?notify=0")
    stack.wait_idle(timeout=30)
    if [t for t in _state(alfacrm_url)["tasks"] if t["id"] not in known_tasks]:
        raise RuntimeError("a task appeared before the poller ran: the lost_chat notification was not lost")
    say(f"   Опрос чатов UIS по расписанию → {_poll_line(_poll(stack))}")

    after = _state(alfacrm_url)
    customers = {c["id"]: c for c in after["customers"]}
    tasks = [t for t in after["tasks"] if t["id"] not in known_tasks]
    say("")
    say(f"Задачи AlfaCRM по потерянным чатам: {len(tasks)}")
    for task in tasks:
        who = ", ".join(
            f"#{cid} {customers[cid]['name']}" if cid in customers else f"#{cid}"
            for cid in task.get("customer_ids") or []
        )
        say(f"  задача #{task['id']}: «{task['title']}»")
        say(f"     клиент: {who or '—'}; срок: {task.get('due_date') or '—'}; филиал {task.get('branch_ids')}")
        for line in str(task.get("text") or "").splitlines():
            say(f"       | {line}")
        if "Ольга" not in task["title"]:
            say("     Имени «Ольга» в отчёте UIS о чатах нет, поэтому в названии задачи — имя, которое получил лид.")

    say("")
    say(f"   Опрос чатов UIS ещё раз → {_poll_line(_poll(stack))}")
    again = [t for t in _state(alfacrm_url)["tasks"] if t["id"] not in known_tasks]
    say(f"   задач по потерянным чатам после повторного опроса: {len(again)} (было {len(tasks)})")
    created = [c for c in after["customers"] if c["id"] not in known_customers]
    return {"chat_id": chat["id"], "tasks": tasks, "tasks_after_second_poll": len(again), "created": created}
