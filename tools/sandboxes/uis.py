"""UIS (CoMagic) emulator: the Data API v2.0 (JSON-RPC) at `/v2.0` plus UIS-style notifications.

Held to the published Data API docs (`comagic/comagic.github.io`, one page per method under
`data_api/<section>/<method>/index.html`; the general rules on `data_api/index.html`), each behaviour with its
page in a comment:
- JSON-RPC envelope: `id` required, batch arrays refused (-32600), unknown method (-32601), token in
  `params.access_token` (-32001 `access_token_invalid|expired|blocked`); a parameter the method does not
  document is refused (-32602 `unexpected_parameters`);
- a point per successful call against a minute and a day budget, reported in `metadata.limits`;
  -32029 `limit_exceeded` when spent (the error's `data.metadata.limits` carries the budget too);
- components (`data_api/components/`): every method needs one of its components switched on, else -32008
  `method_component_disabled`; tests switch components off with `set_components`;
- deals "Другая CRM": funnels (one success + one failed stage, 1–100 in-process stages, order ≤ 10000),
  contacts (`create.deal_contacts` takes a list, `update.deal_contacts` ONE contact at the top level of
  `params`; e-mails unique within a contact; lists given replace the stored ones), user fields, employees
  and `upload.deals_history` with every documented rule, all or nothing, times only moving forward across
  calls, generated intermediate stages flagged `is_generated`;
- chats, chat messages, offline messages (requests), visitors (`get.visitors`), sites, channels, tags,
  employees and their reports (date ranges ≤ 3 months, messages ≤ 30 days, filters on filterable columns,
  limit/offset); a report returns only its default columns unless `fields` names others, and an unknown
  column name is refused (`uis_columns.py` holds the docs' tables);
- notifications sent the way UIS's default templates shape them (POST JSON body or GET query string).

Validation errors are -32602 with `data = {"mnemonic", "field", "value"}`; `field` names a nested parameter
with dots and no array index (`deals.stage_ext_id`, `contacts.emails`: "Вложенные параметры отображаются
через разделитель точка", data_api/index.html), so a client cannot tell which row or contact was refused;
nothing of a refused call is stored and it costs no point.

Control routes (`/_sandbox/...`) drive scenarios, inject failures (including a call applied whose answer is
lost: `fail("applied")`, and a hung account: `fail("hang")`) and dump state; each has a Python method on
`UisSandbox` for tests. All date-times are the account's zone-less local time from `clock`.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tools.sandboxes.common import Faults, ServedApp, http_sender, json_response, read_json
from tools.sandboxes.uis_columns import (
    CHAT_MESSAGES_REPORT,
    CHATS_REPORT,
    DEALS_HISTORY,
    OFFLINE_MESSAGES_REPORT,
    Columns,
)

DATE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_TOKEN = "uis-sandbox-token"
MAX_UPLOAD_ROWS = 1000
MAX_CONTACTS = 1000
MAX_IN_PROCESS_STAGES = 100
MAX_STAGE_ORDER = 10000
SUCCESS_ORDER, FAILED_ORDER = 10010, 10020  # what UIS assigns to the closing stages
MAX_LIMIT, MAX_OFFSET = 10000, 100000
COMMUNICATION_TYPES = ("chat", "offline_message", "call", "goal", "email")
CHAT_STATUSES = ("new", "active", "lost", "succeed", "refused")
FORM_TYPES = ("standard", "custom", "facebook", "dataapi")
EVENTS = ("offline_message", "chat_finished", "lost_chat", "set_mark", "unset_mark")
_PHONE = re.compile(r"^\+?[1-9]\d{7,14}$")  # E.164; UIS's own examples omit the "+"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# The top-level `params` each method documents ("Параметры запроса" on its page; `access_token` and `user_id`
# are on every page). Anything else is refused with `unexpected_parameters`.
_LISTING = ("limit", "offset", "filter", "fields", "sort")
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "get.sales_funnel": _LISTING,  # ca_sales_funnel/get_sales_funnel
    "create.sales_funnel": ("ext_id", "name", "stages"),  # ca_sales_funnel/create_sales_funnel
    "update.sales_funnel": ("ext_id", "name"),
    "delete.sales_funnel": ("ext_id",),
    "create.sales_funnel_stages": ("sales_funnel_ext_id", "ext_id", "name", "order"),
    "update.sales_funnel_stages": ("sales_funnel_ext_id", "ext_id", "name", "order"),
    "delete.sales_funnel_stages": ("sales_funnel_ext_id", "ext_id"),
    "create.deal_employees": ("ext_id", "name"),  # ca_employee/create_deal_employees
    "get.deal_employees": _LISTING,  # ca_employee/get_deal_employees
    "create.deal_contacts": ("contacts",),  # ca_contact/create_deal_contacts: a list, ≤ 1000
    # ca_contact/update_deal_contacts: ONE contact, its fields at the top level (no `contacts` list)
    "update.deal_contacts": ("ext_id", "name", "created_date_time", "phone_numbers", "emails"),
    "get.deal_contacts": _LISTING,  # ca_contact/get_deal_contacts
    "create.deal_user_field": ("ext_id", "name", "data_type"),  # ca_deal/create_deal_user_field
    "get.deal_user_fields": _LISTING,
    "upload.deals_history": ("deals",),  # ca_deal/upload_deals_history
    "get.deals_history": _LISTING,  # ca_deal/get_deals_history
    "get.deals_in_processing": (),  # ca_deal/get_deals_processing
    "delete.deals": ("ext_id",),  # ca_deal/delete_deals
    "get.sites": _LISTING,
    "get.chat_channels": _LISTING,
    "get.tags": _LISTING,
    "get.employees": _LISTING,
    "get.chats_report": (*_LISTING, "date_from", "date_till"),  # report/get_chats_report
    "get.chat_messages_report": (*_LISTING, "chat_id", "chat_ids", "date_from", "date_till"),
    "get.offline_messages_report": (*_LISTING, "date_from", "date_till", "include_tech_offline_messages"),
    "set.tag_communications": ("communication_id", "communication_type", "tag_id"),
    "get.visitors": ("ids",),  # person/get_visitors
    "get.account": (),  # account/get_account: no component, no right (the cheapest proof of a token)
}

# data_api/components/ ("Права и компоненты"): the method works when ANY of its components is on
# ("You need at least on of the following components"). get.visitors: its page names «Data API для
# настройки»; that component's id is not published, `data_api_setup` stands for it here.
_DEALS = ("sales_funnel",)
_SITE = ("call_tracking", "consultant", "lead", "sitephone")
METHOD_COMPONENTS: dict[str, tuple[str, ...]] = {
    **{m: _DEALS for m in METHOD_PARAMS if m.endswith(("sales_funnel", "sales_funnel_stages"))},
    **{m: _DEALS for m in METHOD_PARAMS if "deal" in m},
    "get.sites": _SITE,
    "get.chats_report": _SITE,
    "get.chat_messages_report": ("consultant", "upload_chats"),
    "get.offline_messages_report": ("consultant", "lead", "upload_offline_messages"),
    "get.visitors": ("data_api_setup",),
}
COMPONENTS = frozenset(c for names in METHOD_COMPONENTS.values() for c in names) | {"upload_calls"}

Sender = Callable[[str, str, bytes | None, dict[str, str]], int]


class SandboxClock:
    """Account-local wall clock (Europe/Moscow by default) that tests and the local stack can move."""

    def __init__(self, now: datetime | None = None, tz: str = "Europe/Moscow") -> None:
        self._tz = ZoneInfo(tz)
        self._frozen = now
        self._offset = timedelta(0)

    def __call__(self) -> datetime:
        base = self._frozen or datetime.now(self._tz).replace(tzinfo=None)
        return (base + self._offset).replace(microsecond=0)

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)

    def set(self, now: datetime) -> None:
        self._frozen, self._offset = now, timedelta(0)


class RpcError(Exception):
    def __init__(
        self,
        code: int,
        mnemonic: str,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        params: Any = None,
    ) -> None:
        super().__init__(message)
        self.code, self.mnemonic, self.message = code, mnemonic, message
        self.field, self.value, self.params = field, value, params
        self.metadata: dict[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mnemonic": self.mnemonic}
        if self.metadata is not None:
            data["metadata"] = self.metadata
        if self.field is not None:
            data["field"] = self.field
        if self.value is not None:
            data["value"] = self.value
        if self.params is not None:
            data["params"] = self.params
        return data


def _invalid(field: str, message: str, value: Any = None, params: Any = None) -> RpcError:
    return RpcError(-32602, "invalid_parameter_value", message, field=field, value=value, params=params)


def _missing(field: str, params: Any = None) -> RpcError:
    return RpcError(
        -32602, "required_parameter_missed", f"Required parameter {field} is missed", field=field, params=params
    )


def _not_found(field: str, value: Any, params: Any = None) -> RpcError:
    return RpcError(
        -32602, "entity_not_found", f"Entity {field}={value} not found", field=field, value=value, params=params
    )


def _duplicate(field: str, value: Any, params: Any = None) -> RpcError:
    return RpcError(
        -32602, "duplicate_entity", f"Entity {field}={value} already exists", field=field, value=value, params=params
    )


def _unexpected(field: str, value: Any = None) -> RpcError:
    # data_api/index.html, "Список ошибок общих для всех методов": a parameter the method's JSON structure does
    # not provide for, or a column named for sorting, filtering or `fields` that does not exist
    return RpcError(-32602, "unexpected_parameters", "Unexpected method parameter(s)", field=field, value=value)


def _fmt(value: datetime) -> str:
    return value.strftime(DATE_TIME_FORMAT)


def _parse_dt(value: Any, field: str, params: Any = None) -> datetime:
    if not isinstance(value, str):
        raise RpcError(
            -32602,
            "invalid_date_time",
            f"{field} must be 'YYYY-MM-DD hh:mm:ss'",
            field=field,
            value=value,
            params=params,
        )
    try:
        return datetime.strptime(value, DATE_TIME_FORMAT)
    except ValueError:
        raise RpcError(
            -32602,
            "invalid_date_time",
            f"{field} must be 'YYYY-MM-DD hh:mm:ss'",
            field=field,
            value=value,
            params=params,
        ) from None


def _add_months(value: datetime, months: int) -> datetime:
    month = value.month - 1 + months
    year, month = value.year + month // 12, month % 12 + 1
    days = [
        31,
        29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month - 1]
    return value.replace(year=year, month=month, day=min(value.day, days))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _require(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) in (None, ""):
            raise _missing(name)


# --- filters and paging (shared by every get.* method) -----------------------------------------
def _match(row: dict[str, Any], flt: Any, columns: Columns | None, path: str = "filter") -> bool:
    """data_api/index.html, "Критерии фильтрации": a simple filter or a tree of them (`filters` + `condition`)."""
    if not isinstance(flt, dict):
        raise _invalid(path, "filter must be an object", flt)
    if "filters" in flt:
        items = flt["filters"]
        condition = flt.get("condition", "and")
        if not isinstance(items, list) or condition not in ("and", "or"):
            raise _invalid(path, "filter tree needs a list of filters and condition and|or", flt)
        results = [_match(row, item, columns, f"{path}.filters") for item in items]
        return all(results) if condition == "and" else any(results)
    field, op, expected = flt.get("field"), flt.get("operator"), flt.get("value")
    if columns is not None:
        if field not in columns:
            raise _unexpected(f"{path}.field", field)
        if not columns[field][1]:
            # the column's "Фильтрация" is not "да" (data_api/index.html: `filter_prohibited`)
            raise RpcError(
                -32602, "filter_prohibited", "Filter by parameter is prohibited", field=f"{path}.field", value=field
            )
    elif field not in row:
        raise _unexpected(f"{path}.field", field)
    actual = row.get(field)
    try:
        if op == "=":
            return bool(actual == expected)
        if op == "!=":
            return bool(actual != expected)
        if op in ("in", "not_in"):
            if not isinstance(expected, list):
                raise _invalid(f"{path}.value", "in/not_in need a list", expected)
            return (actual in expected) == (op == "in")
        if op in ("like", "ilike"):
            needle = str(expected).strip("%")
            return needle.lower() in str(actual or "").lower()
        if actual is None:
            return False
        if op == ">":
            return bool(actual > expected)
        if op == ">=":
            return bool(actual >= expected)
        if op == "<":
            return bool(actual < expected)
        if op == "<=":
            return bool(actual <= expected)
    except TypeError:
        raise _invalid(f"{path}.value", f"Value does not compare with {field}", expected) from None
    raise _invalid(f"{path}.operator", f"Unknown operator {op}", op)


def _listing(
    rows: Iterable[dict[str, Any]], params: dict[str, Any], columns: Columns | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Filter, sort, page and project rows.

    With `columns` (a report's documented table) the reply holds only the default columns unless `fields`
    names others, and a name the table lacks is refused (data_api/index.html, "Представление возвращаемых
    данных": "Если примитив fields не используется, то в выводе показываются все поля по умолчанию").
    Without a table every column is returned (methods whose pages have no "Ответ по умолчанию" column).
    """
    rows = list(rows)
    fields = params.get("fields")
    if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
        raise _invalid("fields", "fields must be a list of column names", fields)
    if fields:
        known = columns if columns is not None else (rows[0] if rows else None)
        unknown = [f for f in fields if known is not None and f not in known]
        if unknown:
            raise _unexpected("fields", unknown)
    if params.get("filter"):
        if columns is not None:
            # the filter is judged against the method's columns even when no row would be compared
            _match(dict.fromkeys(columns), params["filter"], columns)
        rows = [row for row in rows if _match(row, params["filter"], columns)]
    for sort in reversed(params.get("sort") or []):
        key: str = sort.get("field")
        if columns is not None and key not in columns:
            raise _unexpected("sort.field", key)
        rows.sort(key=lambda r: (r.get(key) is None, r.get(key)), reverse=sort.get("order") == "desc")
    limit, offset = params.get("limit", 1000), params.get("offset", 0)
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise _invalid("limit", f"limit must be 1..{MAX_LIMIT}", limit)
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise _invalid("offset", f"offset must be 0..{MAX_OFFSET}", offset)
    page = rows[offset : offset + limit]
    if fields:
        page = [{f: row.get(f) for f in fields} for row in page]
    elif columns is not None:
        page = [{f: row.get(f) for f, (default, _) in columns.items() if default} for row in page]
    return copy.deepcopy(page), len(rows)


def _report_range(params: dict[str, Any], *, max_days: int | None = None) -> tuple[datetime, datetime]:
    _require(params, "date_from", "date_till")
    start, end = _parse_dt(params["date_from"], "date_from"), _parse_dt(params["date_till"], "date_till")
    if end < start:
        raise _invalid("date_till", "date_till is before date_from", params["date_till"])
    limit = start + timedelta(days=max_days) if max_days else _add_months(start, 3)
    if end > limit:
        raise RpcError(
            -32602,
            "date_interval_limit_reached",
            f"The interval between date_from and date_till exceeds {max_days or 90} days"
            if max_days
            else "The interval between date_from and date_till exceeds 3 months",
            field="date_till",
            value=params["date_till"],
        )
    return start, end


@dataclass
class _Failure:
    count: int
    # "limit_exceeded" | "http" | "error" | "applied" (the call is applied, its answer lost) | "hang"
    kind: str
    method: str | None = None
    http_status: int = 500
    code: int = -32008
    mnemonic: str = "component_disabled"
    message: str = "Injected failure"
    seconds: float = 0.0  # "hang": how long each call sleeps before it is answered


class UisSandbox:
    """In-memory UIS account. `app` is the WSGI app; control routes live under `/_sandbox/`."""

    def __init__(
        self,
        *,
        access_tokens: Iterable[str] = (DEFAULT_TOKEN,),
        minute_limit: int = 200,
        day_limit: int = 3500,
        clock: Callable[[], datetime] | None = None,
        sender: Sender | None = None,
        seed: bool = True,
        limits_in_errors: bool = True,
        timezone: str = "Europe/Moscow",
    ) -> None:
        self.clock: Callable[[], datetime] = clock or SandboxClock()
        self.sender: Sender = sender or http_sender()
        self.minute_limit, self.day_limit = minute_limit, day_limit
        # whether -32029 errors repeat the budget in `data.metadata.limits` (clients must cope either way)
        self.limits_in_errors = limits_in_errors
        # the account's zone as get.account reports it (IANA); the clock runs in it
        self.timezone = timezone
        self._lock = threading.RLock()
        self._local = threading.local()
        self._released = threading.Event()  # set by release(): hung calls answer at once
        self.tokens: dict[str, str] = {token: "valid" for token in access_tokens}
        self.reset(seed=seed)
        self._methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "get.sales_funnel": self._get_sales_funnel,
            "create.sales_funnel": self._create_sales_funnel,
            "update.sales_funnel": self._update_sales_funnel,
            "delete.sales_funnel": self._delete_sales_funnel,
            "create.sales_funnel_stages": self._create_stage,
            "update.sales_funnel_stages": self._update_stage,
            "delete.sales_funnel_stages": self._delete_stage,
            "create.deal_employees": self._create_deal_employee,
            "get.deal_employees": lambda p: _listing(self.deal_employees.values(), p),
            "create.deal_contacts": self._create_contacts,
            "update.deal_contacts": self._update_contact,
            "get.deal_contacts": lambda p: _listing(self.contacts.values(), p),
            "create.deal_user_field": self._create_user_field,
            "get.deal_user_fields": self._get_user_fields,
            "upload.deals_history": self._upload_deals_history,
            "get.deals_history": self._get_deals_history,
            "get.deals_in_processing": lambda p: {"count": 0},  # processed synchronously here
            "delete.deals": self._delete_deal,
            "get.sites": lambda p: _listing(self.sites.values(), p),
            "get.chat_channels": lambda p: _listing(self.channels.values(), p),
            "get.tags": lambda p: _listing(self.tags.values(), p),
            "get.employees": lambda p: _listing(self.employees.values(), p),
            "get.chats_report": self._chats_report,
            "get.chat_messages_report": self._chat_messages_report,
            "get.offline_messages_report": self._offline_messages_report,
            "set.tag_communications": self._set_tag_communications,
            "get.visitors": self._get_visitors,
            # account/get_account's JSON answer: `data` is a list holding the account
            "get.account": lambda p: [{"app_id": 100500, "name": "Школа английского", "timezone": self.timezone}],
        }
        self._url_map = Map(
            [
                Rule("/v2.0", methods=["POST"], endpoint="rpc"),
                Rule("/_sandbox/state", methods=["GET"], endpoint="state"),
                Rule("/_sandbox/reset", methods=["POST"], endpoint="reset"),
                Rule("/_sandbox/fail", methods=["POST"], endpoint="fail"),
                Rule("/_sandbox/faults", methods=["POST"], endpoint="faults"),
                Rule("/_sandbox/tokens", methods=["POST"], endpoint="tokens"),
                Rule("/_sandbox/components", methods=["POST"], endpoint="components"),
                Rule("/_sandbox/clock", methods=["POST"], endpoint="clock"),
                Rule("/_sandbox/notifications", methods=["POST"], endpoint="notifications"),
                Rule("/_sandbox/chats", methods=["POST"], endpoint="start_chat"),
                Rule("/_sandbox/chats/<int:chat_id>/messages", methods=["POST"], endpoint="message"),
                Rule("/_sandbox/chats/<int:chat_id>/take", methods=["POST"], endpoint="take"),
                Rule("/_sandbox/chats/<int:chat_id>/finish", methods=["POST"], endpoint="finish"),
                Rule("/_sandbox/chats/<int:chat_id>/lose", methods=["POST"], endpoint="lose"),
                Rule("/_sandbox/chats/<int:chat_id>/tags", methods=["POST", "DELETE"], endpoint="tags"),
                Rule("/_sandbox/requests", methods=["POST"], endpoint="request"),
            ]
        )

    # ==============================================================================================
    # state
    # ==============================================================================================
    def reset(self, *, seed: bool = True) -> None:
        with self._lock:
            self.funnels: dict[str, dict[str, Any]] = {}
            self.contacts: dict[str, dict[str, Any]] = {}
            self.deal_employees: dict[str, dict[str, Any]] = {}
            self.user_fields: dict[str, dict[str, Any]] = {}
            self.deals: dict[str, dict[str, Any]] = {}
            self.sites: dict[int, dict[str, Any]] = {}
            self.channels: dict[int, dict[str, Any]] = {}
            self.tags: dict[int, dict[str, Any]] = {}
            self.employees: dict[int, dict[str, Any]] = {}
            self.chats: dict[int, dict[str, Any]] = {}
            self.requests: dict[int, dict[str, Any]] = {}
            # person/get_visitors: what UIS knows of a visitor (name, phones, e-mails, messenger usernames)
            self.visitors: dict[int, dict[str, Any]] = {}
            self.components: set[str] = set(COMPONENTS)
            self.notifications: dict[str, dict[str, Any]] = {}
            self.deliveries: list[dict[str, Any]] = []
            self.rpc_log: list[dict[str, Any]] = []  # successful calls (each cost a point)
            self.refused: list[dict[str, Any]] = []  # refused calls (free): method and mnemonic
            self.rows_received: list[dict[str, Any]] = []
            self._failures: list[_Failure] = []
            # random faults for chaos runs (`configure_faults`) and deals this account refuses
            self.faults = Faults()
            self.rejected_deals: set[str] = set()
            self._minute: tuple[int, int] = (-1, 0)  # (window index, points used)
            self._day: tuple[date, int] = (date.min, 0)
            self.points_spent = 0
            self._chat_ids = itertools.count(5_000_001)
            self._message_ids = itertools.count(80_000_001)
            self._request_ids = itertools.count(700_001)
            self._communication_ids = itertools.count(90_000_001)
            self._visitor_ids = itertools.count(3_000_001)
            if seed:
                self._seed()

    def _seed(self) -> None:
        self.sites = {
            17001: {"id": 17001, "domain_name": "school.ru", "name": "Школа английского — основной сайт"},
            17002: {"id": 17002, "domain_name": "camp.school.ru", "name": "Летний лагерь"},
        }
        self.channels = {
            301: {"id": 301, "name": "Виджет school.ru", "type": "comagic", "status": "active", "site_id": 17001},
            302: {"id": 302, "name": "WhatsApp школы", "type": "whatsapp", "status": "active", "site_id": None},
            303: {"id": 303, "name": "Telegram @school_bot", "type": "telegram", "status": "active", "site_id": None},
            304: {"id": 304, "name": "Виджет camp.school.ru", "type": "comagic", "status": "active", "site_id": 17002},
        }
        for channel in self.channels.values():
            channel.update(
                group_id=None, group_name=None, employee_id=None, employee_full_name=None, channel_external_id=None
            )
        created = "2024-01-15 10:00:00"
        self.tags = {
            tag_id: {
                "id": tag_id,
                "name": name,
                "color": "#EBEBEB",
                "state": "enabled",
                "rating": 0,
                "is_auto": False,
                "condition": None,
                "is_system": False,
                "creation_datetime": created,
            }
            for tag_id, name in ((501, "Лид"), (502, "Спам"), (503, "Пробное"), (504, "Целевой"))
        }
        self.employees = {
            11: {
                "id": 11,
                "full_name": "Анна Смирнова",
                "first_name": "Анна",
                "last_name": "Смирнова",
                "status": "available",
                "emails": ["anna@school.ru"],
            },
            12: {
                "id": 12,
                "full_name": "Игорь Петров",
                "first_name": "Игорь",
                "last_name": "Петров",
                "status": "available",
                "emails": ["igor@school.ru"],
            },
        }
        # a little history, two days back, so reports are not empty in a fresh demo
        past = self.clock() - timedelta(days=2)
        chat = self._new_chat(
            {
                "site_id": 17001,
                "chat_channel_id": 301,
                "visitor_name": "Мария",
                "visitor_phone_number": "79161234567",
                "message": "Сколько стоит пробный урок?",
            },
            at=past,
        )
        self._take(chat, {"employee_id": 11}, at=past + timedelta(minutes=1))
        self._add_message(
            chat, {"source": "operator", "text": "Пробный урок бесплатный!"}, at=past + timedelta(minutes=2)
        )
        self._close(chat, "succeed", at=past + timedelta(minutes=5))
        self._new_request(
            {
                "site_id": 17001,
                "visitor_name": "Олег",
                "visitor_phone_number": "79031112233",
                "visitor_email": "oleg@example.com",
                "text": "Перезвоните, пожалуйста",
            },
            at=past + timedelta(hours=1),
        )

    def state(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(
                {
                    "now": _fmt(self.clock()),
                    "funnels": list(self.funnels.values()),
                    "contacts": list(self.contacts.values()),
                    "deal_employees": list(self.deal_employees.values()),
                    "user_fields": list(self.user_fields.values()),
                    "deals": list(self.deals.values()),
                    "sites": list(self.sites.values()),
                    "chat_channels": list(self.channels.values()),
                    "tags": list(self.tags.values()),
                    "employees": list(self.employees.values()),
                    "chats": list(self.chats.values()),
                    "requests": list(self.requests.values()),
                    "visitors": list(self.visitors.values()),
                    "components": sorted(self.components),
                    "notifications": self.notifications,
                    "deliveries": self.deliveries,
                    "points_spent": self.points_spent,
                    "rows_received": self.rows_received,
                    "limits": self._limits(self.clock()),
                }
            )

    # ==============================================================================================
    # control: tokens, failures, notification targets
    # ==============================================================================================
    def set_token(self, token: str, state: str = "valid") -> None:
        """`valid`, or the mnemonic UIS would answer: `access_token_expired|blocked|invalid`."""
        with self._lock:
            self.tokens[token] = state

    def set_components(self, enabled: Iterable[str] | None = None, *, disabled: Iterable[str] = ()) -> None:
        """The account's switched-on components (data_api/components/): `enabled` replaces the set (None: all),
        `disabled` switches those off."""
        with self._lock:
            self.components = set(COMPONENTS if enabled is None else enabled) - set(disabled)

    def fail(
        self,
        kind: str = "limit_exceeded",
        *,
        count: int = 1,
        method: str | None = None,
        http_status: int = 500,
        code: int = -32603,
        mnemonic: str = "internal_error",
        message: str = "Injected failure",
        seconds: float = 20.0,
    ) -> None:
        """Make the next `count` calls (optionally of one method) fail: `limit_exceeded`, `http`, `error`, or
        `applied` — the call is carried out (and charged) but the answer is lost: HTTP `http_status` with no
        body, as a gateway timeout or a dropped connection looks to the client; or `hang`: each sleeps
        `seconds` before it is answered (a hung account, for isolation tests)."""
        if kind not in ("limit_exceeded", "http", "error", "applied", "hang"):
            raise ValueError(f"unknown failure kind {kind}")
        with self._lock:
            self._released.clear()
            self._failures.append(_Failure(count, kind, method, http_status, code, mnemonic, message, seconds))

    def release(self) -> None:
        """Answer hung calls now and inject no more hangs (a test or the local stack stopping)."""
        with self._lock:
            self._failures = [f for f in self._failures if f.kind != "hang"]
        self._released.set()

    def _hang(self, body: Any) -> None:
        """An injected hang sleeps outside the lock: one hung account must not stall another's calls."""
        method = body.get("method") if isinstance(body, dict) else None
        with self._lock:
            hang = next((f for f in self._failures if f.kind == "hang" and f.method in (None, method)), None)
            if hang is None:
                return
            hang.count -= 1
            self._failures = [f for f in self._failures if f.count > 0]
        self._released.wait(hang.seconds)

    def configure_faults(
        self,
        rates: dict[str, float],
        *,
        seed: int = 0,
        caps: dict[str, int] | None = None,
        reject_deals: Iterable[str] = (),
        each_within: int = 0,
    ) -> None:
        """Random faults per Data API call, each kind switchable by its rate (0 = off):

        - `limit_exceeded`: -32029 with the budget in `data.metadata.limits`, as when other API users of the
          account (its own integrations, reports) spend the minute's points;
        - `500`, `502`, `503`: the API's front answers an HTTP error without a JSON-RPC body;
        - `applied_504` (upload.deals_history only): the rows are stored, then the gateway answers 504, so a
          re-send must not double them (UIS keeps each transition it receives).
        `reject_deals`: ext_ids this account refuses in `upload.deals_history` with the documented -32602 row
        error (a real account refuses a row, e.g., whose stage a manager deleted in the cabinet).
        `each_within`: every kind switched on happens at least once within that many eligible calls.
        """
        with self._lock:
            self.faults.configure(dict(rates), seed=seed, caps=caps, each_within=each_within)
            self.rejected_deals = set(reject_deals)

    def configure_notification(
        self,
        event: str,
        url: str | None,
        *,
        method: str = "POST",
        stringify_ids: bool = False,
        tag_ids_as_string: bool = False,
        messages_as_list: bool = False,
        extra_params: Iterable[str] = (),
        name: str | None = None,
    ) -> None:
        """Point one event's notification at `url` (None switches it off), like the cabinet's form."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event}; known: {EVENTS}")
        if method not in ("POST", "GET"):
            raise ValueError("method must be POST or GET")
        with self._lock:
            if url is None:
                self.notifications.pop(event, None)
                return
            self.notifications[event] = {
                "event": event,
                "url": url,
                "method": method,
                "stringify_ids": stringify_ids,
                "tag_ids_as_string": tag_ids_as_string,
                "messages_as_list": messages_as_list,
                "extra_params": list(extra_params),
                "name": name or f"Sandbox: {event}",
            }

    # ==============================================================================================
    # JSON-RPC
    # ==============================================================================================
    def rpc(self, body: Any) -> tuple[int, Any]:
        """Handle one decoded request body; return (HTTP status, reply body)."""
        request_id = body.get("id") if isinstance(body, dict) else None
        self._hang(body)
        try:
            with self._lock:
                reply = {"jsonrpc": "2.0", "id": request_id, "result": self._rpc(body)}
        except _HttpFailure as exc:
            return exc.status, None
        except RpcError as exc:
            self._pending.clear()
            method = body.get("method") if isinstance(body, dict) else None
            with self._lock:
                self.refused.append({"method": method, "mnemonic": exc.mnemonic, "field": exc.field})
            return 200, {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": exc.code, "message": exc.message, "data": exc.data()},
            }
        self._flush()  # notifications caused by the call (set.tag_communications), outside the lock
        return 200, reply

    def _rpc(self, body: Any) -> dict[str, Any]:
        if isinstance(body, list):
            raise RpcError(-32600, "invalid_request", "Batch requests are not supported")
        if not isinstance(body, dict) or body.get("jsonrpc") != "2.0" or not isinstance(body.get("method"), str):
            raise RpcError(-32600, "invalid_request", "Invalid JSON-RPC request")
        if body.get("id") is None:
            raise RpcError(-32600, "invalid_request", "Request id is required")
        method = body["method"]
        handler = self._methods.get(method)
        if handler is None:
            raise RpcError(-32601, "method_not_found", f"Method {method} not found")
        params = body.get("params")
        if not isinstance(params, dict):
            raise _missing("params")
        token = params.get("access_token")
        if not token:
            raise _missing("access_token")
        token_state = self.tokens.get(token, "access_token_invalid")
        if token_state != "valid":
            raise RpcError(-32001, token_state, "Authentication failed")
        now = self.clock()
        failure = self._injected_failure(method, now) or self._random_fault(method, now)
        self._component_check(method)
        self._spend_check(now)
        params = {k: v for k, v in params.items() if k not in ("access_token", "user_id")}
        unexpected = [k for k in params if k not in METHOD_PARAMS.get(method, ())]
        if unexpected:
            raise _unexpected(unexpected[0], params[unexpected[0]])
        outcome = handler(params)
        # every successful call costs one point (data_api/index.html: "Баллы списываются только за успешные")
        self._charge(now)
        self.rpc_log.append({"method": method, "at": _fmt(now)})
        if failure is not None:
            # carried out and charged, but the answer never reaches the client
            raise _HttpFailure(failure.http_status)
        metadata: dict[str, Any] = {"limits": self._limits(now)}
        if isinstance(outcome, tuple):
            data, metadata["total_items"] = outcome
        else:
            data = outcome
        return {"data": data, "metadata": metadata}

    def _component_check(self, method: str) -> None:
        needed = METHOD_COMPONENTS.get(method, ())
        if needed and not self.components.intersection(needed):
            names = ",".join(needed)
            # data_api/index.html: -32008 `method_component_disabled`, text verbatim (typo "on" included)
            raise RpcError(
                -32008,
                "method_component_disabled",
                f"You need at least on of the following components to access this method: {names}",
                params={"components": names},
            )

    def _random_fault(self, method: str, now: datetime) -> _Failure | None:
        """A chaos run's seeded fault (`configure_faults`): raised now, or an upload applied whose answer is lost."""
        applied = ("applied_504",) if method == "upload.deals_history" else ()
        fault = self.faults.draw(("limit_exceeded", "500", "502", "503", *applied))
        if fault == "limit_exceeded":
            raise self._limit_error(now, exhausted="minute")
        if fault in ("500", "502", "503"):
            raise _HttpFailure(int(fault))
        return _Failure(1, "applied", method, 504) if fault == "applied_504" else None

    def _injected_failure(self, method: str, now: datetime) -> _Failure | None:
        """Raise the next injected failure for `method`; an `applied` one is returned to end the call later."""
        for failure in self._failures:
            if failure.kind != "hang" and failure.method in (None, method) and failure.count > 0:
                failure.count -= 1
                self._failures = [f for f in self._failures if f.count > 0]
                if failure.kind == "applied":
                    return failure
                if failure.kind == "http":
                    raise _HttpFailure(failure.http_status)
                if failure.kind == "limit_exceeded":
                    raise self._limit_error(now, exhausted="minute")
                raise RpcError(failure.code, failure.mnemonic, failure.message)
        return None

    # --- limits ----------------------------------------------------------------------------------
    def _windows(self, now: datetime) -> tuple[int, int, int, int]:
        """(minute points used, seconds to minute reset, day points used, seconds to day reset)."""
        stamp = now.timestamp()
        minute_index = math.floor(stamp / 60)
        minute_used = self._minute[1] if self._minute[0] == minute_index else 0
        day_used = self._day[1] if self._day[0] == now.date() else 0
        minute_reset = max(1, math.ceil((minute_index + 1) * 60 - stamp))
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time())
        day_reset = max(1, math.ceil((midnight - now).total_seconds()))
        return minute_used, minute_reset, day_used, day_reset

    def _limits(self, now: datetime, *, exhausted: str | None = None) -> dict[str, int]:
        minute_used, minute_reset, day_used, day_reset = self._windows(now)
        return {
            "day_limit": self.day_limit,
            "day_remaining": 0 if exhausted == "day" else max(self.day_limit - day_used, 0),
            "day_reset": day_reset,
            "minute_limit": self.minute_limit,
            "minute_remaining": 0 if exhausted == "minute" else max(self.minute_limit - minute_used, 0),
            "minute_reset": minute_reset,
        }

    def _spend_check(self, now: datetime) -> None:
        minute_used, _, day_used, _ = self._windows(now)
        if day_used >= self.day_limit:
            raise self._limit_error(now, exhausted="day")
        if minute_used >= self.minute_limit:
            raise self._limit_error(now, exhausted="minute")

    def _limit_error(self, now: datetime, *, exhausted: str) -> RpcError:
        error = RpcError(-32029, "limit_exceeded", f"The {exhausted} limit of API points is exceeded")
        if self.limits_in_errors:
            error.metadata = {"limits": self._limits(now, exhausted=exhausted)}
        return error

    def _charge(self, now: datetime) -> None:
        minute_used, _, day_used, _ = self._windows(now)
        self._minute = (math.floor(now.timestamp() / 60), minute_used + 1)
        self._day = (now.date(), day_used + 1)
        self.points_spent += 1

    # ==============================================================================================
    # deals: funnels
    # ==============================================================================================
    def _funnel(self, ext_id: Any, field: str = "sales_funnel_ext_id", params: Any = None) -> dict[str, Any]:
        funnel = self.funnels.get(ext_id) if isinstance(ext_id, str) else None
        if funnel is None:
            raise _not_found(field, ext_id, params)
        return funnel

    @staticmethod
    def _stage_row(stage: dict[str, Any]) -> dict[str, Any]:
        return {
            "stage_name": stage["name"],
            "stage_ext_id": stage["ext_id"],
            "stage_status": stage["status"],
            "stage_order": stage["order"],
        }

    def _get_sales_funnel(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        rows = [
            {
                "ext_id": f["ext_id"],
                "name": f["name"],
                "stages": [self._stage_row(s) for s in sorted(f["stages"].values(), key=lambda s: s["order"])],
            }
            for f in self.funnels.values()
        ]
        return _listing(rows, params)

    @staticmethod
    def _check_order(order: Any, field: str) -> None:
        if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= MAX_STAGE_ORDER:
            raise _invalid(field, f"order must be an integer 1..{MAX_STAGE_ORDER}", order)

    def _create_sales_funnel(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "ext_id", "name", "stages")
        ext_id, stages = params["ext_id"], params["stages"]
        if ext_id in self.funnels:
            raise _duplicate("ext_id", ext_id)
        if not isinstance(stages, dict):
            raise _invalid("stages", "stages must be an object with success, failed and in_process", stages)
        built: dict[str, dict[str, Any]] = {}

        def add(stage: Any, field: str, status: str, order: int | None) -> None:
            if not isinstance(stage, dict):
                # a list here is two closing stages of one kind: UIS allows exactly one
                raise _invalid(field, f"exactly one {status} stage is required", stage)
            for name in ("ext_id", "name"):
                if stage.get(name) in (None, ""):
                    raise _missing(f"{field}.{name}")
            if order is None:
                self._check_order(stage.get("order"), f"{field}.order")
                order = stage["order"]
            if stage["ext_id"] in built:
                raise _duplicate(f"{field}.ext_id", stage["ext_id"])
            built[stage["ext_id"]] = {
                "ext_id": stage["ext_id"],
                "name": stage["name"],
                "status": status,
                "order": order,
            }

        for status in ("success", "failed"):
            if stages.get(status) is None:
                raise _missing(f"stages.{status}")
        in_process = stages.get("in_process")
        if not isinstance(in_process, list) or not 1 <= len(in_process) <= MAX_IN_PROCESS_STAGES:
            raise _invalid(
                "stages.in_process",
                f"1..{MAX_IN_PROCESS_STAGES} in-process stages are required",
                len(in_process) if isinstance(in_process, list) else in_process,
            )
        for stage in in_process:
            add(stage, "stages.in_process", "in_process", None)
        add(stages["success"], "stages.success", "success", SUCCESS_ORDER)
        add(stages["failed"], "stages.failed", "failed", FAILED_ORDER)
        self.funnels[ext_id] = {"ext_id": ext_id, "name": params["name"], "stages": built}
        return {"ext_id": ext_id}

    def _update_sales_funnel(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "ext_id", "name")
        self._funnel(params["ext_id"], "ext_id")["name"] = params["name"]
        return {}

    def _delete_sales_funnel(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "ext_id")
        self._funnel(params["ext_id"], "ext_id")
        if any(d["sales_funnel_ext_id"] == params["ext_id"] for d in self.deals.values()):
            raise _invalid("ext_id", "The sales funnel has deals and can not be deleted", params["ext_id"])
        del self.funnels[params["ext_id"]]
        return {}

    def _create_stage(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "sales_funnel_ext_id", "ext_id", "name", "order")
        funnel = self._funnel(params["sales_funnel_ext_id"])
        if params["ext_id"] in funnel["stages"]:
            raise _duplicate("ext_id", params["ext_id"])
        self._check_order(params["order"], "order")
        if sum(s["status"] == "in_process" for s in funnel["stages"].values()) >= MAX_IN_PROCESS_STAGES:
            raise _invalid("ext_id", f"A funnel holds at most {MAX_IN_PROCESS_STAGES} in-process stages")
        funnel["stages"][params["ext_id"]] = {
            "ext_id": params["ext_id"],
            "name": params["name"],
            "status": "in_process",
            "order": params["order"],
        }
        return {"ext_id": params["ext_id"]}

    def _stage(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        _require(params, "sales_funnel_ext_id", "ext_id")
        funnel = self._funnel(params["sales_funnel_ext_id"])
        stage = funnel["stages"].get(params["ext_id"])
        if stage is None:
            raise _not_found("ext_id", params["ext_id"])
        return funnel, stage

    def _update_stage(self, params: dict[str, Any]) -> dict[str, Any]:
        _, stage = self._stage(params)
        if params.get("name"):
            stage["name"] = params["name"]
        # order applies to in-process stages only; UIS ignores it for the closing ones
        if params.get("order") is not None and stage["status"] == "in_process":
            self._check_order(params["order"], "order")
            stage["order"] = params["order"]
        return {}

    def _delete_stage(self, params: dict[str, Any]) -> dict[str, Any]:
        funnel, stage = self._stage(params)
        if stage["status"] != "in_process":
            raise _invalid("ext_id", "The success and failed stages can not be deleted", stage["ext_id"])
        if sum(s["status"] == "in_process" for s in funnel["stages"].values()) <= 1:
            raise _invalid("ext_id", "A funnel needs at least one in-process stage", stage["ext_id"])
        used = any(
            step["stage_ext_id"] == stage["ext_id"]
            for d in self.deals.values()
            if d["sales_funnel_ext_id"] == funnel["ext_id"]
            for step in d["path"]
        )
        if used:
            raise _invalid("ext_id", "The stage is used by deals", stage["ext_id"])
        del funnel["stages"][stage["ext_id"]]
        return {}

    # ==============================================================================================
    # deals: employees, contacts, user fields
    # ==============================================================================================
    def _create_deal_employee(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "ext_id", "name")
        if params["ext_id"] in self.deal_employees:
            raise _duplicate("ext_id", params["ext_id"])
        self.deal_employees[params["ext_id"]] = {"ext_id": params["ext_id"], "name": params["name"]}
        return {"ext_id": params["ext_id"]}

    _CONTACT_KEYS = ("ext_id", "name", "created_date_time", "phone_numbers", "emails")

    def _contact_values(self, contact: dict[str, Any], field: str, *, creating: bool) -> dict[str, Any]:
        """One contact's values. `field` prefixes error names: "contacts" on create (no index: data_api/index.html),
        "" on update, whose fields sit at the top level of `params`."""
        path = (lambda name: f"{field}.{name}") if field else (lambda name: name)
        unexpected = [k for k in contact if k not in self._CONTACT_KEYS]
        if unexpected:
            raise _unexpected(path(unexpected[0]), contact[unexpected[0]])
        if creating:
            for name in ("ext_id", "name"):
                if contact.get(name) in (None, ""):
                    raise _missing(path(name))
        values: dict[str, Any] = {}
        if "name" in contact:
            values["name"] = contact["name"]
        if contact.get("created_date_time") is not None:
            _parse_dt(contact["created_date_time"], path("created_date_time"))
            values["created_date_time"] = contact["created_date_time"]
        elif creating:
            # ca_contact/create_deal_contacts: "Если параметр не передан, будет проставлена дата и время вызова"
            values["created_date_time"] = _fmt(self.clock())
        for key, pattern, what in (("phone_numbers", _PHONE, "E.164 phone numbers"), ("emails", _EMAIL, "e-mails")):
            if key not in contact:
                continue
            items = contact[key]
            if not isinstance(items, list):
                raise _invalid(path(key), f"{key} must be a list", items)
            for item in items:
                if not isinstance(item, str) or not pattern.match(item):
                    raise _invalid(path(key), f"{key} must hold {what}", item)
            if key == "emails":
                # ca_contact/create_deal_contacts: "E-mail должен быть уникальным в списке" (case: assumed insensitive)
                lowered = [item.lower() for item in items]
                repeated = next((item for i, item in enumerate(items) if lowered.index(item.lower()) != i), None)
                if repeated is not None:
                    raise _invalid(path(key), "E-mail must be unique in the list", repeated)
            values[key] = list(items)
        return values

    def _create_contacts(self, params: dict[str, Any]) -> dict[str, Any]:
        """ca_contact/create_deal_contacts: `contacts`, a list of ≤ 1000; all or nothing."""
        _require(params, "contacts")
        contacts = params["contacts"]
        if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
            raise _invalid("contacts", "contacts must be a list of objects")
        if len(contacts) > MAX_CONTACTS:
            raise RpcError(
                -32602,
                "data_limit_exceeded",
                f"At most {MAX_CONTACTS} contacts per call",
                field="contacts",
                value=len(contacts),
            )
        staged: dict[str, dict[str, Any]] = {}
        for contact in contacts:  # validate all before storing any: the call is atomic
            values = self._contact_values(contact, "contacts", creating=True)
            ext_id = contact["ext_id"]
            if ext_id in self.contacts or ext_id in staged:
                raise _duplicate("contacts.ext_id", ext_id)
            staged[ext_id] = {"ext_id": ext_id, "name": None, "phone_numbers": [], "emails": [], **values}
        self.contacts.update(staged)
        return {}

    def _update_contact(self, params: dict[str, Any]) -> dict[str, Any]:
        """ca_contact/update_deal_contacts: ONE contact, `ext_id` and its fields at the top level of `params`;
        the lists given replace the stored ones whole ("Необходимо передавать актуальный список")."""
        _require(params, "ext_id")
        if params["ext_id"] not in self.contacts:
            raise _not_found("ext_id", params["ext_id"])
        self.contacts[params["ext_id"]].update(self._contact_values(params, "", creating=False))
        return {}

    def _create_user_field(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "ext_id", "name", "data_type")
        if params["data_type"] not in ("string", "numeric"):
            raise _invalid("data_type", "data_type must be string or numeric", params["data_type"])
        if params["ext_id"] in self.user_fields:
            raise _duplicate("ext_id", params["ext_id"])
        self.user_fields[params["ext_id"]] = {
            "name": params["name"],
            "ext_id": params["ext_id"],
            "data_type": params["data_type"],
        }
        return {"ext_id": params["ext_id"]}

    def _get_user_fields(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        return _listing(self.user_fields.values(), params)

    # ==============================================================================================
    # deals: upload.deals_history
    # ==============================================================================================
    _REQUIRED_ROW = (
        "ext_id",
        "name",
        "created_date_time",
        "modified_stage_date_time",
        "sales_funnel_ext_id",
        "stage_ext_id",
    )

    _ROW_KEYS = (
        *_REQUIRED_ROW,
        "modified_date_time",
        "closed_date_time",
        "contact_ext_ids",
        "main_contact_ext_id",
        "employee_ext_id",
        "lead_ext_id",
        "company_ext_id",
        "revenue",
        "comments",
        "source",
        "communication_id",
        "communication_type",
        "user_fields",
        "tags",
        "child_customer_id",
    )

    def _upload_deals_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """ca_deal/upload_deals_history: ≤ 1000 rows; "При некорректном заполнении данных по одной из сделок,
        запрос завершается ошибкой" — one bad row refuses the call, and the error names the field only
        (`deals.<name>`), never the row."""
        _require(params, "deals")
        rows = params["deals"]
        if not isinstance(rows, list):
            raise _invalid("deals", "deals must be a list", rows)
        if len(rows) > MAX_UPLOAD_ROWS:
            raise RpcError(
                -32602,
                "data_limit_exceeded",
                f"At most {MAX_UPLOAD_ROWS} deals per call",
                field="deals",
                value=len(rows),
            )
        now = self.clock()
        # deal ext_id → (funnel, last stage time) as the rows accepted so far would leave it
        seen: dict[str, tuple[str, datetime]] = {
            ext_id: (
                d["sales_funnel_ext_id"],
                datetime.strptime(d["path"][-1]["modified_stage_date_time"], DATE_TIME_FORMAT),
            )
            for ext_id, d in self.deals.items()
        }
        for row in rows:
            if isinstance(row, dict) and row.get("ext_id") in self.rejected_deals:
                # a chaos run's refused deal: UIS names a field, never the row (as every validation error)
                raise _invalid("deals.name", "The deal is refused by this account", row.get("name"))
            seen[row["ext_id"] if isinstance(row, dict) else ""] = self._validate_row(row, now, seen)
        # all rows are valid: apply them in order (nothing was stored if any row failed above)
        for row in rows:
            self._apply_row(row)
            # every row as received: a re-sent row shows as a repeat here (the path merges repeats)
            self.rows_received.append(copy.deepcopy(row))
        return {}

    def _validate_row(self, row: Any, now: datetime, seen: dict[str, tuple[str, datetime]]) -> tuple[str, datetime]:
        field = "deals"
        if not isinstance(row, dict):
            raise _invalid(field, "A deal row must be an object", row)
        unexpected = [k for k in row if k not in self._ROW_KEYS]
        if unexpected:
            raise _unexpected(f"{field}.{unexpected[0]}", row[unexpected[0]])
        for name in self._REQUIRED_ROW:
            if row.get(name) in (None, ""):
                raise _missing(f"{field}.{name}")
        created = _parse_dt(row["created_date_time"], f"{field}.created_date_time")
        stage_time = _parse_dt(row["modified_stage_date_time"], f"{field}.modified_stage_date_time")
        if row.get("modified_date_time") is not None:
            _parse_dt(row["modified_date_time"], f"{field}.modified_date_time")
        if created > now:
            # "Дата и время не может быть в будущем" — in UIS's own (undocumented) zone
            raise _invalid(f"{field}.created_date_time", "created_date_time is in the future", row["created_date_time"])
        if stage_time < created:
            raise _invalid(
                f"{field}.modified_stage_date_time",
                "modified_stage_date_time is before created_date_time",
                row["modified_stage_date_time"],
            )
        previous = seen.get(row["ext_id"])
        if previous and previous[0] != row["sales_funnel_ext_id"]:
            raise _invalid(
                f"{field}.sales_funnel_ext_id", "The deal belongs to another sales funnel", row["sales_funnel_ext_id"]
            )
        if previous and stage_time < previous[1]:
            # "modified_stage_date_time загружаемого этапа должен быть больше или равен ... последнего загруженного"
            raise _invalid(
                f"{field}.modified_stage_date_time",
                f"modified_stage_date_time is earlier than that of the deal's last stage ({_fmt(previous[1])})",
                row["modified_stage_date_time"],
            )
        funnel = self._funnel(row["sales_funnel_ext_id"], f"{field}.sales_funnel_ext_id")
        stage = funnel["stages"].get(row["stage_ext_id"])
        if stage is None:
            raise _not_found(f"{field}.stage_ext_id", row["stage_ext_id"])
        if row.get("closed_date_time") is not None:
            if stage["status"] == "in_process":
                raise _invalid(
                    f"{field}.closed_date_time",
                    "closed_date_time is only for success or failed stages",
                    row["closed_date_time"],
                )
            closed = _parse_dt(row["closed_date_time"], f"{field}.closed_date_time")
            if closed < created:
                raise _invalid(
                    f"{field}.closed_date_time", "closed_date_time is before created_date_time", row["closed_date_time"]
                )
        self._validate_contacts(row, field)
        self._validate_communication(row, field)
        self._validate_extras(row, field)
        return row["sales_funnel_ext_id"], stage_time

    def _validate_contacts(self, row: dict[str, Any], field: str) -> None:
        contact_ids, main = row.get("contact_ext_ids"), row.get("main_contact_ext_id")
        if contact_ids is None and main is None:
            return
        if not contact_ids:
            raise _missing(f"{field}.contact_ext_ids")
        if main is None:
            raise _missing(f"{field}.main_contact_ext_id")
        if not isinstance(contact_ids, list):
            raise _invalid(f"{field}.contact_ext_ids", "contact_ext_ids must be a list", contact_ids)
        if main not in contact_ids:
            raise _invalid(f"{field}.main_contact_ext_id", "main_contact_ext_id is not in contact_ext_ids", main)
        for contact_id in contact_ids:
            if contact_id not in self.contacts:
                raise _not_found(f"{field}.contact_ext_ids", contact_id)

    @staticmethod
    def _validate_communication(row: dict[str, Any], field: str) -> None:
        comm_id, comm_type = row.get("communication_id"), row.get("communication_type")
        if comm_id is None and comm_type is None:
            return
        if comm_id is None:
            raise _missing(f"{field}.communication_id")
        if comm_type is None:
            raise _missing(f"{field}.communication_type")
        if not isinstance(comm_id, int) or isinstance(comm_id, bool):
            raise _invalid(f"{field}.communication_id", "communication_id must be a number", comm_id)
        if comm_type not in COMMUNICATION_TYPES:
            raise _invalid(
                f"{field}.communication_type",
                f"communication_type must be one of {', '.join(COMMUNICATION_TYPES)}",
                comm_type,
            )

    def _validate_extras(self, row: dict[str, Any], field: str) -> None:
        if row.get("revenue") is not None and not _is_number(row["revenue"]):
            raise _invalid(f"{field}.revenue", "revenue must be a number", row["revenue"])
        employee = row.get("employee_ext_id")
        if employee is not None and employee not in self.deal_employees:
            # an employee is made with create.deal_employees first (assumed, like user fields: not documented)
            raise _not_found(f"{field}.employee_ext_id", employee)
        if row.get("source") is not None and not isinstance(row["source"], str):
            raise _invalid(f"{field}.source", "source must be a string", row["source"])
        user_fields = row.get("user_fields")
        if user_fields is not None:
            if not isinstance(user_fields, list):
                raise _invalid(f"{field}.user_fields", "user_fields must be a list", user_fields)
            for item in user_fields:
                path = f"{field}.user_fields"
                if not isinstance(item, dict) or item.get("ext_id") in (None, ""):
                    raise _missing(f"{path}.ext_id")
                # "Перед тем как передать, нужно создать пользовательское поле через метод create.deal_user_field"
                definition = self.user_fields.get(item["ext_id"])
                if definition is None:
                    raise _not_found(f"{path}.ext_id", item["ext_id"])
                value = item.get("value")
                if value is not None and definition["data_type"] == "numeric" and not _is_number(value):
                    try:
                        float(value)
                    except (TypeError, ValueError):
                        raise _invalid(f"{path}.value", "The field is numeric", value) from None
        tags = row.get("tags")
        if tags is not None:
            if not isinstance(tags, list):
                raise _invalid(f"{field}.tags", "tags must be a list", tags)
            for tag in tags:
                if not isinstance(tag, dict) or not tag.get("ext_id") or not tag.get("name"):
                    raise _invalid(f"{field}.tags", "A tag needs ext_id and name", tag)

    def _apply_row(self, row: dict[str, Any]) -> None:
        funnel = self.funnels[row["sales_funnel_ext_id"]]
        stage = funnel["stages"][row["stage_ext_id"]]
        deal = self.deals.get(row["ext_id"])
        if deal is None:
            deal = self.deals[row["ext_id"]] = {
                "ext_id": row["ext_id"],
                "sales_funnel_ext_id": funnel["ext_id"],
                "path": [],
                "contact_ext_ids": [],
                "main_contact_ext_id": None,
                "employee_ext_id": None,
                "revenue": None,
                "comments": None,
                "source": None,
                "communication_id": None,
                "communication_type": None,
                "user_fields": {},
                "tags": [],
                "closed_date_time": None,
                "modified_date_time": None,
            }
        deal["name"] = row["name"]
        deal["created_date_time"] = row["created_date_time"]
        stage_time = row["modified_stage_date_time"]
        current = deal["path"][-1]["stage_ext_id"] if deal["path"] else None
        if current != stage["ext_id"]:
            for generated in self._skipped_stages(funnel, current, stage):
                deal["path"].append(
                    {"stage_ext_id": generated["ext_id"], "modified_stage_date_time": stage_time, "is_generated": True}
                )
            deal["path"].append(
                {"stage_ext_id": stage["ext_id"], "modified_stage_date_time": stage_time, "is_generated": False}
            )
        deal["stage_ext_id"] = stage["ext_id"]
        deal["modified_stage_date_time"] = deal["path"][-1]["modified_stage_date_time"]
        # a deal brought back to an in-process stage is open again
        deal["closed_date_time"] = row.get("closed_date_time") if stage["status"] != "in_process" else None
        for key in (
            "modified_date_time",
            "employee_ext_id",
            "revenue",
            "comments",
            "source",
            "communication_id",
            "communication_type",
        ):
            if row.get(key) is not None:
                deal[key] = row[key]
        if row.get("contact_ext_ids") is not None:
            deal["contact_ext_ids"] = list(row["contact_ext_ids"])
            deal["main_contact_ext_id"] = row["main_contact_ext_id"]
        for item in row.get("user_fields") or []:
            deal["user_fields"][item["ext_id"]] = item.get("value")
        if row.get("tags") is not None:
            deal["tags"] = copy.deepcopy(row["tags"])

    @staticmethod
    def _skipped_stages(funnel: dict[str, Any], current: str | None, target: dict[str, Any]) -> list[dict[str, Any]]:
        """In-process stages a deal jumped over moving forward to `target` (UIS fills them in).

        A jump to the success stage passes every in-process stage after the current one; a jump to
        failed passes none (a lost deal did not progress); a move backwards generates nothing.
        """
        if target["status"] == "failed":
            return []
        in_process = sorted(
            (s for s in funnel["stages"].values() if s["status"] == "in_process"), key=lambda s: s["order"]
        )
        start = funnel["stages"][current]["order"] if current in funnel["stages"] else None
        if start is not None and start >= target["order"]:
            return []
        return [s for s in in_process if (start is None or s["order"] > start) and s["order"] < target["order"]]

    def _get_deals_history(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        rows = []
        for deal in self.deals.values():
            for step in deal["path"]:
                rows.append(
                    {
                        "ext_id": deal["ext_id"],
                        "name": deal["name"],
                        "created_date_time": deal["created_date_time"],
                        "closed_date_time": deal["closed_date_time"] if step is deal["path"][-1] else None,
                        "modified_stage_date_time": step["modified_stage_date_time"],
                        "contact_ext_ids": list(deal["contact_ext_ids"]),
                        "main_contact_ext_id": deal["main_contact_ext_id"],
                        "tag_ext_ids": [t["ext_id"] for t in deal["tags"]],
                        "employee_ext_id": deal["employee_ext_id"],
                        "revenue": deal["revenue"],
                        "sales_funnel_ext_id": deal["sales_funnel_ext_id"],
                        "stage_ext_id": step["stage_ext_id"],
                        "comments": deal["comments"],
                        "source": deal["source"],
                        "is_generated": step["is_generated"],
                        "communication_id": deal["communication_id"],
                        "communication_type": deal["communication_type"],
                    }
                )
        return _listing(rows, params, DEALS_HISTORY)

    def _delete_deal(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "ext_id")
        if params["ext_id"] not in self.deals:
            raise _not_found("ext_id", params["ext_id"])
        del self.deals[params["ext_id"]]
        return {}

    # ==============================================================================================
    # chats, messages, requests
    # ==============================================================================================
    def _chat(self, chat_id: int) -> dict[str, Any]:
        chat = self.chats.get(chat_id)
        if chat is None:
            raise NotFound(f"chat {chat_id} not found")
        return chat

    def _employee_name(self, employee_id: int | None) -> str | None:
        employee = self.employees.get(employee_id) if employee_id is not None else None
        return employee["full_name"] if employee else None

    def _new_chat(self, spec: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
        at = at or self.clock()
        channel_id = spec.get("chat_channel_id")
        if channel_id is None:
            wanted_type, wanted_site = spec.get("chat_channel_type", "comagic"), spec.get("site_id", 17001)
            channel_id = next(
                (
                    c["id"]
                    for c in self.channels.values()
                    if c["type"] == wanted_type and (wanted_type != "comagic" or c.get("site_id") == wanted_site)
                ),
                None,
            )
        channel = self.channels.get(channel_id) if channel_id is not None else None
        if channel is None:
            raise ValueError(f"unknown chat channel {channel_id or spec.get('chat_channel_type')}")
        site_id = spec.get("site_id", channel.get("site_id") or 17001)
        if site_id not in self.sites:
            raise ValueError(f"unknown site {site_id}")
        visitor_id = self._visitor(spec)
        chat = {
            "id": next(self._chat_ids),
            "communication_id": next(self._communication_ids),
            "date_time": _fmt(at),
            "status": "new",
            "initiator": "visitor",
            "site_id": site_id,
            "chat_channel_id": channel["id"],
            "visitor_id": visitor_id,
            "person_id": visitor_id + 1_000_000,
            "visitor_session_id": visitor_id + 2_000_000,
            "visitor_name": spec.get("visitor_name"),
            "visitor_phone_number": spec.get("visitor_phone_number"),
            "visitor_email": spec.get("visitor_email"),
            "employee_id": None,
            "answer_time": None,
            "duration": None,
            "release_cause": None,
            "closed_at": None,
            "tags": [],
            "messages": [],
            "campaign_id": spec.get("campaign_id", 1201),
            "campaign_name": spec.get("campaign_name", "Яндекс Директ"),
            "search_engine": spec.get("search_engine"),
            "search_query": spec.get("search_query"),
            "ua_client_id": spec.get("ua_client_id"),
            **{f"utm_{k}": spec.get(f"utm_{k}") for k in ("source", "medium", "campaign", "content", "term")},
        }
        self.chats[chat["id"]] = chat
        if spec.get("message"):
            self._add_message(chat, {"source": "visitor", "text": spec["message"]}, at=at)
        return chat

    def _visitor(self, spec: dict[str, Any]) -> int:
        """The visitor of a new chat or request (`visitor_id` in `spec` reuses one), with what they told UIS:
        get.visitors answers their name, phones and e-mails (person/get_visitors example: phones as digits)."""
        visitor_id = int(spec["visitor_id"]) if spec.get("visitor_id") else next(self._visitor_ids)
        visitor = self.visitors.setdefault(
            visitor_id, {"id": visitor_id, "name": None, "phones": [], "emails": [], "usernames": []}
        )
        if spec.get("visitor_name"):
            visitor["name"] = spec["visitor_name"]
        phone = re.sub(r"\D", "", str(spec.get("visitor_phone_number") or ""))
        if phone and phone not in visitor["phones"]:
            visitor["phones"].append(phone)
        email = spec.get("visitor_email")
        if email and email not in visitor["emails"]:
            visitor["emails"].append(email)
        if spec.get("chat_username") and spec["chat_username"] not in visitor["usernames"]:
            visitor["usernames"].append(spec["chat_username"])
        return visitor_id

    def _add_message(self, chat: dict[str, Any], spec: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
        source = spec.get("source", "visitor")
        employee_id = spec.get("employee_id", chat["employee_id"]) if source == "operator" else None
        message = {
            "id": next(self._message_ids),
            "chat_id": chat["id"],
            "date_time": _fmt(at or self.clock()),
            "is_group_chat": False,
            "visitor_id": chat["visitor_id"],
            "text": spec.get("text", ""),
            "resource": spec.get("resource"),
            "source": source,
            "employee_id": employee_id,
            "employee_full_name": self._employee_name(employee_id),
        }
        chat["messages"].append(message)
        return message

    def _take(self, chat: dict[str, Any], spec: dict[str, Any], *, at: datetime | None = None) -> None:
        at = at or self.clock()
        chat["status"] = "active"
        chat["employee_id"] = spec.get("employee_id", next(iter(self.employees), None))
        chat["answer_time"] = int((at - datetime.strptime(chat["date_time"], DATE_TIME_FORMAT)).total_seconds())

    def _close(
        self,
        chat: dict[str, Any],
        status: str,
        *,
        release_cause: str = "closed_by_operator",
        at: datetime | None = None,
    ) -> None:
        if chat["closed_at"] is not None:
            raise ValueError(f"chat {chat['id']} is already closed ({chat['status']})")
        at = at or self.clock()
        chat["status"] = status
        chat["release_cause"] = release_cause
        chat["closed_at"] = _fmt(at)
        chat["duration"] = int((at - datetime.strptime(chat["date_time"], DATE_TIME_FORMAT)).total_seconds())

    def _new_request(self, spec: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
        site_id = spec.get("site_id", 17001)
        if site_id not in self.sites:
            raise ValueError(f"unknown site {site_id}")
        form_type = spec.get("form_type", "standard")
        if form_type not in FORM_TYPES:
            raise ValueError(f"form_type must be one of {FORM_TYPES}")
        visitor_id = self._visitor(spec)
        request = {
            "id": next(self._request_ids),
            "communication_id": next(self._communication_ids),
            "date_time": _fmt(at or self.clock()),
            "text": spec.get("text"),
            "status": "not_processed",
            "form_type": form_type,
            "form_name": spec.get("form_name", "Форма обратной связи"),
            "group_id": None,
            "group_name": spec.get("group_name"),
            "visitor_name": spec.get("visitor_name"),
            "visitor_phone_number": spec.get("visitor_phone_number"),
            "visitor_email": spec.get("visitor_email"),
            "visitor_id": visitor_id,
            "visitor_session_id": visitor_id + 2_000_000,
            "site_id": site_id,
            "tags": [],
            "campaign_id": spec.get("campaign_id", 1201),
            "campaign_name": spec.get("campaign_name", "Яндекс Директ"),
            "search_engine": spec.get("search_engine"),
            "search_query": spec.get("search_query"),
            "ua_client_id": spec.get("ua_client_id"),
            **{f"utm_{k}": spec.get(f"utm_{k}") for k in ("source", "medium", "campaign", "content", "term")},
        }
        self.requests[request["id"]] = request
        return request

    # --- report rows -----------------------------------------------------------------------------
    def _chat_row(self, chat: dict[str, Any]) -> dict[str, Any]:
        channel, site = self.channels[chat["chat_channel_id"]], self.sites[chat["site_id"]]
        messages = chat["messages"]
        row = {
            k: chat[k]
            for k in (
                "id",
                "communication_id",
                "date_time",
                "status",
                "initiator",
                "duration",
                "answer_time",
                "release_cause",
                "site_id",
                "visitor_id",
                "person_id",
                "visitor_session_id",
                "visitor_phone_number",
                "employee_id",
                "campaign_id",
                "campaign_name",
                "search_engine",
                "search_query",
                "ua_client_id",
                "utm_source",
                "utm_medium",
                "utm_campaign",
                "utm_content",
                "utm_term",
                "tags",
            )
        }
        row.update(
            communication_type="chat",
            chat_channel_id=channel["id"],
            chat_channel_name=channel["name"],
            chat_channel_type=channel["type"],
            site_domain_name=site["domain_name"],
            messages_count=len(messages),
            employee_messages_count=sum(m["source"] == "operator" for m in messages),
            employee_full_name=self._employee_name(chat["employee_id"]),
        )
        return row

    def _request_row(self, request: dict[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in request.items()}
        row.update(communication_type="offline_message", site_domain_name=self.sites[request["site_id"]]["domain_name"])
        return row

    def _chats_report(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        start, end = _report_range(params)
        rows = [self._chat_row(c) for c in self.chats.values() if start <= _dt(c["date_time"]) <= end]
        rows.sort(key=lambda r: (r["date_time"], r["id"]))
        return _listing(rows, params, CHATS_REPORT)

    def _chat_messages_report(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        if params.get("chat_id") is not None:
            wanted: Callable[[dict[str, Any]], bool] = lambda m: m["chat_id"] == params["chat_id"]  # noqa: E731
        elif params.get("chat_ids"):
            ids = params["chat_ids"]
            if not isinstance(ids, list):
                raise _invalid("chat_ids", "chat_ids must be a list", ids)
            wanted = lambda m: m["chat_id"] in ids  # noqa: E731
        elif params.get("date_from") or params.get("date_till"):
            start, end = _report_range(params, max_days=30)
            wanted = lambda m: start <= _dt(m["date_time"]) <= end  # noqa: E731
        else:
            raise _missing("chat_id")
        rows = [m for c in self.chats.values() for m in c["messages"] if wanted(m)]
        rows.sort(key=lambda m: (m["date_time"], m["id"]))
        return _listing(rows, params, CHAT_MESSAGES_REPORT)

    def _offline_messages_report(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        start, end = _report_range(params)
        rows = [self._request_row(r) for r in self.requests.values() if start <= _dt(r["date_time"]) <= end]
        rows.sort(key=lambda r: (r["date_time"], r["id"]))
        return _listing(rows, params, OFFLINE_MESSAGES_REPORT)

    def _get_visitors(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """person/get_visitors: `ids` (required) → `id`, `name`, `phones`, `emails`, `usernames` per known visitor.
        No limit on the number of ids is documented."""
        _require(params, "ids")
        ids = params["ids"]
        if not isinstance(ids, list) or not all(_is_number(i) for i in ids):
            raise _invalid("ids", "ids must be a list of visitor ids", ids)
        return [copy.deepcopy(self.visitors[int(i)]) for i in dict.fromkeys(ids) if int(i) in self.visitors]

    def _set_tag_communications(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "communication_id", "communication_type", "tag_id")
        tag = self.tags.get(params["tag_id"])
        if tag is None:
            raise _not_found("tag_id", params["tag_id"])
        kind = params["communication_type"]
        pool = self.chats if kind == "chat" else self.requests if kind == "offline_message" else None
        if pool is None:
            raise _invalid("communication_type", "Only chat and offline_message exist in the sandbox", kind)
        target = next((x for x in pool.values() if x["communication_id"] == params["communication_id"]), None)
        if target is None:
            raise _not_found("communication_id", params["communication_id"])
        self._tag(target, tag, None)
        if kind == "chat":
            # UIS notifies about a tag whoever set it; sent after the reply (outside the lock)
            self._pending.append(("set_mark", self._chat_mark_context(target, tag)))
        return {}

    def _tag(self, target: dict[str, Any], tag: dict[str, Any], employee_id: int | None) -> bool:
        if any(t["tag_id"] == tag["id"] for t in target["tags"]):
            return False
        target["tags"].append(
            {
                "tag_id": tag["id"],
                "tag_name": tag["name"],
                "tag_type": "manual",
                "tag_change_time": _fmt(self.clock()),
                "tag_user_login": None,
                "tag_user_id": None,
                "tag_employee_id": employee_id,
                "tag_employee_full_name": self._employee_name(employee_id),
            }
        )
        return True

    # ==============================================================================================
    # scenario methods (also exposed as /_sandbox routes)
    # ==============================================================================================
    def start_chat(self, **spec: Any) -> dict[str, Any]:
        """A visitor opens a chat: status `new`. UIS has no notification for this."""
        with self._lock:
            return copy.deepcopy(self._chat_row(self._new_chat(spec)))

    def post_message(
        self, chat_id: int, text: str, *, source: str = "visitor", employee_id: int | None = None
    ) -> dict[str, Any]:
        with self._lock:
            chat = self._chat(chat_id)
            spec: dict[str, Any] = {"text": text, "source": source}
            if employee_id is not None:
                spec["employee_id"] = employee_id
            return copy.deepcopy(self._add_message(chat, spec))

    def take_chat(self, chat_id: int, *, employee_id: int | None = None) -> dict[str, Any]:
        with self._lock:
            chat = self._chat(chat_id)
            self._take(chat, {"employee_id": employee_id} if employee_id is not None else {})
            return copy.deepcopy(self._chat_row(chat))

    def finish_chat(
        self, chat_id: int, *, status: str = "succeed", release_cause: str = "closed_by_operator"
    ) -> dict[str, Any]:
        """Close a chat as `succeed` (or `refused`) and send `chat_finished`."""
        if status not in ("succeed", "refused"):
            raise ValueError("a finished chat is succeed or refused; use lose_chat for lost")
        with self._lock:
            chat = self._chat(chat_id)
            self._close(chat, status, release_cause=release_cause)
            self._pending.append(("chat_finished", self._chat_context(chat)))
            row = copy.deepcopy(self._chat_row(chat))
        self._flush()
        return row

    def lose_chat(
        self, chat_id: int, *, notify: bool = True, release_cause: str = "visitor_disconnected"
    ) -> dict[str, Any]:
        """Close a chat nobody answered: status `lost`; `lost_chat` unless `notify` is off (a lost delivery)."""
        with self._lock:
            chat = self._chat(chat_id)
            self._close(chat, "lost", release_cause=release_cause)
            if notify:
                self._pending.append(("lost_chat", self._chat_context(chat)))
            row = copy.deepcopy(self._chat_row(chat))
        self._flush()
        return row

    def tag_chat(self, chat_id: int, tag_id: int, *, employee_id: int | None = None) -> dict[str, Any]:
        """An operator sets a tag: `set_mark`."""
        with self._lock:
            chat = self._chat(chat_id)
            tag = self.tags.get(tag_id)
            if tag is None:
                raise NotFound(f"tag {tag_id} not found")
            if self._tag(chat, tag, employee_id):
                self._pending.append(("set_mark", self._chat_mark_context(chat, tag)))
            row = copy.deepcopy(self._chat_row(chat))
        self._flush()
        return row

    def untag_chat(self, chat_id: int, tag_id: int) -> dict[str, Any]:
        """An operator removes a tag: `unset_mark`."""
        with self._lock:
            chat = self._chat(chat_id)
            tag = self.tags.get(tag_id)
            if tag is None:
                raise NotFound(f"tag {tag_id} not found")
            before = len(chat["tags"])
            chat["tags"] = [t for t in chat["tags"] if t["tag_id"] != tag_id]
            if len(chat["tags"]) != before:
                self._pending.append(("unset_mark", self._chat_mark_context(chat, tag)))
            row = copy.deepcopy(self._chat_row(chat))
        self._flush()
        return row

    def submit_request(self, **spec: Any) -> dict[str, Any]:
        """A visitor submits a site form (заявка): `offline_message`."""
        with self._lock:
            request = self._new_request(spec)
            self._pending.append(("offline_message", self._request_context(request)))
            row = copy.deepcopy(self._request_row(request))
        self._flush()
        return row

    # ==============================================================================================
    # notifications
    # ==============================================================================================
    @property
    def _pending(self) -> list[tuple[str, dict[str, Any]]]:
        # per-thread queue: bodies are built under the lock, sent after it is released, so a receiver
        # that calls back into this sandbox (the local stack's worker) cannot deadlock on it
        if not hasattr(self._local, "pending"):
            self._local.pending = []
        pending: list[tuple[str, dict[str, Any]]] = self._local.pending
        return pending

    def _common_context(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "notification_time": _fmt(self.clock()),
            "site_domain_name": self.sites[item["site_id"]]["domain_name"],
            "site_id": item["site_id"],
            "campaign_id": item["campaign_id"],
            "campaign_name": item["campaign_name"],
            "communication_id": item["communication_id"],
            "search_engine": item["search_engine"],
            "search_query": item["search_query"],
            "visitor_id": item["visitor_id"],
            "session_id": item["visitor_session_id"],
            "ua_client_id": item["ua_client_id"],
            **{f"utm_{k}": item[f"utm_{k}"] for k in ("source", "medium", "campaign", "content", "term")},
            "visitor_name": item["visitor_name"],
        }

    def _chat_context(self, chat: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels[chat["chat_channel_id"]]
        return {
            **self._common_context(chat),
            "chat_id": chat["id"],
            "tag_ids": [t["tag_id"] for t in chat["tags"]],
            "messages": copy.deepcopy(chat["messages"]),
            "employee_full_name": self._employee_name(chat["employee_id"]),
            "employee_id": chat["employee_id"],
            "status": chat["status"],
            "communication_type": "chat",
            # not in the default bodies; available to users who add them as extra parameters
            "visitor_phone_number": chat["visitor_phone_number"],
            "chat_channel_id": channel["id"],
            "chat_channel_type": channel["type"],
        }

    def _chat_mark_context(self, chat: dict[str, Any], tag: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._chat_context(chat),
            "tag_id": tag["id"],
            "tag_name": tag["name"],
            "virtual_phone_number": None,
            "external_id": None,
            "contact_phone_number": chat["visitor_phone_number"],
            "communication_number": 1,
            "call_source": None,
            "call_session_id": None,
            "direction": None,
        }

    def _request_context(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._common_context(request),
            "offline_message_id": request["id"],
            "visitor_phone_number": request["visitor_phone_number"],
            "visitor_email": request["visitor_email"],
            "visitor_message": request["text"],
            "form_type": request["form_type"],
            "communication_type": "offline_message",
        }

    @staticmethod
    def _transcript(messages: list[dict[str, Any]]) -> str:
        return "\n".join(f"{m['date_time']} {m['employee_full_name'] or m['source']}: {m['text']}" for m in messages)

    def _render(self, event: str, ctx: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
        """The default template of `event` for the configured method, with UIS's values substituted."""
        ids = {
            "campaign_id",
            "communication_id",
            "visitor_id",
            "session_id",
            "chat_id",
            "offline_message_id",
            "tag_id",
            "site_id",
            "employee_id",
            "chat_channel_id",
        }
        values = dict(ctx, notification_name=cfg["name"])
        values["messages"] = (
            values["messages"] if cfg["messages_as_list"] else self._transcript(ctx.get("messages", []))
        )
        if cfg["stringify_ids"]:
            values.update({k: str(v) for k, v in values.items() if k in ids and v is not None})
            values["tag_ids"] = [str(t) for t in ctx.get("tag_ids", [])]
        if cfg["tag_ids_as_string"] or cfg["method"] == "GET":
            values["tag_ids"] = ",".join(str(t) for t in ctx.get("tag_ids", []))
        v = values.get
        if cfg["method"] == "GET":
            body = {k: v(k) for k in _GET_TEMPLATES[event]}
        elif event == "offline_message":
            body = {
                "notification_name": v("notification_name"),
                "notification_time": v("notification_time"),
                "visitor": {
                    k: v(k)
                    for k in (
                        "visitor_name",
                        "visitor_phone_number",
                        "visitor_email",
                        "visitor_message",
                        "visitor_id",
                        "session_id",
                    )
                },
                **{
                    k: v(k)
                    for k in (
                        "offline_message_id",
                        "site_domain_name",
                        "campaign_id",
                        "campaign_name",
                        "communication_id",
                        "search_engine",
                        "search_query",
                    )
                },
            }
        elif event in ("chat_finished", "lost_chat"):
            body = {k: v(k) for k in _CHAT_KEYS}
            body["visitor_info"] = {"visitor_name": v("visitor_name"), "visitor_id": v("visitor_id")}
            if event == "chat_finished":
                body["status"] = v("status")
        else:  # set_mark / unset_mark: UIS's default body is call-oriented
            body = {
                "notification_name": v("notification_name"),
                "virtual_phone_number": v("virtual_phone_number"),
                "notification_time": v("notification_time"),
                "external_id": v("external_id"),
                "contact_info": {
                    "contact_phone_number": v("contact_phone_number"),
                    "communication_number": v("communication_number"),
                },
                "call_info": {
                    "call_source": v("call_source"),
                    "call_session_id": v("call_session_id"),
                    "direction": v("direction"),
                },
                "tag_info": {"tag_id": v("tag_id"), "tag_name": v("tag_name")},
            }
        for extra in cfg["extra_params"]:
            body[extra] = v(extra)
        return body

    def _flush(self) -> None:
        pending = list(self._pending)
        self._pending.clear()
        for event, ctx in pending:
            with self._lock:
                cfg = copy.deepcopy(self.notifications.get(event))
            if cfg is None:
                continue
            body = self._render(event, ctx, cfg)
            url, payload, headers = cfg["url"], None, {"User-Agent": "UIS-Notifications-Sandbox"}
            if cfg["method"] == "GET":
                query = urlencode({k: "" if val is None else val for k, val in body.items()})
                url = f"{url}{'&' if '?' in url else '?'}{query}"
            else:
                payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
                headers["Content-Type"] = "application/json; charset=UTF-8"
            delivery: dict[str, Any] = {
                "event": event,
                "method": cfg["method"],
                "url": url,
                "body": body,
                "status": None,
                "error": None,
                "at": _fmt(self.clock()),
            }
            try:
                delivery["status"] = self.sender(cfg["method"], url, payload, headers)
            except Exception as exc:  # a failed delivery is recorded, never raised (UIS does not retry either)
                delivery["error"] = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.deliveries.append(delivery)

    # ==============================================================================================
    # WSGI
    # ==============================================================================================
    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self._url_map.bind_to_environ(environ).match()
            response = self._dispatch(endpoint, request, dict(args))
        except HTTPException as exc:
            response = json_response({"error": exc.description}, exc.code or 500)
        except (ValueError, KeyError, TypeError) as exc:
            response = json_response({"error": str(exc)}, 400)
        return response(environ, start_response)

    def _dispatch(self, endpoint: str, request: Request, args: dict[str, Any]) -> Response:
        if endpoint == "rpc":
            try:
                body = json.loads(request.get_data(cache=True) or b"null")
            except ValueError:
                return json_response(
                    {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {"code": -32700, "message": "Parse error", "data": {"mnemonic": "parse_error"}},
                    }
                )
            status, reply = self.rpc(body)
            if reply is None:
                return Response("Internal Server Error", status=status, content_type="text/plain")
            return json_response(reply, status)
        if endpoint == "state":
            return json_response(self.state())
        body = read_json(request) if request.method in ("POST", "DELETE") else {}
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        if endpoint == "reset":
            self.reset(seed=bool(body.get("seed", True)))
            return json_response({"ok": True})
        if endpoint == "fail":
            self.fail(**body)
            return json_response({"ok": True})
        if endpoint == "faults":
            self.configure_faults(
                body.get("rates") or {},
                seed=int(body.get("seed", 0)),
                caps=body.get("caps"),
                reject_deals=body.get("reject_deals") or (),
                each_within=int(body.get("each_within", 0)),
            )
            return json_response({"ok": True})
        if endpoint == "tokens":
            self.set_token(body["token"], body.get("state", "valid"))
            return json_response({"ok": True})
        if endpoint == "components":
            self.set_components(body.get("enabled"), disabled=body.get("disabled", ()))
            return json_response({"components": sorted(self.components)})
        if endpoint == "clock":
            if not isinstance(self.clock, SandboxClock):
                raise ValueError("this sandbox runs on an injected clock")
            if body.get("now"):
                self.clock.set(datetime.strptime(body["now"], DATE_TIME_FORMAT))
            self.clock.advance(float(body.get("advance_seconds", 0)))
            return json_response({"now": _fmt(self.clock())})
        if endpoint == "notifications":
            event = body.pop("event")
            url = body.pop("url", None)
            self.configure_notification(event, url, **body)
            return json_response({"ok": True})
        if endpoint == "start_chat":
            return json_response(self.start_chat(**body), 201)
        if endpoint == "request":
            return json_response(self.submit_request(**body), 201)
        chat_id = args["chat_id"]
        if endpoint == "message":
            return json_response(
                self.post_message(
                    chat_id,
                    body.get("text", ""),
                    source=body.get("source", "visitor"),
                    employee_id=body.get("employee_id"),
                ),
                201,
            )
        if endpoint == "take":
            return json_response(self.take_chat(chat_id, employee_id=body.get("employee_id")))
        if endpoint == "finish":
            return json_response(self.finish_chat(chat_id, status=body.get("status", "succeed")))
        if endpoint == "lose":
            notify = request.args.get("notify", str(body.get("notify", 1))) not in ("0", "false", "False")
            return json_response(self.lose_chat(chat_id, notify=notify))
        tag_id = body.get("tag_id", request.args.get("tag_id", type=int))
        if tag_id is None:
            raise ValueError("tag_id is required")
        if request.method == "DELETE":
            return json_response(self.untag_chat(chat_id, int(tag_id)))
        return json_response(self.tag_chat(chat_id, int(tag_id), employee_id=body.get("employee_id")))


class _HttpFailure(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _dt(text: str) -> datetime:
    return datetime.strptime(text, DATE_TIME_FORMAT)


_CHAT_KEYS = (
    "notification_name",
    "notification_time",
    "site_domain_name",
    "campaign_id",
    "campaign_name",
    "communication_id",
    "search_engine",
    "search_query",
    "session_id",
    "ua_client_id",
    "utm_campaign",
    "utm_content",
    "utm_medium",
    "utm_source",
    "utm_term",
    "chat_id",
    "tag_ids",
    "messages",
    "employee_full_name",
)
_GET_TEMPLATES: dict[str, tuple[str, ...]] = {
    "offline_message": (
        "notification_name",
        "notification_time",
        "visitor_name",
        "visitor_phone_number",
        "visitor_email",
        "visitor_message",
        "offline_message_id",
        "site_domain_name",
        "campaign_id",
        "campaign_name",
        "communication_id",
        "search_engine",
        "search_query",
        "visitor_id",
        "session_id",
    ),
    "chat_finished": (
        "notification_name",
        "notification_time",
        "site_domain_name",
        "campaign_id",
        "campaign_name",
        "communication_id",
        "search_engine",
        "search_query",
        "visitor_id",
        "session_id",
        "ua_client_id",
        "utm_campaign",
        "utm_content",
        "utm_medium",
        "utm_source",
        "utm_term",
        "chat_id",
        "tag_ids",
        "messages",
        "employee_full_name",
        "visitor_name",
        "status",
    ),
    "set_mark": (
        "notification_name",
        "virtual_phone_number",
        "notification_time",
        "external_id",
        "contact_phone_number",
        "communication_number",
        "call_source",
        "call_session_id",
        "direction",
        "tag_id",
        "tag_name",
    ),
}
_GET_TEMPLATES["lost_chat"] = tuple(k for k in _GET_TEMPLATES["chat_finished"] if k != "status")
_GET_TEMPLATES["unset_mark"] = _GET_TEMPLATES["set_mark"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="UIS Data API + notifications sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--token", action="append", help=f"valid access token (default {DEFAULT_TOKEN})")
    parser.add_argument("--minute-limit", type=int, default=200)
    parser.add_argument("--day-limit", type=int, default=3500)
    args = parser.parse_args(argv)
    sandbox = UisSandbox(
        access_tokens=args.token or [DEFAULT_TOKEN], minute_limit=args.minute_limit, day_limit=args.day_limit
    )
    served = ServedApp(sandbox.app, port=args.port, host=args.host)
    print(f"UIS sandbox: Data API {served.url}/v2.0, state {served.url}/_sandbox/state", flush=True)
    try:
        served.server.serve_forever()
    except KeyboardInterrupt:
        served.stop()


if __name__ == "__main__":
    main()
