"""AlfaCRM records as pydantic models: AlfaCRM's loose types are coerced here, once, at the edge.

What arrives (see `../shared/reference/alfacrm-api.md`): numbers as strings (`"145"`, `"575.00"`), booleans as
0/1/"0"/"1", dates as `dd.mm.yyyy` or `YYYY-MM-DD`, date-times as zone-less `YYYY-MM-DD HH:MM:SS`
(account-local), `[]` where an object is meant, and `""` where nothing is meant. The rules downstream see
clean Python types. Unknown fields are kept (`extra="allow"`): accounts differ and AlfaCRM adds fields.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from connector.models.raw import JsonObject, JsonValue

CUSTOM_PREFIX = "custom_"

# MySQL-backed apps emit zero dates for "no date"; they mean None, not year 0.
_ZERO_DATES = {"0000-00-00", "00.00.0000", "0000-00-00 00:00:00"}
_DATE_FORMATS = ("%d.%m.%Y", "%Y-%m-%d")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d.%m.%Y %H:%M:%S", "%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M")


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# AlfaCRM ids and counts are MySQL integers: anything wider is not an id but an attack or a typo, and
# refusing it before int() matters — int(Decimal("1e1000000")) builds a million-digit number (minutes of CPU).
INT_RANGE = 2**63
# Money keeps at most 18 digits before and after the point: 37 significant digits fit DynamoDB's 38.
MONEY_DIGITS = 18


def _shown(value: object) -> str:
    """The value as an error message quotes it: bounded, a 256 KB field is not echoed back whole."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def to_int(value: object) -> int | None:
    """`145`, `"145"`, `"145.0"`, `True` → int; `None`/`""` → None; ±2**63 and beyond is refused."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        return int(value)
    number: object = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text) if len(text) <= 20 else Decimal(text)
        except (ValueError, InvalidOperation):
            try:
                number = Decimal(text)  # "145.0"
            except InvalidOperation:
                raise ValueError(f"not an integer: {_shown(value)}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"not an integer: {_shown(value)}")
    if isinstance(number, Decimal) and (not number.is_finite() or number.adjusted() >= 19):
        raise ValueError(f"not an integer in range: {_shown(value)}")
    if isinstance(number, int | float | Decimal) and number == int(number):
        result = int(number)
        if -INT_RANGE <= result < INT_RANGE:
            return result
        raise ValueError(f"integer out of range: {_shown(value)}")
    raise ValueError(f"not an integer: {_shown(value)}")


def to_bool(value: object) -> bool | None:
    """0/1, "0"/"1", true/false (any case) → bool; `None`/`""` → None."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise ValueError(f"not a boolean: {value!r}")


def to_decimal(value: object) -> Decimal | None:
    """Money: `"575.00"`, `575`, `575.5` → Decimal (floats via str, so 0.1 stays 0.1)."""
    if _blank(value):
        return None
    number: Decimal | None = None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").replace("\u00a0", "")
        # a decimal comma appears in hand-typed values ("1044,50")
        if "," in text and "." not in text:
            text = text.replace(",", ".")
        with contextlib.suppress(InvalidOperation):
            number = Decimal(text)
    if number is None:
        raise ValueError(f"not a number: {_shown(value)}")
    # NaN, Infinity and "1e1000000" parse as Decimals; every later step (sums, int(), DynamoDB) chokes on them
    exponent = number.as_tuple().exponent
    if not number.is_finite() or not isinstance(exponent, int) or exponent < -MONEY_DIGITS:
        raise ValueError(f"not a number in range: {_shown(value)}")
    if number and number.adjusted() >= MONEY_DIGITS:
        raise ValueError(f"number out of range: {_shown(value)}")
    return number


def to_date(value: object) -> date | None:
    """`dd.mm.yyyy` or `YYYY-MM-DD` (a date-time string keeps its date part)."""
    if _blank(value) or (isinstance(value, str) and value.strip() in _ZERO_DATES):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        moment = to_datetime(text)
        if moment is not None:
            return moment.date()
    raise ValueError(f"not a date: {value!r}")


def to_datetime(value: object) -> datetime | None:
    """Zone-less `YYYY-MM-DD HH:MM:SS` (account-local) → naive datetime; a bare date → midnight."""
    if _blank(value) or (isinstance(value, str) and value.strip() in _ZERO_DATES):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        for fmt in _DATETIME_FORMATS:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
    raise ValueError(f"not a date-time: {value!r}")


def to_str(value: object) -> str | None:
    if _blank(value):
        return None
    return value if isinstance(value, str) else str(value)


def to_list(value: object) -> list[object]:
    """None/""/[] → []; a scalar → [scalar] (single values appear where a list is documented)."""
    if _blank(value):
        return []
    if isinstance(value, list | tuple):
        return [item for item in value if not _blank(item)]
    if isinstance(value, dict):
        # PHP serialises a list with holes as an object {"0": ..., "2": ...}
        return [item for item in value.values() if not _blank(item)]
    return [value]


def to_map(value: object) -> dict[str, object]:
    """PHP's json_encode turns an empty array into `[]`: an empty object may arrive as a list."""
    if _blank(value) or value == []:
        return {}
    if isinstance(value, dict):
        return dict(value)
    raise ValueError(f"not an object: {value!r}")


OptInt = Annotated[int | None, BeforeValidator(to_int)]
OptBool = Annotated[bool | None, BeforeValidator(to_bool)]
OptDecimal = Annotated[Decimal | None, BeforeValidator(to_decimal)]
OptDate = Annotated[date | None, BeforeValidator(to_date)]
OptDateTime = Annotated[datetime | None, BeforeValidator(to_datetime)]
OptStr = Annotated[str | None, BeforeValidator(to_str)]


def _datetime_or_none(value: object) -> datetime | None:
    try:
        return to_datetime(value)
    except ValueError:
        return None


# a field nothing documents the form of: unreadable means unknown, never a record skipped for it
LaxDateTime = Annotated[datetime | None, BeforeValidator(_datetime_or_none)]
IntList = Annotated[list[int], BeforeValidator(lambda v: [to_int(item) for item in to_list(v)])]
StrList = Annotated[list[str], BeforeValidator(lambda v: [str(item).strip() for item in to_list(v)])]
Map = Annotated[JsonObject, BeforeValidator(to_map)]


class AlfaModel(BaseModel):
    """Base: keep unknown fields, accept field names as sent.

    Each record's validator is built at its first use, not at import (`defer_build`): a handler validates a
    few of these records (the intake only `WebhookEvent`, the uploader none) and building all of them cost
    about a tenth of every cold start (issue 12.7).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


def _collect_custom(data: object) -> object:
    """Move the flat `custom_<code>` keys into `custom` (codes differ per account)."""
    if not isinstance(data, dict):
        return data
    custom = {key: value for key, value in data.items() if key.startswith(CUSTOM_PREFIX)}
    if not custom:
        return data
    rest = {key: value for key, value in data.items() if not key.startswith(CUSTOM_PREFIX)}
    rest["custom"] = {**to_map(rest.get("custom")), **custom}
    return rest


class Customer(AlfaModel):
    """A lead (`is_study` false) or a client (`is_study` true)."""

    id: int
    name: OptStr = None
    is_study: Annotated[bool, BeforeValidator(lambda v: bool(to_bool(v)))] = False
    study_status_id: OptInt = None
    lead_status_id: OptInt = None
    lead_source_id: OptInt = None
    lead_reject_id: OptInt = None
    customer_reject_id: OptInt = None
    assigned_id: OptInt = None
    legal_type: OptInt = None
    legal_name: OptStr = None
    branch_ids: IntList = Field(default_factory=list)
    teacher_ids: IntList = Field(default_factory=list)
    phone: StrList = Field(default_factory=list)
    email: StrList = Field(default_factory=list)
    web: StrList = Field(default_factory=list)
    addr: StrList = Field(default_factory=list)
    note: OptStr = None
    dob: OptDate = None
    balance: OptDecimal = None
    paid_count: OptInt = None
    paid_till: OptDate = None
    created_at: OptDateTime = None
    updated_at: OptDateTime = None
    # The archive flag's name in a customer record is not documented (the filter is `removed`).
    removed: OptBool = Field(default=None, validation_alias=AliasChoices("removed", "is_removed", "is_archived"))
    custom: Map = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_custom(cls, data: object) -> object:
        return _collect_custom(data)

    @property
    def is_lead(self) -> bool:
        return not self.is_study

    @property
    def is_archived(self) -> bool:
        return bool(self.removed)


class Pay(AlfaModel):
    """A payment. `pay_type_id` meanings (income, refund…) differ per account: read them, do not assume."""

    id: int
    branch_id: OptInt = None
    customer_id: OptInt = None
    income: Annotated[Decimal, BeforeValidator(lambda v: to_decimal(v) or Decimal(0))] = Decimal(0)
    document_date: OptDate = None
    pay_type_id: OptInt = None
    pay_account_id: OptInt = None
    pay_item_id: OptInt = None
    teacher_id: OptInt = None
    commodity_id: OptInt = None
    payer_name: OptStr = None
    note: OptStr = None
    # webhook captures name it `confirmed`; the REST record `is_confirmed`
    is_confirmed: OptBool = Field(default=None, validation_alias=AliasChoices("is_confirmed", "confirmed"))
    # a day (`dd.mm.yyyy`) in YegorPanin/alfacrm-client's `PayResponse`; not in every account's records
    created_at: LaxDateTime = None
    updated_at: LaxDateTime = None
    custom: Map = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_custom(cls, data: object) -> object:
        return _collect_custom(data)


class LeadStatus(AlfaModel):
    """A stage of AlfaCRM's sales funnel; `weight` orders the stages."""

    id: int
    name: str = ""
    is_enabled: Annotated[bool, BeforeValidator(lambda v: to_bool(v) is not False)] = True
    weight: Annotated[int, BeforeValidator(lambda v: to_int(v) or 0)] = 0


class LeadSource(AlfaModel):
    id: int
    code: OptStr = None
    name: str = ""
    is_enabled: Annotated[bool, BeforeValidator(lambda v: to_bool(v) is not False)] = True
    weight: Annotated[int, BeforeValidator(lambda v: to_int(v) or 0)] = 0


class Branch(AlfaModel):
    id: int
    name: str = ""
    is_active: Annotated[bool, BeforeValidator(lambda v: to_bool(v) is not False)] = True
    subject_ids: IntList = Field(default_factory=list)
    weight: Annotated[int, BeforeValidator(lambda v: to_int(v) or 0)] = 0


class Teacher(AlfaModel):
    """Only `id` and `name` are documented; the rest is kept as extra fields."""

    id: int
    name: str = ""
    branch_ids: IntList = Field(default_factory=list)
    is_active: OptBool = None


class User(AlfaModel):
    """An AlfaCRM user (manager, administrator, the API user): `assigned_id`, task executors, `user_id`."""

    id: int
    name: str = ""
    email: OptStr = None
    is_active: OptBool = None


class Communication(AlfaModel):
    """A comment (or call, message…) on a customer, group or task."""

    id: int
    type_id: OptInt = None
    class_: OptStr = Field(default=None, validation_alias=AliasChoices("class", "class_"))
    related_id: OptInt = None
    user_id: OptInt = None
    added: OptDateTime = None
    comment: str = ""


# log/index `event` codes (YegorPanin/alfacrm-client src/alfacrm/models/log.py, conint 1..3; aioalfacrm and
# Airumian/alfacrm type it as an integer): the webhook's words for them
LOG_EVENTS = {1: "create", 2: "update", 3: "delete"}


def to_log_event(value: object) -> str:
    """A log entry's `event` — 1/2/3, or a word as webhooks spell it — as the webhook's word."""
    if isinstance(value, str) and value.strip().lower() in LOG_EVENTS.values():
        return value.strip().lower()
    code = to_int(value)
    if code not in LOG_EVENTS:
        raise ValueError(f"unknown log event {value!r}")
    return LOG_EVENTS[code]


def to_field_map(value: object) -> dict[str, object]:
    """A log entry's `fields_old`/`fields_new`: a map, or a list of one-key maps (both seen: KO_alfacrm_data's
    export reads either; YegorPanin's client types them as lists), or `[]` for nothing."""
    if isinstance(value, list):
        merged: dict[str, object] = {}
        for item in value:
            if not isinstance(item, dict):
                raise ValueError(f"not a field map: {item!r}")
            merged.update(item)
        return merged
    return to_map(value)


FieldMap = Annotated[JsonObject, BeforeValidator(to_field_map)]


class LogEntry(AlfaModel):
    """One row of `log/index`: a change AlfaCRM recorded (a webhook that may never have arrived).

    As clients of real accounts read it: `event` an integer, fields as maps or lists of one-key maps, entries
    newest first, `date_time` zone-less account-local."""

    id: OptInt = None
    entity: str
    entity_id: Annotated[int, BeforeValidator(to_int)]
    user_id: OptInt = None
    event: Annotated[Literal["create", "update", "delete"], BeforeValidator(to_log_event)]
    fields_old: FieldMap = Field(default_factory=dict)
    fields_new: FieldMap = Field(default_factory=dict)
    date_time: OptDateTime = Field(default=None, validation_alias=AliasChoices("date_time", "datetime"))

    def as_webhook(self, branch_id: int) -> JsonObject:
        """The webhook AlfaCRM would have sent for this change (a `WebhookEvent` body)."""
        return {
            "branch_id": branch_id,
            "event": self.event,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "fields_old": self.fields_old or [],
            "fields_new": self.fields_new or [],
            "fields_rel": [],
            "user_id": self.user_id,
            "datetime": self.date_time.strftime("%Y-%m-%d %H:%M:%S") if self.date_time else None,
        }


class PayItem(AlfaModel):
    """An income/expense item (aioalfacrm `entities/pay_item.py`): which pay types it is used with."""

    id: int
    name: str = ""
    branch_ids: IntList = Field(default_factory=list)
    category_id: OptInt = None
    pay_type_ids: IntList = Field(default_factory=list)
    weight: Annotated[int, BeforeValidator(lambda v: to_int(v) or 0)] = 0


class IndexPage(BaseModel):
    """The reply of any `index` action. Pages start at 0 and hold 50 items whatever size is asked."""

    model_config = ConfigDict(defer_build=True)  # as AlfaModel: built at the first reply

    total: Annotated[int, BeforeValidator(lambda v: to_int(v) or 0)] = 0
    count: Annotated[int, BeforeValidator(lambda v: to_int(v) or 0)] = 0
    page: Annotated[int, BeforeValidator(lambda v: to_int(v) or 0)] = 0
    items: Annotated[list[JsonObject], BeforeValidator(to_list)] = Field(default_factory=list)


class ModelEnvelope(BaseModel):
    """The reply of `create`/`update`/`delete`; success=false or errors can come with HTTP 200."""

    model_config = ConfigDict(defer_build=True)  # as AlfaModel: built at the first reply

    success: Annotated[bool, BeforeValidator(lambda v: to_bool(v) is not False)] = True
    errors: JsonValue = None
    model: Map = Field(default_factory=dict)


class WebhookEvent(AlfaModel):
    """An AlfaCRM trigger body. On `update` only changed fields are present: re-read before acting."""

    branch_id: OptInt = None
    event: Annotated[Literal["create", "update", "delete"], BeforeValidator(lambda v: str(v).strip().lower())]
    entity: str
    entity_id: Annotated[int, BeforeValidator(to_int)]
    fields_old: Map = Field(default_factory=dict)
    fields_new: Map = Field(default_factory=dict)
    fields_rel: Map = Field(default_factory=dict)
    user_id: OptInt = None
    datetime: OptDateTime = None

    def branch_for(self, default: int) -> int:
        """Old captures carry `fields_new.branch_id` only; fall back to the integration's branch."""
        for candidate in (self.branch_id, self.fields_new.get("branch_id"), self.fields_old.get("branch_id")):
            try:
                branch = to_int(candidate)
            except ValueError:
                continue
            if branch:
                return branch
        return default


_Listed = TypeVar("_Listed", bound=AlfaModel)


def parse_listed(model: type[_Listed], items: Iterable[JsonObject]) -> list[_Listed]:
    """The records of an `index` page that read as `model`; one that does not is skipped, never fatal."""
    out: list[_Listed] = []
    for item in items:
        try:
            out.append(model.model_validate(item))
        except ValidationError:
            continue
    return out
