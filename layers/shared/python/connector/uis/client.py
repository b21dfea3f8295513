"""UIS Data API v2.0 client: JSON-RPC 2.0 over httpx, one request per call.

Quirks handled here (see shared/reference/uis-api.md and docs/external-apis.md; the Data API docs win):
- every request carries an `id` (UIS rejects requests without one) and the token inside `params`;
  batch arrays are rejected by UIS, so there is no batching at the JSON-RPC level — batching happens
  inside methods that take lists (`upload.deals_history`, `create.deal_contacts`, `get.visitors`);
  `update.deal_contacts` takes ONE contact, its fields at the top level of `params`;
- contacts go out in UIS's own form: phones as E.164 digits without "+", e-mails unique within a contact;
- reports return only their default columns unless `fields` names others, and refuse undocumented names:
  every report call names its columns, from `connector.uis.columns`;
- errors are switched on `error.data.mnemonic` and become the named exceptions of `connector.errors`;
  `data.field` names a nested parameter with dots and no index (`deals.stage_ext_id`), so it never says
  which row or contact was refused; -32008 (a component switched off) is `UisComponentMissing`;
- a write whose answer was lost (5xx, read timeout) is not sent again here (`UisUnavailable.ambiguous`):
  `create.*`/`upload.*`/`delete.*` may have been applied, and the caller reads back before re-sending;
- every success costs one point of a per-minute and a per-day budget that `metadata.limits` reports; while
  a unit of work holds the client `metered(meter)`, each point it spends is charged to that meter
  (connector.uis.points: per purpose and account day, into the integration's ledger), so no use case
  counts points by hand;
  `limit_exceeded` is waited out in-process only when the reset is short (`RetryPolicy.max_wait`),
  otherwise `UisLimitExceeded` (retryable) goes up so the queue or the next schedule tries later;
- date-times are zone-less account-local `YYYY-MM-DD hh:mm:ss`; the client only formats naive datetimes
  and refuses aware ones, so the caller converts with the integration's zone first.
The access token never appears in a log line, an exception or the client's repr.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any, Literal, Protocol

import httpx

from connector.errors import (
    UisAuthFailed,
    UisComponentMissing,
    UisError,
    UisForbidden,
    UisLimitExceeded,
    UisUnavailable,
    UisValidationError,
)
from connector.models.raw import JsonObject, JsonValue
from connector.retry import RetryPolicy
from connector.uis.columns import (
    CHAT_FIELDS,
    CHAT_MESSAGES_REPORT_COLUMNS,
    CHATS_REPORT_COLUMNS,
    MESSAGE_FIELDS,
    OFFLINE_MESSAGES_REPORT_COLUMNS,
    REQUEST_FIELDS,
    unknown,
)

log = logging.getLogger(__name__)

DATE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_UPLOAD_ROWS = 1000  # upload.deals_history
MAX_CONTACTS = 1000  # create.deal_contacts
MAX_VISITORS = 1000  # get.visitors: no limit is documented; one page's worth per call
MAX_DEALS_READ = 100  # ext_ids per get.deals_history read-back (one `or` filter tree)
PAGE_SIZE = 1000  # UIS's default `limit`
MAX_PAGE_SIZE = 10000  # UIS's maximum `limit`

# Reports can be slow on wide ranges; connect fast so a dead route fails within the Lambda budget.
TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=5.0)
HEADERS = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}

_AUTH_MNEMONICS = frozenset(
    {"access_token_expired", "access_token_blocked", "access_token_invalid", "auth_error", "login_failed"}
)
_FORBIDDEN_MNEMONICS = frozenset({"ip_not_whitelisted", "forbidden"})
_VALIDATION_MNEMONICS = frozenset(
    {
        "required_parameter_missed",
        "invalid_parameter_value",
        "entity_not_found",
        "duplicate_entity",
        "invalid_date_time",
        "data_limit_exceeded",
        "date_interval_limit_reached",
    }
)
_AUTH_CODE, _FORBIDDEN_CODE, _PARAMS_CODE, _LIMIT_CODE = -32001, -32003, -32602, -32029
_COMPONENT_CODE = -32008
_COMPONENT_MNEMONICS = frozenset({"method_component_disabled", "parameter_component_disabled"})
# account inactive: not healed by a retry within seconds
_ACCOUNT_STATE_CODES = frozenset({-32009})
# methods a lost answer may be repeated for: reading, and writes that set a state (the same call twice leaves
# the same state); `create.*`, `upload.*` and `delete.*` are not repeated blind (a second create or upload is
# refused, or stores rows out of order)
_REPEATABLE = ("get.", "update.", "set.", "unset.", "login.")
# fixed-length budget windows, used to project a stale `*_reset` onto the next window boundary
_MINUTE, _DAY = 60.0, 86400.0


def format_date_time(value: datetime | date) -> str:
    """UIS's `YYYY-MM-DD hh:mm:ss`, from a naive account-local datetime (a date means its midnight)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("UIS date-times are zone-less local times: convert to the account zone first")
        return value.strftime(DATE_TIME_FORMAT)
    return value.strftime("%Y-%m-%d 00:00:00")


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return format_date_time(value)
    raise TypeError(f"not JSON serialisable for UIS: {type(value).__name__}")


# data_api/components/ ("Права и компоненты"): component ids as UIS's errors name them, and their cabinet names;
# get.visitors' «Data API для настройки» has no published id (person/get_visitors names it only)
COMPONENT_NAMES = {
    "sales_funnel": "Воронки продаж",
    "consultant": "Консультант",
    "call_tracking": "Колл-трекинг",
    "lead": "Лидогенератор",
    "sitephone": "Сайтфон",
    "upload_chats": "Загрузка чатов из внешней системы",
    "upload_offline_messages": "Загрузка оффлайн-сообщений из внешней системы",
}
# what each feature's probe calls, for messages
FEATURE_METHODS = {
    "deals": "the deal methods (upload.deals_history, …)",
    "chats": "get.chats_report",
    "requests": "get.offline_messages_report",
    "visitors": "get.visitors («Data API для настройки»)",
}


def component_text(exc: UisComponentMissing) -> str:
    """«Воронки продаж» (sales_funnel), or «Консультант» (consultant) or … — what would switch a method on."""
    names = [f"«{COMPONENT_NAMES[c]}» ({c})" if c in COMPONENT_NAMES else c for c in exc.components]
    return " or ".join(names) or "a component UIS did not name"


def _retry_in_call(method: str) -> Callable[[BaseException], bool]:
    """What the RetryPolicy may retry inside this invocation (the policy still caps server waits)."""
    repeatable = method.startswith(_REPEATABLE)

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, UisLimitExceeded):
            return True  # refused calls are not applied
        if isinstance(exc, UisUnavailable):
            if exc.ambiguous and not repeatable:
                return False
            return exc.rpc_code not in _ACCOUNT_STATE_CODES
        return False

    return retryable


def contact_wire(contact: Mapping[str, JsonValue]) -> JsonObject:
    """A deal contact as UIS takes it: E.164 phones as digits without "+" (`79161234567`, the form of every UIS
    example), each once; e-mails unique within the contact, case-insensitively ("E-mail должен быть уникальным
    в списке", ca_contact/create_deal_contacts), first spelling kept."""
    out: JsonObject = dict(contact)
    if "phone_numbers" in out:
        phones = (str(p).strip().removeprefix("+") for p in _listed(out.get("phone_numbers")))
        out["phone_numbers"] = list(dict.fromkeys(p for p in phones if p))
    if "emails" in out:
        seen: set[str] = set()
        emails: list[JsonValue] = []
        for raw in _listed(out.get("emails")):
            email = str(raw).strip()
            if email and email.lower() not in seen:
                seen.add(email.lower())
                emails.append(email)
        out["emails"] = emails
    return out


def pooled_http() -> httpx.Client:
    """A pooled httpx client for UIS (the `Runtime` keeps one per container: connection keep-alive)."""
    return httpx.Client(timeout=TIMEOUT, headers=HEADERS)


class PointMeter(Protocol):
    def charge(self, points: int) -> None:
        """`points` UIS points were just spent."""
        ...


class UisClient:
    """One UIS account (Data API URL + access token)."""

    def __init__(
        self,
        api_url: str,
        access_token: str,
        *,
        http: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not access_token:
            raise ValueError("UIS access token is empty")
        self.api_url = api_url
        self._token = access_token
        self._http = http if http is not None else pooled_http()
        self._retry = retry if retry is not None else RetryPolicy()
        self._clock = clock
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # last `metadata.limits` seen and when (by `clock`), to turn `*_reset` into a wait later
        self.limits: JsonObject | None = None
        self._limits_at: float | None = None
        self.last_metadata: JsonObject = {}
        # points spent by this client: UIS charges one per successful call
        self.calls = 0
        # the meter of the unit of work using the client, per thread (the local stack runs functions in threads)
        self._meter: ContextVar[PointMeter | None] = ContextVar("uis_point_meter", default=None)

    def __repr__(self) -> str:
        return f"UisClient(api_url={self.api_url!r})"

    @contextmanager
    def metered(self, meter: PointMeter) -> Iterator[UisClient]:
        """Charge every point this thread spends through the client to `meter` until the block ends."""
        token = self._meter.set(meter)
        try:
            yield self
        finally:
            self._meter.reset(token)

    # --- transport -------------------------------------------------------------------------------
    def call(self, method: str, params: Mapping[str, object] | None = None) -> JsonObject:
        """Call one Data API method; return its `result` (`data` + `metadata`)."""
        body = dict(params or {})
        return self._retry.run(lambda: self._send(method, body), is_retryable=_retry_in_call(method))

    def _post(self, method: str, content: bytes) -> httpx.Response:
        timeout = self._retry.http_timeout(TIMEOUT)
        if timeout is None:
            # the invocation's budget is spent: not sent (no point spent), tried again by the queue or schedule
            exc = UisUnavailable(f"UIS {method} not called: no time left in this invocation", mnemonic="out_of_time")
            exc.out_of_time = True  # type: ignore[attr-defined]
            raise exc
        try:
            return self._http.post(self.api_url, content=content, headers=HEADERS, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # never reached UIS: safe to send again
            log.warning("UIS %s unreachable: %s", method, type(exc).__name__)
            raise UisUnavailable(
                f"UIS {method}: unreachable ({type(exc).__name__})", mnemonic="transport_error"
            ) from None
        except httpx.HTTPError as exc:
            # sent, answer lost: UIS may have applied it
            log.warning("UIS %s transport error: %s", method, type(exc).__name__)
            raise UisUnavailable(
                f"UIS {method}: no answer ({type(exc).__name__})", mnemonic="transport_error", ambiguous=True
            ) from None

    def _send(self, method: str, params: dict[str, object]) -> JsonObject:
        # a fresh id per attempt: a retried request is a new JSON-RPC request
        envelope = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": {**params, "access_token": self._token},
        }
        content = json.dumps(envelope, ensure_ascii=False, default=_json_default).encode("utf-8")
        response = self._post(method, content)
        if response.status_code >= 500:
            raise UisUnavailable(f"UIS {method}: HTTP {response.status_code}", mnemonic="http_error", ambiguous=True)
        try:
            payload = response.json()
        except ValueError:
            if response.status_code == 429:
                raise UisLimitExceeded(
                    f"UIS {method}: HTTP 429", mnemonic="limit_exceeded", reset_after=self._reset_after()
                ) from None
            raise UisError(
                f"UIS {method}: HTTP {response.status_code} with a non-JSON body", mnemonic="bad_response"
            ) from None
        if not isinstance(payload, dict):
            raise UisError(f"UIS {method}: unexpected reply shape", mnemonic="bad_response")
        if payload.get("error") is not None:
            raise self._error(method, payload["error"])
        result = payload.get("result")
        if not isinstance(result, dict):
            raise UisError(f"UIS {method}: reply without result", mnemonic="bad_response")
        metadata = result.get("metadata")
        self.last_metadata = metadata if isinstance(metadata, dict) else {}
        self._remember_limits(self.last_metadata.get("limits"))
        with self._lock:
            self.calls += 1
        meter = self._meter.get()
        if meter is not None:
            meter.charge(1)
        return result

    # --- errors and limits -----------------------------------------------------------------------
    def _error(self, method: str, error: JsonValue) -> UisError:
        error = error if isinstance(error, dict) else {"message": str(error)}
        code = error.get("code")
        rpc_code = code if isinstance(code, int) else None
        raw_data = error.get("data")
        data: JsonObject = raw_data if isinstance(raw_data, dict) else {}
        mnemonic = data.get("mnemonic")
        field = data.get("field")
        meta = data.get("metadata")
        self._remember_limits((meta.get("limits") if isinstance(meta, dict) else None) or data.get("limits"))
        message = self._scrub(str(error.get("message") or ""))
        text = f"UIS {method} failed: {mnemonic or rpc_code}: {message}"
        if field:
            text += f" (field {field})"
        kwargs: dict[str, Any] = {
            "mnemonic": mnemonic,
            "rpc_code": rpc_code,
            "field": field if isinstance(field, str) else None,
            "value": self._scrub(data.get("value")),
            "params": self._scrub(data.get("params")),
        }
        log.warning("UIS %s error %s %s field=%s", method, rpc_code, mnemonic, kwargs["field"])
        if mnemonic == "limit_exceeded" or rpc_code == _LIMIT_CODE:
            return UisLimitExceeded(text, reset_after=self._reset_after(), **kwargs)
        if mnemonic in _AUTH_MNEMONICS or rpc_code == _AUTH_CODE:
            return UisAuthFailed(text, **kwargs)
        if mnemonic in _FORBIDDEN_MNEMONICS or rpc_code == _FORBIDDEN_CODE:
            return UisForbidden(text, **kwargs)
        if mnemonic in _COMPONENT_MNEMONICS or rpc_code == _COMPONENT_CODE:
            return UisComponentMissing(text, components=_components(data, str(message)), **kwargs)
        if rpc_code in _ACCOUNT_STATE_CODES:
            return UisUnavailable(text, **kwargs)
        if mnemonic in _VALIDATION_MNEMONICS or rpc_code == _PARAMS_CODE:
            return UisValidationError(text, **kwargs)
        # -32700/-32600/-32601/-32099: our request is wrong; retrying will not help
        return UisError(text, **kwargs)

    def _scrub(self, value: JsonValue) -> JsonValue:
        """Drop the token from anything UIS echoes back (an invalid-token error may quote it)."""
        if isinstance(value, str):
            return value.replace(self._token, "***")
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items() if k != "access_token"}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        return value

    def _remember_limits(self, limits: JsonValue) -> None:
        # `get.tags` answers `"limits": {}`: keep the last complete picture instead
        if isinstance(limits, dict) and limits:
            self.limits = dict(limits)
            self._limits_at = self._clock()

    def current_limits(self) -> JsonObject | None:
        """The last `metadata.limits`, as they stand now: the resets counted down from when they were seen,
        and None once the day budget has reset since (a warm container must not carry yesterday's budget)."""
        if not self.limits or self._limits_at is None:
            return None
        elapsed = self._clock() - self._limits_at
        day_reset = _as_float(self.limits.get("day_reset"), None)
        if day_reset is None or elapsed >= day_reset:
            return None
        out = dict(self.limits)
        out["day_reset"] = day_reset - elapsed
        minute_reset = _as_float(self.limits.get("minute_reset"), None)
        if minute_reset is not None:
            if elapsed >= minute_reset:
                out["minute_remaining"] = out.get("minute_limit")
                out["minute_reset"] = (minute_reset - elapsed) % _MINUTE
            else:
                out["minute_reset"] = minute_reset - elapsed
        return out

    def _reset_after(self) -> float | None:
        """Seconds until the exhausted budget resets, from the last `metadata.limits` seen.

        The day budget when it is out, else the minute budget (another container may have spent it).
        None when no limits were ever seen: the RetryPolicy then backs off with jitter.
        """
        if not self.limits or self._limits_at is None:
            return None
        day_out = (_as_float(self.limits.get("day_remaining"), 1.0) or 0.0) <= 0
        key, period = ("day_reset", _DAY) if day_out else ("minute_reset", _MINUTE)
        reset = _as_float(self.limits.get(key), None)
        if reset is None:
            return None
        left = reset - (self._clock() - self._limits_at)
        if left < 0:
            # the reported window has already rolled over: wait for the next boundary
            left %= period
        return max(left, 0.0)

    # --- look-ups and auth -----------------------------------------------------------------------
    def check_auth(self) -> JsonObject:
        """One cheap call that proves the URL, token and IP allow-list: `get.account` needs no component
        (account/get_account) → `{app_id, name, timezone}`, the account's IANA zone among them (the documented
        answer holds the account in a one-item `data` list; an object is taken too)."""
        data = self.call("get.account", {}).get("data")
        if isinstance(data, list):
            data = next((item for item in data if isinstance(item, dict)), None)
        return dict(data) if isinstance(data, dict) else {}

    def missing_components(self, features: Sequence[str]) -> dict[str, UisComponentMissing]:
        """Which of these features the account's components do not allow, each tried with one cheap call
        (a point each when allowed; a refused call costs none): `deals` («Воронки продаж», every deal method),
        `chats` (get.chats_report), `requests` (get.offline_messages_report), `visitors` (get.visitors,
        «Data API для настройки»)."""
        moment = datetime(2000, 1, 1)
        probes: dict[str, Callable[[], object]] = {
            "deals": lambda: self.call("get.deals_in_processing", {}),
            "chats": lambda: self.get_chats_report(moment, moment, fields=["id"], limit=1),
            "requests": lambda: self.get_offline_messages_report(moment, moment, fields=["id"], limit=1),
            "visitors": lambda: self.get_visitors([0]),
        }
        missing: dict[str, UisComponentMissing] = {}
        for feature in features:
            try:
                probes[feature]()
            except UisComponentMissing as exc:
                missing[feature] = exc
            except UisValidationError:
                pass  # past the component check: the component is on
        return missing

    def get_sites(self) -> list[JsonObject]:
        return list(self._iter_pages("get.sites", {"fields": ["id", "domain_name", "name"]}))

    def get_chat_channels(self) -> list[JsonObject]:
        return list(self._iter_pages("get.chat_channels", {"fields": ["id", "name", "type", "status"]}))

    def get_tags(self) -> list[JsonObject]:
        return list(self._iter_pages("get.tags", {"fields": ["id", "name"]}))

    # --- sales funnels ---------------------------------------------------------------------------
    def get_sales_funnels(self, ext_id: str | None = None) -> list[JsonObject]:
        """`get.sales_funnel`: funnels with `stages` [{stage_ext_id, stage_name, stage_status, stage_order}]."""
        params: dict[str, object] = {}
        if ext_id is not None:
            params["filter"] = {"field": "ext_id", "operator": "=", "value": ext_id}
        return list(self._iter_pages("get.sales_funnel", params))

    def create_sales_funnel(
        self,
        ext_id: str,
        name: str,
        *,
        success: Mapping[str, object],
        failed: Mapping[str, object],
        in_process: Sequence[Mapping[str, object]],
    ) -> JsonObject:
        """`create.sales_funnel`: exactly one success and one failed stage, 1–100 in-process stages."""
        stages = {"success": dict(success), "failed": dict(failed), "in_process": [dict(s) for s in in_process]}
        return self._data(self.call("create.sales_funnel", {"ext_id": ext_id, "name": name, "stages": stages}))

    def create_sales_funnel_stage(self, funnel_ext_id: str, ext_id: str, name: str, order: int) -> JsonObject:
        """`create.sales_funnel_stages`: one in-process stage (order ≤ 10000)."""
        params = {"sales_funnel_ext_id": funnel_ext_id, "ext_id": ext_id, "name": name, "order": order}
        return self._data(self.call("create.sales_funnel_stages", params))

    def update_sales_funnel_stage(
        self, funnel_ext_id: str, ext_id: str, *, name: str | None = None, order: int | None = None
    ) -> JsonObject:
        """`update.sales_funnel_stages`: rename any stage; `order` applies to in-process stages only."""
        params: dict[str, object] = {"sales_funnel_ext_id": funnel_ext_id, "ext_id": ext_id}
        if name is not None:
            params["name"] = name
        if order is not None:
            params["order"] = order
        return self._data(self.call("update.sales_funnel_stages", params))

    def delete_sales_funnel_stage(self, funnel_ext_id: str, ext_id: str) -> JsonObject:
        params = {"sales_funnel_ext_id": funnel_ext_id, "ext_id": ext_id}
        return self._data(self.call("delete.sales_funnel_stages", params))

    # --- deal contacts, employees, user fields ---------------------------------------------------
    def create_deal_contacts(self, contacts: Sequence[Mapping[str, JsonValue]]) -> JsonObject:
        """`create.deal_contacts`: ≤1000 contacts {ext_id, name, created_date_time?, phone_numbers?, emails?},
        all or nothing; a refusal's `field` (`contacts.emails`) does not say which contact."""
        _check_size(contacts, MAX_CONTACTS)
        wire = [contact_wire(c) for c in contacts]
        return self._data(self.call("create.deal_contacts", {"contacts": wire}))

    def update_deal_contact(self, contact: Mapping[str, JsonValue]) -> JsonObject:
        """`update.deal_contacts`: ONE contact per call, `ext_id` and its fields at the top level of `params`
        (ca_contact/update_deal_contacts); the lists given replace the stored ones whole."""
        if not contact.get("ext_id"):
            raise ValueError("update.deal_contacts needs the contact's ext_id")
        return self._data(self.call("update.deal_contacts", contact_wire(contact)))

    def get_deal_contacts(self, ext_ids: Sequence[str]) -> list[JsonObject]:
        """`get.deal_contacts` for these contacts (ca_contact/get_deal_contacts), as UIS holds them."""
        return self._read_by_ext_ids("get.deal_contacts", ext_ids)

    def create_deal_employee(self, ext_id: str, name: str) -> JsonObject:
        """`create.deal_employees` {ext_id, name} (ca_employee/create_deal_employees): a responsible employee
        rows name by `employee_ext_id`."""
        return self._data(self.call("create.deal_employees", {"ext_id": ext_id, "name": name}))

    def get_deal_employees(self) -> list[JsonObject]:
        return list(self._iter_pages("get.deal_employees", {}))

    def create_deal_user_field(
        self, ext_id: str, name: str, data_type: Literal["string", "numeric"] = "string"
    ) -> JsonObject:
        params = {"ext_id": ext_id, "name": name, "data_type": data_type}
        return self._data(self.call("create.deal_user_field", params))

    # --- deals -----------------------------------------------------------------------------------
    def upload_deals_history(self, rows: Sequence[Mapping[str, object]]) -> JsonObject:
        """`upload.deals_history`: ≤1000 stage-transition rows, all or nothing.

        A `UisValidationError` names the field (`deals.stage_ext_id`) but never the row: the caller narrows a
        refused batch down by bisection (refused calls cost no points). A lost answer raises
        `UisUnavailable(ambiguous=True)` and is not re-sent: read back with `deals_history_of` first.
        """
        return self._data(self.call("upload.deals_history", {"deals": _bounded(rows, MAX_UPLOAD_ROWS)}))

    def deals_history_of(self, ext_ids: Sequence[str]) -> list[JsonObject]:
        """What UIS holds for these deals (`get.deals_history`, every stage row, generated ones included)."""
        return self._read_by_ext_ids("get.deals_history", ext_ids)

    def _read_by_ext_ids(self, method: str, ext_ids: Sequence[str]) -> list[JsonObject]:
        # an `or` tree of `=` filters (data_api/index.html, "Критерии фильтрации"): `in` is "not for all methods"
        out: list[JsonObject] = []
        wanted = list(dict.fromkeys(ext_ids))
        for start in range(0, len(wanted), MAX_DEALS_READ):
            chunk = wanted[start : start + MAX_DEALS_READ]
            tree = {"filters": [{"field": "ext_id", "operator": "=", "value": e} for e in chunk], "condition": "or"}
            out += self._iter_pages(method, {"filter": tree})
        return out

    def get_deals_history(
        self,
        *,
        filter: Mapping[str, object] | None = None,
        fields: Sequence[str] | None = None,
        limit: int = PAGE_SIZE,
        offset: int = 0,
    ) -> list[JsonObject]:
        """One page of `get.deals_history` (one row per stage of each deal, `is_generated` included)."""
        return self._page("get.deals_history", _list_params(filter, fields), limit, offset)

    def iter_deals_history(
        self,
        *,
        filter: Mapping[str, object] | None = None,
        fields: Sequence[str] | None = None,
        limit: int = PAGE_SIZE,
    ) -> Iterator[JsonObject]:
        return self._iter_pages("get.deals_history", _list_params(filter, fields), limit)

    # --- visitors --------------------------------------------------------------------------------
    def get_visitors(self, ids: Sequence[int]) -> list[JsonObject]:
        """`get.visitors` (person/get_visitors): `id`, `name`, `phones`, `emails`, `usernames` per visitor, the
        only place a chat visitor's name and e-mail are; batched, one call per `MAX_VISITORS` ids. Needs the
        «Data API для настройки» component (`UisComponentMissing` without it)."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        out: list[JsonObject] = []
        for start in range(0, len(wanted), MAX_VISITORS):
            data = self.call("get.visitors", {"ids": wanted[start : start + MAX_VISITORS]}).get("data")
            out += [dict(v) for v in _listed(data) if isinstance(v, dict)]
        return out

    # --- reports ---------------------------------------------------------------------------------
    # Each report call names its columns (`fields`): without them UIS returns only its default columns.
    def get_chats_report(
        self,
        date_from: datetime,
        date_till: datetime,
        *,
        filter: Mapping[str, object] | None = None,
        fields: Sequence[str] | None = None,
        limit: int = PAGE_SIZE,
        offset: int = 0,
    ) -> list[JsonObject]:
        fields = _columns(fields, CHAT_FIELDS, CHATS_REPORT_COLUMNS)
        return self._page("get.chats_report", _report_params(date_from, date_till, filter, fields), limit, offset)

    def iter_chat_messages_report(
        self,
        *,
        chat_id: int | None = None,
        chat_ids: Sequence[int] | None = None,
        date_from: datetime | None = None,
        date_till: datetime | None = None,
        filter: Mapping[str, object] | None = None,
        fields: Sequence[str] | None = None,
        limit: int = PAGE_SIZE,
    ) -> Iterator[JsonObject]:
        fields = _columns(fields, MESSAGE_FIELDS, CHAT_MESSAGES_REPORT_COLUMNS)
        params = _messages_params(chat_id, chat_ids, date_from, date_till, filter, fields)
        return self._iter_pages("get.chat_messages_report", params, limit)

    def get_offline_messages_report(
        self,
        date_from: datetime,
        date_till: datetime,
        *,
        filter: Mapping[str, object] | None = None,
        fields: Sequence[str] | None = None,
        limit: int = PAGE_SIZE,
        offset: int = 0,
    ) -> list[JsonObject]:
        fields = _columns(fields, REQUEST_FIELDS, OFFLINE_MESSAGES_REPORT_COLUMNS)
        params = _report_params(date_from, date_till, filter, fields)
        return self._page("get.offline_messages_report", params, limit, offset)

    # --- paging ----------------------------------------------------------------------------------
    def _page(self, method: str, params: Mapping[str, object], limit: int, offset: int) -> list[JsonObject]:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be within 1..{MAX_PAGE_SIZE}")
        data = self.call(method, {**params, "limit": limit, "offset": offset}).get("data")
        return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []

    def _iter_pages(self, method: str, params: Mapping[str, object], limit: int = PAGE_SIZE) -> Iterator[JsonObject]:
        """Page with limit/offset until a page comes back shorter than `limit` (each page costs a point)."""
        offset = 0
        while True:
            rows = self._page(method, params, limit, offset)
            yield from rows
            if len(rows) < limit:
                return
            offset += limit

    @staticmethod
    def _data(result: Mapping[str, object]) -> JsonObject:
        data = result.get("data")
        return dict(data) if isinstance(data, dict) else {}


def _listed(value: JsonValue) -> list[JsonValue]:
    return value if isinstance(value, list) else []


def _as_float(value: JsonValue, default: float | None) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _check_size(items: Sequence[object], most: int) -> None:
    # UIS refuses the whole call above its per-call maximum: fail here, before spending a point
    if len(items) > most:
        raise ValueError(f"at most {most} items per call, got {len(items)}")


def _bounded(items: Sequence[Mapping[str, object]], most: int) -> list[dict[str, object]]:
    _check_size(items, most)
    return [dict(item) for item in items]


def _list_params(filter: Mapping[str, object] | None, fields: Sequence[str] | None) -> dict[str, object]:
    params: dict[str, object] = {}
    if filter:
        params["filter"] = dict(filter)
    if fields:
        params["fields"] = list(fields)
    return params


def _columns(given: Sequence[str] | None, default: Sequence[str], documented: frozenset[str]) -> list[str]:
    """The `fields` of a report call: the connector's own list unless the caller names some; an undocumented
    name is refused here, before it costs a call (UIS would answer `unexpected_parameters`)."""
    names = list(default if given is None else given)
    bad = unknown(names, documented)
    if bad:
        raise ValueError(f"not a documented column of this report: {', '.join(bad)}")
    return names


def _components(data: JsonObject, message: str) -> list[str]:
    """UIS's component ids from a -32008 error: `params.components`, else the message's tail
    ("... following components to access this method: sales_funnel")."""
    params = data.get("params")
    raw = params.get("components") if isinstance(params, dict) else None
    if not raw and ":" in message:
        raw = message.rsplit(":", 1)[1]
    items = raw if isinstance(raw, list) else str(raw or "").split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _report_params(
    date_from: datetime, date_till: datetime, filter: Mapping[str, object] | None, fields: Sequence[str] | None
) -> dict[str, object]:
    if date_till < date_from:
        raise ValueError("date_till is before date_from")
    return {
        "date_from": format_date_time(date_from),
        "date_till": format_date_time(date_till),
        **_list_params(filter, fields),
    }


def _messages_params(
    chat_id: int | None,
    chat_ids: Sequence[int] | None,
    date_from: datetime | None,
    date_till: datetime | None,
    filter: Mapping[str, object] | None,
    fields: Sequence[str] | None,
) -> dict[str, object]:
    params = _list_params(filter, fields)
    if chat_id is not None:
        params["chat_id"] = chat_id
    elif chat_ids:
        params["chat_ids"] = list(chat_ids)
    elif date_from is not None and date_till is not None:
        params.update(_report_params(date_from, date_till, None, None))
    else:
        raise ValueError("get.chat_messages_report needs chat_id, chat_ids or date_from + date_till")
    return params
