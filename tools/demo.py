"""`make demo`: both flows end to end on the local stack with the sandboxes, no accounts needed.

Deals part (here): a school day entered through the AlfaCRM sandbox's manager "UI" routes — leads moving
through statuses, one failing, two converting to clients, payments, an extra payment, a payment deleted —
whose webhooks reach the local stack; then `DealUploadSchedule` fires and the deals the UIS sandbox now holds
are printed per funnel. Texts part: `tools.demo_texts.run(stack)`, when present. Last, `DealUploadSchedule`
fires again and the first-sale deals of the leads the connector created from UIS communications are printed
with the communication UIS attributes them to.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from tools.sandboxes.alfacrm import local_now

Out = Callable[[str], None]


def _ui(http: httpx.Client, route: str, body: dict[str, Any], **query: Any) -> dict[str, Any]:
    reply = http.post(f"/_sandbox/ui/{route}", json=body, params={k: v for k, v in query.items() if v is not None})
    if reply.status_code >= 300:
        raise RuntimeError(f"AlfaCRM sandbox {route} answered {reply.status_code}: {reply.text[:300]}")
    model: dict[str, Any] = reply.json()["model"]
    return model


class ShiftedClock:
    """The AlfaCRM sandbox's account-local time, started hours ago and moved forward between the managers'
    actions, so the day's changes get the minutes and hours apart they would really have. It also runs in
    real time, so the sandbox's per-second burst limit behaves as usual."""

    def __init__(self, hours_ago: float) -> None:
        self.offset = timedelta(hours=-hours_ago)

    def __call__(self) -> datetime:
        return local_now() + self.offset

    def advance(self, minutes: float) -> None:
        self.offset += timedelta(minutes=minutes)


def school_day(alfacrm_url: str, advance: Callable[[float], None] = lambda minutes: None) -> dict[str, int]:
    """What the school's managers do in AlfaCRM today (each action fires AlfaCRM's webhook)."""
    with httpx.Client(base_url=alfacrm_url, timeout=30) as http:
        daria = _ui(
            http,
            "customer/create",
            {
                "name": "Кузнецова Дарья",
                "is_study": 0,
                "lead_status_id": 1,
                "phone": ["+7 (916) 555-01-01"],
                "email": ["daria@example.ru"],
                "teacher_ids": [1],
            },
        )
        artem = _ui(
            http,
            "customer/create",
            {"name": "Морозов Артём", "is_study": 0, "lead_status_id": 1, "phone": ["89035550202"]},
        )
        sofia = _ui(
            http,
            "customer/create",
            {
                "name": "Новикова Софья",
                "is_study": 0,
                "lead_status_id": 1,
                "phone": ["8 (926) 555-03-03"],
                "teacher_ids": [3],
            },
            branch_id=2,
        )
        kirill = _ui(http, "customer/create", {"name": "Белов Кирилл", "is_study": 0, "phone": ["+79165550404"]})
        for status in (2, 3, 7):
            advance(45)
            _ui(http, "customer/update", {"lead_status_id": status}, id=daria["id"])
        for status in (2, 5):
            advance(20)
            _ui(http, "customer/update", {"lead_status_id": status}, id=artem["id"])
        advance(30)
        _ui(http, "customer/update", {"lead_status_id": 3}, id=sofia["id"])
        advance(60)
        _ui(http, "customer/update", {"is_study": 1}, id=daria["id"])
        advance(15)
        _ui(http, "customer/update", {"is_study": 1}, id=sofia["id"])
        advance(10)
        _ui(
            http,
            "pay/create",
            {"customer_id": daria["id"], "income": "6000", "teacher_id": 1, "note": "Абонемент, 8 занятий"},
        )
        advance(90)
        _ui(
            http,
            "pay/create",
            {"customer_id": daria["id"], "income": "3500", "teacher_id": 2, "note": "Доп. занятия по грамматике"},
        )
        advance(20)
        _ui(http, "pay/create", {"customer_id": sofia["id"], "income": "4800", "teacher_id": 3}, branch_id=2)
        advance(5)
        wrong = _ui(http, "pay/create", {"customer_id": sofia["id"], "income": "1500"}, branch_id=2)
        advance(3)
        _ui(http, "pay/delete", {}, id=wrong["id"])
    return {"daria": daria["id"], "artem": artem["id"], "sofia": sofia["id"], "kirill": kirill["id"]}


def table(header: list[str], rows: list[list[str]], *, right: frozenset[int] = frozenset()) -> list[str]:
    """Columns as wide as their widest cell: nothing is cut; columns in `right` are right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  " + "  ".join(parts).rstrip()

    return [line(header), "  " + "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _deals_word(n: int) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return "сделка"
    if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14):
        return "сделки"
    return "сделок"


def deals_table(uis_state: dict[str, Any]) -> list[str]:
    """The UIS sandbox's deals per funnel, as a reader would want to see them."""
    funnels = {f["ext_id"]: f for f in uis_state["funnels"]}
    lines: list[str] = []
    for funnel_id in ("first_sale", "upsell"):
        funnel = funnels.get(funnel_id)
        deals = [d for d in uis_state["deals"] if d["sales_funnel_ext_id"] == funnel_id]
        if funnel is None:
            continue
        names = {ext: stage["name"] for ext, stage in funnel["stages"].items()}
        lines.append("")
        lines.append(f"Воронка UIS «{funnel['name']}»: {len(deals)} {_deals_word(len(deals))}")
        rows = []
        for deal in sorted(deals, key=lambda d: d["ext_id"]):
            path = " → ".join(
                names.get(p["stage_ext_id"], p["stage_ext_id"]) for p in deal["path"] if not p["is_generated"]
            )
            revenue = "" if deal.get("revenue") is None else f"{deal['revenue']:g}"
            fields = deal.get("user_fields") or {}
            stage = names.get(deal["stage_ext_id"], deal["stage_ext_id"])
            rows.append([deal["name"], stage, revenue, fields.get("teacher") or "", fields.get("branch") or "", path])
        lines.extend(table(["сделка", "этап", "выручка", "учитель", "филиал", "путь"], rows, right=frozenset({2})))
    return lines


def run_deals_demo(stack: Any, out: Out = print) -> dict[str, Any]:
    alfacrm_url, uis_url = stack.sandboxes["alfacrm"].url, stack.sandboxes["uis"].url
    out("")
    out("== Сделки: AlfaCRM → UIS ==")
    out("Учебный день в AlfaCRM: 4 лида, смены этапов, 2 лида стали клиентами, платежи, доплата, удалённый платёж")
    started = time.monotonic()
    clock = ShiftedClock(hours_ago=7)
    stack.sandboxes["alfacrm"].sandbox.clock = clock
    ids = school_day(alfacrm_url, clock.advance)
    stack.wait_idle(timeout=120)
    out(f"Webhook'и AlfaCRM обработаны за {time.monotonic() - started:.1f} с")
    _upload(stack, out)
    state = httpx.get(f"{uis_url}/_sandbox/state", timeout=30).json()
    for line in deals_table(state):
        out(line)
    return {"customers": ids, "deals": len(state["deals"])}


UPLOAD_STATES = {
    "idle": "нечего выгружать",
    "uploaded": "всё выгружено",
    "partial": "выгружено частично",
    "deferred": "отложено до следующей выгрузки",
}
COMMUNICATION_TYPES = {"chat": "чат", "offline_message": "заявка"}


def _upload(stack: Any, out: Out) -> None:
    reply = httpx.post(f"{stack.url}/_local/schedules/DealUploadSchedule", timeout=120)
    reply.raise_for_status()
    for report in reply.json().get("result", reply.json()).get("integrations", []):
        state = UPLOAD_STATES.get(report["state"], report["state"])
        out(
            f"Выгрузка в UIS: сделок {report['deals']}, строк истории {report['rows']}, баллов UIS {report['points']}, "
            f"{state}" + (f", отложено {report['parked']}" if report["parked"] else "")
        )


def communication_deals(stack: Any, customers: dict[int, str], out: Out = print) -> list[dict[str, Any]]:
    """Upload once more; print the first-sale deals of `customers` (id → name: the leads the connector
    created from UIS chats and requests) with the UIS communication each deal carries."""
    out("")
    out("== Сделки UIS по лидам из коммуникаций UIS ==")
    stack.wait_idle(timeout=60)
    _upload(stack, out)
    state = httpx.get(f"{stack.sandboxes['uis'].url}/_sandbox/state", timeout=30).json()
    by_ext = {d["ext_id"]: d for d in state["deals"] if d["sales_funnel_ext_id"] == "first_sale"}
    rows: list[dict[str, Any]] = []
    cells: list[list[str]] = []
    for customer_id, name in sorted(customers.items()):
        deal = by_ext.get(f"customer-{customer_id}")
        label = f"#{customer_id} {name}"
        if deal is None:
            cells.append([label, "—", "сделки нет"])
            continue
        rows.append(deal)
        kind = COMMUNICATION_TYPES.get(deal.get("communication_type"), deal.get("communication_type"))
        comm = (
            f"{deal['communication_id']} ({kind})" if deal.get("communication_id") is not None else "— (без обращения)"
        )
        cells.append([label, deal["ext_id"], comm])
    for line in table(["лид AlfaCRM", "сделка UIS", "обращение UIS"], cells):
        out(line)
    carried = sum(d.get("communication_id") is not None for d in rows)
    out(f"Итого: сделок {len(rows)} из {len(customers)}, с обращением UIS {carried}.")
    return rows


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    # metrics are switched off for the console; Powertools then warns on every invocation
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    # AlfaCRM is asked for ≤5 requests/s; the sandbox answers bursts above that with 429 like the real one
    os.environ.setdefault("ALFACRM_RPS", "4")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines on the console
    from tools.localstack import LocalStack

    stack = LocalStack(
        sandbox=True,
        run_schedules=False,
        out=lambda line: None,
        extra_env={"ALFACRM_RPS": os.environ["ALFACRM_RPS"], "POWERTOOLS_LOG_LEVEL": "WARNING"},
    )
    stack.start()
    warnings_seen = _quiet_connector_log()
    try:
        print(f"Локальный стек {stack.url}, демо-школа {stack.demo['id'] if stack.demo else '?'}")
        run_deals_demo(stack)
        try:
            texts = importlib.import_module("tools.demo_texts")
        except ModuleNotFoundError:
            texts = None
        if texts is not None:
            result = texts.run(stack) or {}
            leads = [*(result.get("created") or []), *((result.get("lost") or {}).get("created") or [])]
            created = {int(c["id"]): str(c["name"]) for c in leads}
            if created:
                communication_deals(stack, created)
    finally:
        stack.stop()
    print("")
    if warnings_seen:
        print(f"Предупреждений в журнале коннектора: {len(warnings_seen)} (отложенное видно на странице настроек).")
    page = "http://127.0.0.1:3000/ui/#token=demo"
    print(f"Дальше: ADMIN_TOKEN=demo make run и откройте {page} — страницу настроек демо-школы.")
    return 0


def _quiet_connector_log() -> list[logging.LogRecord]:
    """The connector logs JSON lines for CloudWatch; among the demo's tables they are noise. Keep the records
    (counted at the end) instead of printing them."""
    from connector.observability import logger

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    for handler in list(logger._logger.handlers):
        logger._logger.removeHandler(handler)
    logger._logger.addHandler(Keep(level=logging.WARNING))
    return seen


if __name__ == "__main__":
    sys.exit(main())
