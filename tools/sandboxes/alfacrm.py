"""AlfaCRM v2api emulator (WSGI, werkzeug), faithful to `../shared/reference/alfacrm-api.md`.

What it reproduces, because the connector must cope with it:
- login by e-mail + API key → 32-hex token valid 15 minutes (sandbox clock); 401 for an unknown or expired
  token, 403 for bad credentials or a role without the v2api module;
- every call is a POST with a JSON body; `index` pages start at 0 and hold 50 items whatever size is asked;
- loose types: money and some ids as strings (`"575.00"`, `"145"`), dates as `dd.mm.yyyy` in records and
  `YYYY-MM-DD` in the database values of the log/webhooks; phones stored exactly as typed;
- customer search defaults: without `is_study` clients only (2 = all); without `removed` active only
  (1 = active + archived, 2 = archived only); unknown filter keys are ignored, like Yii search models;
- validation errors with HTTP 200 (`{"success": false, "errors": ...}`), for configurable required fields;
- 429 when an account sends more than `burst_limit` requests within one second, and injected failures;
- webhooks per branch, as AlfaCRM's triggers send them: raw JSON under
  `Content-Type: application/x-www-form-urlencoded`, `[]` for empty maps, only changed fields on update,
  `fields_new` as form strings and `fields_old` as database values, `user_id` of the acting user;
- `log/index` as clients that run against real accounts read it (mircicn/aioalfacrm
  `aioalfacrm/entities/log.py` and `tests/test_entities/test_log.py`, Airumian/alfacrm
  `alfacrm/entities/log.py`, YegorPanin/alfacrm-client `src/alfacrm/models/log.py`, and the real export
  ifpfptatmc/KO_alfacrm_data `leads_history_changes.csv` / `fetch_history_changes.py`): `event` an integer
  (1 create, 2 update, 3 delete), `fields_old`/`fields_new` maps or lists of one-key maps
  (`log_fields_style`), newest entries first;
- no record carries an archive flag (`removed` is only an index filter; no public client's customer model has
  one): archiving a lead is seen as its `lead_reject_id` (the real change log shows refusals that way);
  `archive_flag_in_records` turns a flag on for accounts that might show one;
- `pay-item` records with `pay_type_ids` (aioalfacrm `entities/pay_item.py`);
- `communication/create` may require the author (`comment_requires_user_id`): a careful public client
  refuses to post without `user_id`.

Manager actions ("UI") are routes under `/_sandbox/ui/...` and methods `ui_*`; control routes are under
`/_sandbox/...`. Phone search on the real server is unknown (`phone_search`): `digits_substring` (default:
the query's digits inside a stored number's digits), `digits` (all digits equal) or `exact` (the stored text).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from werkzeug.wrappers import Request, Response

from tools.sandboxes.common import Faults, ServedApp, http_sender, json_response, read_json

PAGE_SIZE = 50
TOKEN_LIFETIME = timedelta(minutes=15)
LOCAL_TZ = "Europe/Moscow"
DEFAULT_EMAIL = "api@school.test"
DEFAULT_API_KEY = "sandbox-api-key-5f2b9c0e7a1d"
MANAGER_EMAIL = "manager@school.test"
MANAGER_API_KEY = "sandbox-manager-key-3c8d"
API_USER_ID = 3
MANAGER_USER_ID = 2
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

Sender = Callable[[str, str, bytes | None, dict[str, str]], int]


def local_now() -> datetime:
    """Account-local wall time without a zone, as AlfaCRM reports it."""
    return datetime.now(ZoneInfo(LOCAL_TZ)).replace(tzinfo=None, microsecond=0)


class ManualClock:
    """A hand-driven clock for tests, demos and benchmarks.

    Call it for the sandbox's naive local time; `monotonic` / `sleep` plug into the client's rate limiter and
    retry policy, so a back-off "sleeps" by moving this clock (and the sandbox sees the time pass).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start or datetime(2025, 3, 3, 10, 0, 0)
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


@dataclass
class Account:
    email: str
    api_key: str
    user_id: int
    has_v2api: bool = True


class _Reply(Exception):
    """Abort the current request with this HTTP reply."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = json_response(body, status=status, headers=headers)


class _Invalid(Exception):
    """Validation failed: AlfaCRM answers HTTP 200 with success=false."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _yii_error(status: int, name: str, message: str) -> _Reply:
    # The body of AlfaCRM's 401/403 is undocumented; Yii's shape is the likely one.
    return _Reply(status, {"name": name, "message": message, "code": 0, "status": status})


# --- value conversion: input (JSON or form-typed) → database types → REST / webhook shapes ----------------
def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _parse_int(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError("должно быть целым числом") from None


def _parse_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _parse_date(value: Any) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError("неверный формат даты")


def _parse_decimal(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return Decimal(str(value).strip().replace(",", ".")).quantize(Decimal("0.01"))
    except InvalidOperation:
        raise ValueError("должно быть числом") from None


def _parse_str(value: Any) -> str:
    return "" if value is None else str(value)


def _parse_flag(value: Any) -> int:
    if isinstance(value, str):
        return 1 if value.strip().lower() in ("1", "true", "on", "yes") else 0
    return 1 if value else 0


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "int": _parse_int,
    "ints": lambda v: [_parse_int(item) for item in _parse_list(v)],
    "strs": lambda v: [str(item) for item in _parse_list(v) if str(item).strip()],
    "str": _parse_str,
    "date": _parse_date,
    "money": _parse_decimal,
    "flag": _parse_flag,
}

CUSTOMER_FIELDS = {
    "name": "str",
    "branch_ids": "ints",
    "teacher_ids": "ints",
    "is_study": "int",
    "study_status_id": "int",
    "lead_status_id": "int",
    "lead_source_id": "int",
    "lead_reject_id": "int",
    "customer_reject_id": "int",
    "assigned_id": "int",
    "legal_type": "int",
    "legal_name": "str",
    "dob": "date",
    "phone": "strs",
    "email": "strs",
    "web": "strs",
    "addr": "strs",
    "note": "str",
    "removed": "flag",
}
PAY_FIELDS = {
    "branch_id": "int",
    "customer_id": "int",
    "income": "money",
    "document_date": "date",
    "pay_type_id": "int",
    "pay_account_id": "int",
    "pay_item_id": "int",
    "teacher_id": "int",
    "commodity_id": "int",
    "payer_name": "str",
    "note": "str",
    "is_confirmed": "flag",
}
TASK_FIELDS = {
    "title": "str",
    "text": "str",
    "customer_ids": "ints",
    "assigned_ids": "ints",
    "branch_ids": "ints",
    "user_id": "int",
    "due_date": "date",
    "priority": "int",
    "is_done": "flag",
    "is_private": "flag",
    "is_notify": "flag",
}
FIELD_LABELS = {
    "name": "ФИО",
    "phone": "Телефон",
    "email": "E-mail",
    "lead_status_id": "Этап воронки",
    "lead_source_id": "Источник",
    "assigned_id": "Ответственный",
    "income": "Сумма",
    "title": "Тема",
    "comment": "Комментарий",
}
_AUTO_FIELDS = ("created_at", "updated_at", "balance", "paid_count")
# log/index `event` (YegorPanin/alfacrm-client src/alfacrm/models/log.py: "1-добавление, 2-..., 3-удаление";
# aioalfacrm's fixture: event=1 with an integer type)
_LOG_EVENTS = {"create": 1, "update": 2, "delete": 3}


def _db_value(value: Any) -> Any:
    """How Yii returns a column: DECIMAL as "575.00", dates as "YYYY-MM-DD", ints as ints."""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.strftime(TIME_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [_db_value(item) for item in value]
    return value


def _form_value(value: Any) -> Any:
    """What a submitted form carries: strings (lists of strings), as typed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return [_form_value(item) for item in value]
    if isinstance(value, Decimal | int | float):
        return str(value)
    return str(value)


def _ru_date(value: Any) -> Any:
    return value.strftime("%d.%m.%Y") if isinstance(value, date) else value


def _updated_between(records: list[dict[str, Any]], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`pay/index`'s `updated_at_from` / `updated_at_to` (days, `dd.mm.yyyy`, inclusive), as YegorPanin/
    alfacrm-client's `PayFilter` lists them (one client, unverified against a server; docs/external-apis.md).
    `customer/index` has no such filter in any public client: there it is an unknown key, ignored like every
    other."""
    low, high = _parse_date(body.get("updated_at_from")), _parse_date(body.get("updated_at_to"))
    return [
        r
        for r in records
        if (low is None or r["updated_at"].date() >= low) and (high is None or r["updated_at"].date() <= high)
    ]


class AlfaCrmSandbox:
    """An in-memory AlfaCRM account with two branches, seeded school data and webhook triggers."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        sender: Sender | None = None,
        seed: bool = True,
        burst_limit: int = 5,
        required_customer_fields: Iterable[str] = ("name",),
        error_style: str = "map",
        custom_fields: Iterable[str] = ("custom_utm_source", "custom_child_age"),
        omit_webhook_branch_id: bool = False,
        retry_after_header: bool = False,
        with_user_index: bool = True,
        log_fields_style: str = "list",
        phone_search: str = "digits_substring",
        comment_requires_user_id: bool = False,
        archive_flag_in_records: bool = False,
    ) -> None:
        self.clock: Callable[[], datetime] = clock or local_now
        self._sender = sender
        self.burst_limit = burst_limit
        self.required_customer_fields = tuple(required_customer_fields)
        self.error_style = error_style  # "map" {field: [..]}, "list" ["..."], "yii" [{"field","message"}]
        self.custom_fields = tuple(custom_fields)
        self.omit_webhook_branch_id = omit_webhook_branch_id
        self.retry_after_header = retry_after_header
        self.with_user_index = with_user_index
        self.log_fields_style = log_fields_style  # "map" or "list" (of one-key maps)
        self.phone_search = phone_search  # "digits_substring" | "digits" | "exact"
        self.comment_requires_user_id = comment_requires_user_id
        self.archive_flag_in_records = archive_flag_in_records
        self.throttle_message = "Please try in 1 second"  # AlfaCRM's 429 text
        self._lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, tuple[str, datetime]] = {}
        self.stats: Counter[str] = Counter()
        self._windows: dict[str, tuple[int, int]] = {}
        self._failures: list[tuple[int, float | None]] = []
        self._hangs: list[float] = []  # seconds each of the next v2api requests sleeps before it is handled
        self._released = threading.Event()
        self._drop_deliveries = 0
        self._lose_log = 0
        self._late_writes: list[str] = []  # entities whose next create/update answers 504 and lands later
        self._landing: list[Callable[[], Response]] = []
        # random faults for chaos runs (`configure_faults`); off unless configured
        self.faults = Faults()
        self.hang_seconds = 2.0
        self.webhooks: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self._ids: Counter[str] = Counter()
        self.branches: dict[int, dict[str, Any]] = {}
        self.lookups: dict[str, dict[int, dict[str, Any]]] = {}
        self.customers: dict[int, dict[str, Any]] = {}
        self.pays: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.communications: dict[int, dict[str, Any]] = {}
        self.add_account(DEFAULT_EMAIL, DEFAULT_API_KEY, user_id=API_USER_ID)
        # a manager's own key: their role has no v2api module, so AlfaCRM answers 403
        self.add_account(MANAGER_EMAIL, MANAGER_API_KEY, user_id=MANAGER_USER_ID, has_v2api=False)
        self._seed_lookups()
        if seed:
            self._seed_records()
        self.app = self._wsgi

    # --- configuration ----------------------------------------------------------------------------------
    def add_account(self, email: str, api_key: str, *, user_id: int = API_USER_ID, has_v2api: bool = True) -> None:
        self.accounts[email.lower()] = Account(email, api_key, user_id, has_v2api)

    def add_webhook(self, branch_id: int, url: str, entities: Iterable[str] = ("Customer", "Pay")) -> None:
        """One trigger per branch and target entity, reaction "Webhook" (AlfaCRM: Триггеры и вебхуки)."""
        with self._lock:
            self.webhooks.append({"branch_id": int(branch_id), "url": url, "entities": list(entities)})

    def clear_webhooks(self) -> None:
        with self._lock:
            self.webhooks.clear()

    def set_sender(self, sender: Sender) -> None:
        self._sender = sender

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """The next `count` v2api requests answer `status` (429 or 5xx)."""
        with self._lock:
            self._failures.extend([(int(status), retry_after)] * int(count))

    def lose_next_log_entries(self, count: int = 1) -> None:
        """Leave the next changes out of `log/index` (fault injection: nothing documents the log as complete,
        and the reconciler's first run starts at the log's end, so a change before it is not replayed)."""
        with self._lock:
            self._lose_log += int(count)

    def hang_next(self, seconds: float, count: int = 1) -> None:
        """The next `count` v2api requests sleep `seconds` before they are handled (a hung account)."""
        with self._lock:
            self._released.clear()
            self._hangs.extend([float(seconds)] * int(count))

    def release(self) -> None:
        """Answer hung requests now and hang no more (a test or the local stack stopping)."""
        with self._lock:
            self._hangs.clear()
        self._released.set()

    def configure_faults(
        self,
        rates: Mapping[str, float],
        *,
        seed: int = 0,
        caps: Mapping[str, int] | None = None,
        hang_seconds: float | None = None,
        each_within: int = 0,
    ) -> None:
        """Random faults per v2api request, each kind switchable by its rate (0 = off):

        - `expire`: the account's tokens expire before this request (AlfaCRM tokens live 15 minutes, so a
          long-lived container meets a 401 mid-run and must log in again);
        - `429`: the burst limiter refuses it ("Please try in 1 second"), as AlfaCRM does above ~5 req/s;
        - `500`, `502`, `503`: the server or its proxy fails before doing anything;
        - `hang`: the answer comes after `hang_seconds` (an overloaded server: the client's read timeout
          fires, yet the request is then applied — a write may have happened);
        - `applied_504`: a create/update is applied, then the gateway answers 504 (nginx in front of PHP
          times out while the write commits), so only a read-back tells whether it happened.
        `each_within`: every kind switched on happens at least once within that many eligible requests.
        """
        if hang_seconds is not None:
            self.hang_seconds = float(hang_seconds)
        self.faults.configure(dict(rates), seed=seed, caps=dict(caps or {}), each_within=each_within)

    def answer_504_then_apply(self, entity: str, count: int = 1) -> None:
        """The next `count` creates/updates of `entity` answer 504 at once and are carried out only when
        `land_late_writes()` is called. nginx answers 504 when PHP-FPM has not replied within
        `fastcgi_read_timeout` (nginx docs, ngx_http_fastcgi_module) but PHP goes on running the request: a
        script notices a gone client only when it next writes output (PHP manual, "Connection handling"), so
        the write commits after the client was told it timed out, and a read-back made in between misses it."""
        with self._lock:
            self._late_writes.extend([entity] * int(count))

    def land_late_writes(self) -> int:
        """Carry out the writes `answer_504_then_apply` held (→ how many)."""
        with self._lock:
            landing, self._landing = self._landing, []
        for write in landing:
            write()
        return len(landing)

    def drop_next_deliveries(self, count: int = 1) -> None:
        """Lose the next webhook deliveries (AlfaCRM documents no retry): the log still has the change."""
        with self._lock:
            self._drop_deliveries += int(count)

    def configure(self, options: Mapping[str, Any]) -> None:
        allowed = {
            "burst_limit": int,
            "required_customer_fields": tuple,
            "error_style": str,
            "custom_fields": tuple,
            "omit_webhook_branch_id": bool,
            "retry_after_header": bool,
            "with_user_index": bool,
            "throttle_message": str,
            "log_fields_style": str,
            "phone_search": str,
            "comment_requires_user_id": bool,
            "archive_flag_in_records": bool,
        }
        with self._lock:
            for key, value in options.items():
                if key not in allowed:
                    raise ValueError(f"unknown option {key}")
                setattr(self, key, allowed[key](value))

    # --- seeds ---------------------------------------------------------------------------------------------
    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _seed_lookups(self) -> None:
        self.branches = {
            1: {"id": 1, "name": "Центральный", "is_active": 1, "subject_ids": [1, 2], "weight": 1},
            2: {"id": 2, "name": "Северный", "is_active": 1, "subject_ids": [1], "weight": 2},
        }
        # ids follow creation order, weights the funnel order ("Пробное проведено" was added later)
        statuses = [
            (1, "Новый", 1),
            (2, "Связались", 2),
            (3, "Записан на пробное", 3),
            (7, "Пробное проведено", 4),
            (4, "Оплатил", 5),
            (5, "Отказ", 6),
            (6, "Не дозвонились", 7),
        ]
        self.lookups["lead-status"] = {
            sid: {"id": sid, "name": name, "is_enabled": 1, "weight": weight} for sid, name, weight in statuses
        }
        sources = [(1, "site", "Сайт"), (2, "chat", "Онлайн-чат"), (3, "call", "Звонок"), (4, "friend", "Рекомендация")]
        self.lookups["lead-source"] = {
            sid: {"id": sid, "code": code, "name": name, "is_enabled": 1, "weight": sid} for sid, code, name in sources
        }
        self.lookups["lead-reject"] = {
            rid: {"id": rid, "name": name, "is_enabled": 1, "weight": rid}
            for rid, name in [(1, "Дорого"), (2, "Не подошло расписание"), (3, "Не выходит на связь")]
        }
        self.lookups["customer-reject"] = {
            rid: {"id": rid, "name": name, "is_enabled": 1, "weight": rid}
            for rid, name in [(1, "Переезд"), (2, "Закончил обучение")]
        }
        self.lookups["study-status"] = {
            sid: {"id": sid, "name": name, "is_enabled": 1, "weight": sid}
            for sid, name in [(1, "Занимается"), (2, "Пауза")]
        }
        self.lookups["teacher"] = {
            1: {"id": 1, "name": "Соколова Анна Викторовна", "branch_ids": [1], "is_active": 1},
            2: {"id": 2, "name": "Волков Игорь Петрович", "branch_ids": [1, 2], "is_active": 1},
            3: {"id": 3, "name": "Лебедева Мария Андреевна", "branch_ids": [2], "is_active": 1},
        }
        # entities/pay_item.py (aioalfacrm): {id, name, branch_ids, category_id, pay_type_ids, weight}
        self.lookups["pay-item"] = {
            iid: {
                "id": iid,
                "name": name,
                "branch_ids": [1, 2],
                "category_id": None,
                "pay_type_ids": types,
                "weight": iid,
            }
            for iid, name, types in [
                (1, "Обучение", [1]),
                (2, "Учебные материалы", [1, 9]),
                (3, "Возврат за обучение", [2]),
            ]
        }
        self.lookups["user"] = {
            1: {"id": 1, "name": "Администратор", "email": "admin@school.test", "is_active": 1},
            MANAGER_USER_ID: {"id": MANAGER_USER_ID, "name": "Ольга Менеджер", "email": MANAGER_EMAIL, "is_active": 1},
            API_USER_ID: {"id": API_USER_ID, "name": "API интеграция", "email": DEFAULT_EMAIL, "is_active": 1},
        }

    def _seed_records(self) -> None:
        started = self.clock() - timedelta(days=45)
        seeds: list[dict[str, Any]] = [
            {
                "name": "Смирнова Анна Сергеевна",
                "is_study": 1,
                "branch_ids": [1],
                "teacher_ids": [1],
                "lead_status_id": 4,
                "lead_source_id": 1,
                "assigned_id": MANAGER_USER_ID,
                "phone": ["+7(916)123-45-67"],
                "email": ["anna.smirnova@example.ru"],
                "dob": "12.05.2014",
                "custom_utm_source": "yandex",
                "custom_child_age": "10",
            },
            {
                "name": "Петров Илья",
                "is_study": 0,
                "branch_ids": [1],
                "lead_status_id": 2,
                "lead_source_id": 2,
                "assigned_id": MANAGER_USER_ID,
                "phone": ["89161234568"],
            },
            {
                "name": "Коваленко Олег",
                "is_study": 0,
                "branch_ids": [2],
                "lead_status_id": 3,
                "lead_source_id": 3,
                "phone": ["+380(97)047-32-99"],
                "email": ["oleg.k@example.com"],
            },
            {
                "name": "Иванова Мария",
                "is_study": 0,
                "branch_ids": [1],
                "lead_status_id": 5,
                "lead_reject_id": 1,
                "lead_source_id": 1,
                "phone": ["8 (903) 555-12-34"],
                "removed": 1,
            },
        ]
        for number, fields in enumerate(seeds):
            record = self._new_customer(fields, branch_id=fields["branch_ids"][0])
            record["created_at"] = record["updated_at"] = started + timedelta(days=number, hours=2)
            self.customers[record["id"]] = record
        self.customers[1]["balance"] = Decimal("4500.00")
        self.customers[1]["paid_count"] = 8
        for number, day in enumerate((5, 35)):
            pay = self._new_pay(
                {
                    "customer_id": 1,
                    "income": "4500",
                    "document_date": (started + timedelta(days=day)).date().isoformat(),
                    "pay_type_id": 1,
                    "pay_account_id": 1,
                    "pay_item_id": 1,
                    "teacher_id": 1,
                    "payer_name": "Смирнова Елена",
                    "note": f"Абонемент {number + 1}",
                },
                branch_id=1,
            )
            self.pays[pay["id"]] = pay

    # --- records -------------------------------------------------------------------------------------------
    def _coerce(self, fields: Mapping[str, Any], schema: Mapping[str, str], *, custom: bool) -> dict[str, Any]:
        """Input → database types. Unknown keys are dropped silently (Yii's "safe attributes")."""
        out: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for key, value in fields.items():
            if key in schema:
                try:
                    out[key] = _PARSERS[schema[key]](value)
                except ValueError as exc:
                    errors[key] = [f"Значение «{FIELD_LABELS.get(key, key)}» {exc}."]
            elif custom and key in self.custom_fields:
                out[key] = _parse_str(value)
        if errors:
            raise _Invalid(errors)
        return out

    def _check_refs(self, record: Mapping[str, Any], refs: Mapping[str, str]) -> None:
        errors = {}
        for key, lookup in refs.items():
            value = record.get(key)
            table = self.customers if lookup == "customer" else self.lookups[lookup]
            if value is not None and value not in table:
                errors[key] = [f"Значение «{FIELD_LABELS.get(key, key)}» неверно."]
        if errors:
            raise _Invalid(errors)

    def _required(self, record: Mapping[str, Any], names: Iterable[str]) -> None:
        errors = {}
        for name in names:
            value = record.get(name)
            if value is None or value == "" or value == []:
                errors[name] = [f"Необходимо заполнить «{FIELD_LABELS.get(name, name)}»."]
        if errors:
            raise _Invalid(errors)

    def _new_customer(
        self, fields: Mapping[str, Any], *, branch_id: int, required: Iterable[str] = ()
    ) -> dict[str, Any]:
        values = self._coerce(fields, CUSTOMER_FIELDS, custom=True)
        now = self.clock()
        record: dict[str, Any] = {
            "id": 0,
            "branch_ids": [branch_id],
            "teacher_ids": [],
            "name": "",
            "is_study": 0,
            "study_status_id": None,
            "lead_status_id": None,
            "lead_source_id": None,
            "lead_reject_id": None,
            "customer_reject_id": None,
            "assigned_id": None,
            "legal_type": 1,
            "legal_name": "",
            "dob": None,
            "balance": Decimal("0.00"),
            "paid_count": 0,
            "phone": [],
            "email": [],
            "web": [],
            "addr": [],
            "note": "",
            "removed": 0,
            **dict.fromkeys(self.custom_fields, ""),
            "created_at": now,
            "updated_at": now,
        }
        record.update(values)
        self._required(record, required)
        self._check_refs(
            record,
            {"lead_status_id": "lead-status", "lead_source_id": "lead-source", "assigned_id": "user"},
        )
        record["id"] = self._next_id("customer")
        return record

    def _new_pay(self, fields: Mapping[str, Any], *, branch_id: int) -> dict[str, Any]:
        values = self._coerce(fields, PAY_FIELDS, custom=False)
        record: dict[str, Any] = {
            "id": 0,
            "branch_id": branch_id,
            "customer_id": None,
            "income": None,
            "document_date": self.clock().date(),
            "pay_type_id": 1,
            "pay_account_id": 1,
            "pay_item_id": None,
            "teacher_id": None,
            "commodity_id": None,
            "payer_name": "",
            "note": "",
            "is_confirmed": 1,
            # YegorPanin/alfacrm-client's PayResponse: `created_at` / `updated_at` as days (dd.mm.yyyy)
            "created_at": self.clock(),
            "updated_at": self.clock(),
        }
        record.update(values)
        self._required(record, ["income"])
        self._check_refs(record, {"customer_id": "customer", "teacher_id": "teacher"})
        record["id"] = self._next_id("pay")
        return record

    def render_customer(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A customer as `customer/index` returns it: balance "575.00", dob "dd.mm.yyyy", phones as typed; no
        archive flag unless `archive_flag_in_records` (the archive is an index filter, `removed`)."""
        out = {key: _db_value(value) for key, value in record.items()}
        out["dob"] = _ru_date(record.get("dob"))
        if not self.archive_flag_in_records:
            out.pop("removed", None)
        return out

    def render_pay(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A payment as `pay/index` returns it: income and several ids as strings, date as `dd.mm.yyyy`."""
        out = {key: _db_value(value) for key, value in record.items()}
        for key in ("customer_id", "pay_type_id", "pay_account_id", "pay_item_id"):
            if out.get(key) is not None:
                out[key] = str(out[key])
        out["document_date"] = _ru_date(record.get("document_date"))
        for key in ("created_at", "updated_at"):
            if isinstance(record.get(key), datetime):
                out[key] = _ru_date(record[key].date())
        return out

    def render_task(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {key: _db_value(value) for key, value in record.items()}

    def render_communication(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {key: _db_value(value) for key, value in record.items()}

    # --- events: the change log and the webhooks -----------------------------------------------------------
    def _event(
        self,
        entity: str,
        event: str,
        entity_id: int,
        *,
        branch_id: int,
        user_id: int,
        fields_old: Mapping[str, Any],
        fields_new: Mapping[str, Any],
    ) -> list[tuple[str, dict[str, Any]]]:
        """Record a change in `log/index` and return the webhook deliveries it triggers (sent after unlock)."""
        now = self.clock()
        if not self.archive_flag_in_records:
            # the archive flag shows in no record, webhook or log entry: the reason (`lead_reject_id`) does
            fields_old = {k: v for k, v in fields_old.items() if k != "removed"}
            fields_new = {k: v for k, v in fields_new.items() if k != "removed"}
        if self._lose_log:
            self._lose_log -= 1  # fault injection: see lose_next_log_entries
        else:
            self.log.append(
                {
                    "id": self._next_id("log"),
                    "entity": entity,
                    "entity_id": entity_id,
                    "user_id": user_id,
                    "event": _LOG_EVENTS[event],
                    "fields_old": self._log_fields(fields_old),
                    "fields_new": self._log_fields(fields_new),
                    "fields_rel": [],
                    "date_time": now.strftime(TIME_FORMAT),
                }
            )
        body: dict[str, Any] = {
            "branch_id": branch_id,
            "event": event,
            "entity": entity,
            "entity_id": entity_id,
            # PHP's json_encode writes an empty array as [] (not {})
            "fields_old": dict(fields_old) or [],
            "fields_new": dict(fields_new) or [],
            "fields_rel": [],
            "user_id": user_id,
            "datetime": now.strftime(TIME_FORMAT),
        }
        if self.omit_webhook_branch_id:
            del body["branch_id"]
        return [
            (hook["url"], body)
            for hook in self.webhooks
            if hook["branch_id"] == branch_id and entity in hook["entities"]
        ]

    def _log_fields(self, fields: Mapping[str, Any]) -> Any:
        """A log entry's fields: a map, or a list of one-key maps (both seen by clients of real accounts)."""
        if self.log_fields_style == "list":
            return [{key: value} for key, value in fields.items()]
        return dict(fields) or []

    def _deliver(self, outbox: list[tuple[str, dict[str, Any]]]) -> None:
        for url, body in outbox:
            # compact, \u-escaped JSON like PHP's json_encode, under a form content type
            raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "*/*"}
            record: dict[str, Any] = {"url": url, "body": body, "status": None, "error": None}
            with self._lock:
                dropped = self._drop_deliveries > 0
                if dropped:
                    self._drop_deliveries -= 1
            if dropped:
                record["error"] = "dropped by the sandbox"
            else:
                if self._sender is None:
                    self._sender = http_sender()
                try:
                    record["status"] = self._sender("POST", url, raw, headers)
                except Exception as exc:  # a failed delivery is recorded, never raised (AlfaCRM does not retry)
                    record["error"] = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.deliveries.append(record)

    @staticmethod
    def _diff(
        record: Mapping[str, Any], values: Mapping[str, Any], raw: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Only the changed fields: old as database values, new as the submitted form strings."""
        old, new = {}, {}
        for key, value in values.items():
            if record.get(key) != value:
                old[key] = _db_value(record.get(key))
                new[key] = _form_value(raw.get(key, value))
        return old, new

    # --- customer and pay operations (shared by the API and the manager "UI") -----------------------------
    def _customer(self, customer_id: int) -> dict[str, Any]:
        record = self.customers.get(int(customer_id))
        if record is None:
            raise _yii_error(404, "Not Found", f"Customer {customer_id} not found")
        return record

    def _pay(self, pay_id: int) -> dict[str, Any]:
        record = self.pays.get(int(pay_id))
        if record is None:
            raise _yii_error(404, "Not Found", f"Pay {pay_id} not found")
        return record

    def _create_customer(
        self, fields: Mapping[str, Any], *, branch_id: int, user_id: int, validate: bool
    ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        required = self.required_customer_fields if validate else ()
        record = self._new_customer(fields, branch_id=branch_id, required=required)
        self.customers[record["id"]] = record
        submitted = {key: value for key, value in fields.items() if key in CUSTOMER_FIELDS or key in self.custom_fields}
        outbox = self._event(
            "Customer",
            "create",
            record["id"],
            branch_id=branch_id,
            user_id=user_id,
            fields_old={},
            fields_new={key: _form_value(value) for key, value in submitted.items()},
        )
        return record, outbox

    def _update_customer(
        self, customer_id: int, fields: Mapping[str, Any], *, branch_id: int | None, user_id: int
    ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        record = self._customer(customer_id)
        values = self._coerce(fields, CUSTOMER_FIELDS, custom=True)
        self._check_refs(
            {**record, **values},
            {"lead_status_id": "lead-status", "lead_source_id": "lead-source", "assigned_id": "user"},
        )
        old, new = self._diff(record, values, fields)
        if not new:
            return record, []
        record.update(values)
        record["updated_at"] = self.clock()
        branch = branch_id if branch_id is not None else (record["branch_ids"] or [1])[0]
        outbox = self._event(
            "Customer", "update", record["id"], branch_id=branch, user_id=user_id, fields_old=old, fields_new=new
        )
        return record, outbox

    def _create_pay(
        self, fields: Mapping[str, Any], *, branch_id: int, user_id: int
    ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        record = self._new_pay(fields, branch_id=branch_id)
        self.pays[record["id"]] = record
        submitted = {key: _form_value(value) for key, value in fields.items() if key in PAY_FIELDS}
        # AlfaCRM adds the branch to a payment's fields_new as a number (see the captured Pay webhooks)
        submitted["branch_id"] = branch_id
        outbox = self._event(
            "Pay", "create", record["id"], branch_id=branch_id, user_id=user_id, fields_old={}, fields_new=submitted
        )
        return record, outbox

    def _update_pay(
        self, pay_id: int, fields: Mapping[str, Any], *, user_id: int
    ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        record = self._pay(pay_id)
        values = self._coerce(fields, PAY_FIELDS, custom=False)
        values.pop("branch_id", None)
        self._check_refs({**record, **values}, {"customer_id": "customer", "teacher_id": "teacher"})
        old, new = self._diff(record, values, fields)
        if not new:
            return record, []
        record.update(values)
        record["updated_at"] = self.clock()
        outbox = self._event(
            "Pay",
            "update",
            record["id"],
            branch_id=record["branch_id"],
            user_id=user_id,
            fields_old=old,
            fields_new=new,
        )
        return record, outbox

    def _delete_pay(self, pay_id: int, *, user_id: int) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        record = self.pays.pop(self._pay(pay_id)["id"])
        old = {key: _db_value(value) for key, value in record.items() if key != "id"}
        outbox = self._event(
            "Pay", "delete", record["id"], branch_id=record["branch_id"], user_id=user_id, fields_old=old, fields_new={}
        )
        return record, outbox

    # --- manager "UI" (what a school manager does in AlfaCRM) ----------------------------------------------
    def ui_create_customer(
        self, fields: Mapping[str, Any], *, branch_id: int = 1, user_id: int = MANAGER_USER_ID
    ) -> dict[str, Any]:
        with self._lock:
            record, outbox = self._create_customer(fields, branch_id=branch_id, user_id=user_id, validate=False)
            rendered = self.render_customer(record)
        self._deliver(outbox)
        return rendered

    def ui_update_customer(
        self,
        customer_id: int,
        fields: Mapping[str, Any],
        *,
        branch_id: int | None = None,
        user_id: int = MANAGER_USER_ID,
    ) -> dict[str, Any]:
        with self._lock:
            record, outbox = self._update_customer(customer_id, fields, branch_id=branch_id, user_id=user_id)
            rendered = self.render_customer(record)
        self._deliver(outbox)
        return rendered

    def ui_archive_customer(
        self,
        customer_id: int,
        *,
        reason_id: int | None = None,
        branch_id: int | None = None,
        user_id: int = MANAGER_USER_ID,
    ) -> dict[str, Any]:
        """Archive with a reason (a lead's `lead_reject_id`, a client's `customer_reject_id`): an update whose
        visible change is the reason (the archive flag itself shows nowhere, see the module doc)."""
        with self._lock:
            record = self._customer(customer_id)
            if record["is_study"]:
                fields = {"removed": 1, "customer_reject_id": reason_id or 1}
            else:
                fields = {"removed": 1, "lead_reject_id": reason_id or 1}
            record, outbox = self._update_customer(customer_id, fields, branch_id=branch_id, user_id=user_id)
            rendered = self.render_customer(record)
        self._deliver(outbox)
        return rendered

    def ui_restore_customer(
        self, customer_id: int, *, branch_id: int | None = None, user_id: int = MANAGER_USER_ID
    ) -> dict[str, Any]:
        """Back from the archive: the refusal reason is cleared."""
        with self._lock:
            record = self._customer(customer_id)
            reason = "customer_reject_id" if record["is_study"] else "lead_reject_id"
            record, outbox = self._update_customer(
                customer_id, {"removed": 0, reason: None}, branch_id=branch_id, user_id=user_id
            )
            rendered = self.render_customer(record)
        self._deliver(outbox)
        return rendered

    def ui_create_pay(
        self, fields: Mapping[str, Any], *, branch_id: int = 1, user_id: int = MANAGER_USER_ID
    ) -> dict[str, Any]:
        with self._lock:
            record, outbox = self._create_pay(fields, branch_id=branch_id, user_id=user_id)
            rendered = self.render_pay(record)
        self._deliver(outbox)
        return rendered

    def ui_update_pay(
        self, pay_id: int, fields: Mapping[str, Any], *, user_id: int = MANAGER_USER_ID
    ) -> dict[str, Any]:
        with self._lock:
            record, outbox = self._update_pay(pay_id, fields, user_id=user_id)
            rendered = self.render_pay(record)
        self._deliver(outbox)
        return rendered

    def ui_delete_pay(self, pay_id: int, *, user_id: int = MANAGER_USER_ID) -> dict[str, Any]:
        with self._lock:
            record, outbox = self._delete_pay(pay_id, user_id=user_id)
            rendered = self.render_pay(record)
        self._deliver(outbox)
        return rendered

    def add_customers(self, count: int, *, branch_id: int = 1, is_study: int = 0) -> list[int]:
        """Bulk data for paging tests and benchmarks (no webhooks, no log: an import)."""
        ids = []
        with self._lock:
            for number in range(count):
                record = self._new_customer(
                    {
                        "name": f"Ученик {number + 1:04d}",
                        "is_study": is_study,
                        "phone": [f"+7(900){number // 10000:03d}-{(number // 100) % 100:02d}-{number % 100:02d}"],
                        "lead_status_id": 1,
                        "lead_source_id": 1,
                    },
                    branch_id=branch_id,
                )
                self.customers[record["id"]] = record
                ids.append(record["id"])
        return ids

    # --- state -------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "customers": [self.render_customer(record) for record in self.customers.values()],
                "pays": [self.render_pay(record) for record in self.pays.values()],
                "tasks": [self.render_task(record) for record in self.tasks.values()],
                "communications": [self.render_communication(record) for record in self.communications.values()],
                "deliveries": copy.deepcopy(self.deliveries),
                "log": copy.deepcopy(self.log),
                "webhooks": copy.deepcopy(self.webhooks),
                "stats": dict(self.stats),
            }

    def comments_for(self, customer_id: int) -> list[str]:
        with self._lock:
            return [
                record["comment"]
                for record in self.communications.values()
                if record["class"] == "Customer" and record["related_id"] == customer_id
            ]

    # --- WSGI ----------------------------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except _Reply as reply:
            response = reply.response
        except json.JSONDecodeError:
            response = _yii_error(400, "Bad Request", "Invalid JSON body").response
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path.startswith("/_sandbox/"):
            return self._control(request, path[len("/_sandbox/") :])
        if path.startswith("/v2api/"):
            if request.method != "POST":
                raise _yii_error(405, "Method Not Allowed", "Method Not Allowed. This URL can only handle: POST")
            return self._api(request, path[len("/v2api/") :].split("/"))
        raise _yii_error(404, "Not Found", "Page not found.")

    # --- control routes ----------------------------------------------------------------------------------
    def _control(self, request: Request, route: str) -> Response:
        body = read_json(request) if request.method == "POST" else {}
        query = request.args
        if route == "state" and request.method == "GET":
            return json_response(self.state())
        if request.method == "DELETE" and route == "webhooks":
            self.clear_webhooks()
            return json_response({"ok": True})
        if request.method != "POST":
            raise _yii_error(405, "Method Not Allowed", "use POST")
        if route == "expire-tokens":
            self.expire_tokens()
            return json_response({"ok": True})
        if route == "fail":
            self.fail_next(int(body.get("status", 500)), int(body.get("count", 1)), body.get("retry_after"))
            return json_response({"ok": True})
        if route == "webhooks":
            self.add_webhook(int(body["branch_id"]), str(body["url"]), body.get("entities") or ("Customer", "Pay"))
            return json_response({"ok": True, "webhooks": self.webhooks})
        if route == "hang":
            self.hang_next(float(body.get("seconds", 20)), int(body.get("count", 1)))
            return json_response({"ok": True})
        if route == "faults":
            self.configure_faults(
                body.get("rates") or {},
                seed=int(body.get("seed", 0)),
                caps=body.get("caps"),
                hang_seconds=body.get("hang_seconds"),
                each_within=int(body.get("each_within", 0)),
            )
            return json_response({"ok": True})
        if route == "webhooks/drop":
            self.drop_next_deliveries(int(body.get("count", 1)))
            return json_response({"ok": True})
        if route == "config":
            try:
                self.configure(body)
            except ValueError as exc:
                raise _Reply(400, {"error": str(exc)}) from None
            return json_response({"ok": True})
        if route == "accounts":
            self.add_account(
                str(body["email"]),
                str(body["api_key"]),
                user_id=int(body.get("user_id", API_USER_ID)),
                has_v2api=bool(body.get("has_v2api", True)),
            )
            return json_response({"ok": True})
        if route.startswith("ui/"):
            return self._ui(route[3:], body, query)
        raise _yii_error(404, "Not Found", f"unknown sandbox route {route}")

    def _ui(self, route: str, body: Mapping[str, Any], query: Mapping[str, str]) -> Response:
        user_id = int(query.get("user_id", MANAGER_USER_ID))
        branch = int(query["branch_id"]) if query.get("branch_id") else None
        record_id = int(query["id"]) if query.get("id") else None
        try:
            if route == "customer/create":
                model = self.ui_create_customer(body, branch_id=branch or 1, user_id=user_id)
            elif route == "pay/create":
                model = self.ui_create_pay(body, branch_id=branch or 1, user_id=user_id)
            elif record_id is None:
                raise _Reply(400, {"error": "id is required in the query string"})
            elif route == "customer/update":
                model = self.ui_update_customer(record_id, body, branch_id=branch, user_id=user_id)
            elif route == "customer/archive":
                reason = body.get("reason_id")
                model = self.ui_archive_customer(
                    record_id, reason_id=int(reason) if reason else None, branch_id=branch, user_id=user_id
                )
            elif route == "customer/restore":
                model = self.ui_restore_customer(record_id, branch_id=branch, user_id=user_id)
            elif route == "pay/update":
                model = self.ui_update_pay(record_id, body, user_id=user_id)
            elif route == "pay/delete":
                model = self.ui_delete_pay(record_id, user_id=user_id)
            else:
                raise _yii_error(404, "Not Found", f"unknown UI action {route}")
        except _Invalid as invalid:
            raise _Reply(422, {"success": False, "errors": invalid.errors}) from None
        return json_response({"success": True, "model": model})

    # --- the v2api ---------------------------------------------------------------------------------------
    def _api(self, request: Request, parts: list[str]) -> Response:
        with self._lock:
            hang = self._hangs.pop(0) if self._hangs else 0.0
        if hang:
            self._released.wait(hang)  # outside the lock: one hung account must not stall the others
        with self._lock:
            self.stats["requests"] += 1
            if self._failures:
                status, retry_after = self._failures.pop(0)
                raise self._failure(status, retry_after)
        writes = parts[-1:] in (["create"], ["update"])
        if writes and len(parts) >= 2 and parts[-2] in self._late_writes:
            with self._lock:
                self._late_writes.remove(parts[-2])
                request.get_data(cache=True)  # kept for the late write
                self._landing.append(lambda: self._api_call(request, parts))
            raise _yii_error(504, "Gateway Timeout", "The gateway did not receive a timely response.")
        fault = self.faults.draw(("expire", "429", "500", "502", "503", "hang", *(("applied_504",) if writes else ())))
        if fault is not None:
            with self._lock:
                self.stats[f"fault_{fault}"] += 1
        if fault == "expire":
            # only tokens older than a few seconds: a token that expires right after its login is no expiry
            with self._lock:
                now = self.clock()
                for token, (_, issued) in list(self.tokens.items()):
                    if now - issued >= timedelta(seconds=5):
                        del self.tokens[token]
        elif fault in ("429", "500", "502", "503"):
            raise self._failure(int(fault), 1.0 if self.retry_after_header else None)
        elif fault == "hang":
            time.sleep(self.hang_seconds)
        response = self._api_call(request, parts)
        if fault == "applied_504":
            raise _yii_error(504, "Gateway Timeout", "The gateway did not receive a timely response.")
        return response

    def _api_call(self, request: Request, parts: list[str]) -> Response:
        if parts == ["auth", "login"]:
            return self._login(request)
        account = self._authenticate(request)
        if parts and parts[0].isdigit():
            branch_id: int | None = int(parts[0])
            parts = parts[1:]
        else:
            branch_id = None
        if len(parts) != 2:
            raise _yii_error(404, "Not Found", "Page not found.")
        entity, action = parts
        if branch_id is not None and branch_id not in self.branches:
            raise _yii_error(404, "Not Found", f"Branch {branch_id} not found")
        body = read_json(request)
        if not isinstance(body, dict):
            raise _yii_error(400, "Bad Request", "JSON object expected")
        with self._lock:
            self.stats[f"{entity}/{action}"] += 1
        try:
            return self._entity(entity, action, body, request.args, branch_id=branch_id, account=account)
        except _Invalid as invalid:
            # validation errors come with HTTP 200
            return json_response({"success": False, "errors": self._errors(invalid.errors), "model": []})

    def _failure(self, status: int, retry_after: float | None) -> _Reply:
        if status == 429:
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
            return _Reply(
                429,
                {"name": "Too Many Requests", "message": self.throttle_message, "code": 0, "status": 429},
                headers,
            )
        return _yii_error(status, "Internal Server Error", "An internal server error occurred.")

    def _errors(self, errors: dict[str, list[str]]) -> Any:
        if self.error_style == "list":
            return [message for messages in errors.values() for message in messages]
        if self.error_style == "yii":
            return [{"field": key, "message": message} for key, messages in errors.items() for message in messages]
        return errors

    def _throttle(self, key: str) -> None:
        """More than `burst_limit` requests by one account within one clock second → 429."""
        second = int((self.clock() - datetime(2000, 1, 1)).total_seconds())
        with self._lock:
            window, count = self._windows.get(key, (second, 0))
            if window != second:
                window, count = second, 0
            count += 1
            self._windows[key] = (window, count)
            if count > self.burst_limit:
                self.stats["throttled"] += 1
                raise self._failure(429, 1.0 if self.retry_after_header else None)

    def _login(self, request: Request) -> Response:
        body = read_json(request)
        email = str(body.get("email", "")).strip().lower() if isinstance(body, dict) else ""
        self._throttle(email)
        account = self.accounts.get(email)
        with self._lock:
            self.stats["login"] += 1
        if account is None or not secrets.compare_digest(str(body.get("api_key", "")), account.api_key):
            raise _yii_error(403, "Forbidden", "Access Denied")
        if not account.has_v2api:
            raise _yii_error(403, "Forbidden", "Access Denied")
        token = secrets.token_hex(16)
        with self._lock:
            self.tokens[token] = (account.email.lower(), self.clock())
        return json_response({"token": token})

    def _authenticate(self, request: Request) -> Account:
        token = request.headers.get("X-ALFACRM-TOKEN", "")
        with self._lock:
            entry = self.tokens.get(token)
            if entry is not None and self.clock() - entry[1] >= TOKEN_LIFETIME:
                del self.tokens[token]
                entry = None
        if entry is None:
            with self._lock:
                self.stats["unauthorized"] += 1
            raise _yii_error(401, "Unauthorized", "Your request was made with invalid credentials.")
        account = self.accounts[entry[0]]
        self._throttle(account.email.lower())
        return account

    def _entity(
        self,
        entity: str,
        action: str,
        body: dict[str, Any],
        query: Mapping[str, str],
        *,
        branch_id: int | None,
        account: Account,
    ) -> Response:
        user_id = account.user_id
        if entity == "customer":
            return self._customer_api(action, body, query, branch_id=branch_id, user_id=user_id)
        if entity == "pay":
            return self._pay_api(action, body, query, branch_id=branch_id, user_id=user_id)
        if entity == "task":
            return self._task_api(action, body, branch_id=branch_id, user_id=user_id)
        if entity == "communication":
            return self._communication_api(action, body, query, branch_id=branch_id, user_id=user_id)
        if action != "index":
            raise _yii_error(404, "Not Found", "Page not found.")
        if entity == "branch":
            return self._page(list(self.branches.values()), body, lambda record: record)
        if entity == "log":
            return self._log_index(body)
        if entity == "user" and not self.with_user_index:
            raise _yii_error(404, "Not Found", "Page not found.")
        if entity in self.lookups:
            records = list(self.lookups[entity].values())
            if entity == "teacher" and branch_id is not None:
                records = [record for record in records if branch_id in record["branch_ids"]]
            return self._page(self._filter(records, body), body, lambda record: record)
        raise _yii_error(404, "Not Found", "Page not found.")

    @staticmethod
    def _page(records: list[Any], body: Mapping[str, Any], render: Callable[[Any], Any]) -> Response:
        # page size is fixed at 50; `page_size`/`limit` in the body are ignored like on the real server
        try:
            page = max(int(body.get("page") or 0), 0)
        except (TypeError, ValueError):
            page = 0
        chunk = records[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        return json_response(
            {"total": len(records), "count": len(chunk), "page": page, "items": [render(r) for r in chunk]}
        )

    @staticmethod
    def _filter(records: list[dict[str, Any]], body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Equality filters on known columns (a list column matches when it contains the value)."""
        out = []
        for record in records:
            keep = True
            for key, wanted in body.items():
                if key in ("page", "page_size", "limit") or key not in record:
                    continue  # unknown filters are ignored, not rejected
                have = record[key]
                wanted_values = [str(item) for item in _parse_list(wanted)]
                if not wanted_values:
                    continue
                if isinstance(have, list):
                    keep = any(str(item) in wanted_values for item in have)
                else:
                    keep = str(_db_value(have)) in wanted_values
                if not keep:
                    break
            if keep:
                out.append(record)
        return out

    def _customer_api(
        self, action: str, body: dict[str, Any], query: Mapping[str, str], *, branch_id: int | None, user_id: int
    ) -> Response:
        if action == "index":
            with self._lock:
                records = self._search_customers(body, branch_id)
            return self._page(records, body, self.render_customer)
        if action == "create":
            with self._lock:
                record, outbox = self._create_customer(body, branch_id=branch_id or 1, user_id=user_id, validate=True)
                rendered = self.render_customer(record)
            self._deliver(outbox)
            return json_response({"success": True, "errors": [], "model": rendered})
        if action == "update":
            customer_id = self._query_id(query)
            with self._lock:
                record, outbox = self._update_customer(customer_id, body, branch_id=branch_id, user_id=user_id)
                rendered = self.render_customer(record)
            self._deliver(outbox)
            return json_response({"success": True, "errors": [], "model": rendered})
        raise _yii_error(404, "Not Found", "Page not found.")

    def _search_customers(self, body: Mapping[str, Any], branch_id: int | None) -> list[dict[str, Any]]:
        is_study = _parse_int(body.get("is_study"))
        removed = _parse_int(body.get("removed"))
        phone = str(body.get("phone") or "").strip()
        email = str(body.get("email") or "").strip().lower()
        name = str(body.get("name") or "").strip().lower()
        rest = {k: v for k, v in body.items() if k not in ("is_study", "removed", "phone", "email", "name")}
        found = []
        for record in self.customers.values():
            if branch_id is not None and branch_id not in record["branch_ids"]:
                continue
            # without is_study AlfaCRM lists clients only; 0 = leads, 2 = leads and clients
            study = 1 if is_study is None else is_study
            if study != 2 and record["is_study"] != study:
                continue
            # without removed: active only; 1 = active + archived; 2 = archived only
            if (removed in (None, 0) and record["removed"]) or (removed == 2 and not record["removed"]):
                continue
            if phone and not self._phone_matches(phone, record["phone"]):
                continue
            if email and not any(email == address.strip().lower() for address in record["email"]):
                continue
            if name and name not in record["name"].lower():
                continue
            found.append(record)
        return self._filter(found, rest)

    def _phone_matches(self, query: str, stored: list[str]) -> bool:
        if self.phone_search == "exact":
            return any(query == p.strip() for p in stored)
        wanted = _digits(query)
        if not wanted:
            return False
        if self.phone_search == "digits":
            return any(wanted == _digits(p) for p in stored)
        return any(wanted in _digits(p) for p in stored)

    def _pay_api(
        self, action: str, body: dict[str, Any], query: Mapping[str, str], *, branch_id: int | None, user_id: int
    ) -> Response:
        if action == "index":
            with self._lock:
                records = [p for p in self.pays.values() if branch_id is None or p["branch_id"] == branch_id]
                records = self._filter(_updated_between(records, body), body)
            return self._page(records, body, self.render_pay)
        if action == "create":
            with self._lock:
                record, outbox = self._create_pay(body, branch_id=branch_id or 1, user_id=user_id)
                rendered = self.render_pay(record)
        elif action == "update":
            with self._lock:
                record, outbox = self._update_pay(self._query_id(query), body, user_id=user_id)
                rendered = self.render_pay(record)
        elif action == "delete":
            with self._lock:
                record, outbox = self._delete_pay(self._query_id(query), user_id=user_id)
                rendered = self.render_pay(record)
        else:
            raise _yii_error(404, "Not Found", "Page not found.")
        self._deliver(outbox)
        return json_response({"success": True, "errors": [], "model": rendered})

    def _task_api(self, action: str, body: dict[str, Any], *, branch_id: int | None, user_id: int) -> Response:
        if action == "index":
            with self._lock:
                records = [
                    t for t in self.tasks.values() if branch_id is None or branch_id in (t["branch_ids"] or [branch_id])
                ]
                records = self._filter(records, body)
            return self._page(records, body, self.render_task)
        if action != "create":
            raise _yii_error(404, "Not Found", "Page not found.")
        with self._lock:
            values = self._coerce(body, TASK_FIELDS, custom=False)
            record: dict[str, Any] = {
                "id": 0,
                "branch_ids": [branch_id or 1],
                "title": "",
                "text": "",
                "customer_ids": [],
                "assigned_ids": [],
                "user_id": user_id,
                "due_date": None,
                "priority": 1,
                "is_done": 0,
                "is_private": 0,
                "is_notify": 0,
                **values,
                "created_at": self.clock(),
            }
            self._required(record, ["title"])
            record["id"] = self._next_id("task")
            self.tasks[record["id"]] = record
            outbox = self._event(
                "Task",
                "create",
                record["id"],
                branch_id=branch_id or 1,
                user_id=user_id,
                fields_old={},
                fields_new={key: _form_value(value) for key, value in body.items() if key in TASK_FIELDS},
            )
            rendered = self.render_task(record)
        self._deliver(outbox)
        return json_response({"success": True, "errors": [], "model": rendered})

    def _communication_api(
        self, action: str, body: dict[str, Any], query: Mapping[str, str], *, branch_id: int | None, user_id: int
    ) -> Response:
        # the owner goes in the query string, not the body
        owner_class = query.get("class")
        related = query.get("related_id")
        if not owner_class or not related or not related.isdigit():
            raise _yii_error(400, "Bad Request", "Missing required parameters: class, related_id")
        related_id = int(related)
        if action == "index":
            with self._lock:
                records = [
                    c
                    for c in self.communications.values()
                    if c["class"] == owner_class and c["related_id"] == related_id
                ]
                records = self._filter(records, body)
            return self._page(records, body, self.render_communication)
        if action != "create":
            raise _yii_error(404, "Not Found", "Page not found.")
        with self._lock:
            if owner_class == "Customer" and related_id not in self.customers:
                raise _Invalid({"related_id": [f"Клиент {related_id} не найден."]})
            comment = _parse_str(body.get("comment"))
            if not comment.strip():
                raise _Invalid({"comment": ["Необходимо заполнить «Комментарий»."]})
            author = _parse_int(body.get("user_id"))
            if author is None and self.comment_requires_user_id:
                raise _Invalid({"user_id": ["Необходимо заполнить «Автор»."]})
            if author is not None and author not in self.lookups["user"]:
                raise _Invalid({"user_id": ["Значение «Автор» неверно."]})
            record: dict[str, Any] = {
                "id": self._next_id("communication"),
                "type_id": _parse_int(body.get("type_id")) or 1,
                "class": owner_class,
                "related_id": related_id,
                "user_id": author or user_id,
                "added": self.clock(),
                "comment": comment,
            }
            self.communications[record["id"]] = record
            outbox = self._event(
                "Communication",
                "create",
                record["id"],
                branch_id=branch_id or 1,
                user_id=user_id,
                fields_old={},
                fields_new={"class": owner_class, "related_id": str(related_id), "comment": comment},
            )
            rendered = self.render_communication(record)
        self._deliver(outbox)
        return json_response({"success": True, "errors": [], "model": rendered})

    def _log_index(self, body: Mapping[str, Any]) -> Response:
        with self._lock:
            # newest first: the real export (KO_alfacrm_data leads_history_changes.csv) runs from the latest date
            records = list(reversed(self.log))
        if body.get("entity"):
            records = [r for r in records if r["entity"] == body["entity"]]
        if body.get("entity_id"):
            records = [r for r in records if str(r["entity_id"]) == str(body["entity_id"])]
        return self._page(records, body, lambda record: record)

    @staticmethod
    def _query_id(query: Mapping[str, str]) -> int:
        raw = query.get("id", "")
        if not re.fullmatch(r"\d+", raw or ""):
            raise _yii_error(400, "Bad Request", "Missing required parameters: id")
        return int(raw)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="AlfaCRM v2api sandbox")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-seed", action="store_true", help="start with no customers or payments")
    args = parser.parse_args(argv)
    sandbox = AlfaCrmSandbox(seed=not args.no_seed)
    served = ServedApp(sandbox.app, port=args.port, host=args.host).start()
    print(f"AlfaCRM sandbox on {served.url} (login {DEFAULT_EMAIL} / {DEFAULT_API_KEY})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        served.stop()


if __name__ == "__main__":
    main()
