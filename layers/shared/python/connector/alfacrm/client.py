"""AlfaCRM v2api client (httpx, synchronous; the container's `Runtime` gives its clients one pool).

The quirks it absorbs (`../shared/reference/alfacrm-api.md`):
- every call is a POST with a JSON body, `index` included; the token goes in `X-ALFACRM-TOKEN`;
- tokens live 15 minutes: cached per account for less than that (`TokenCache`), and a 401 triggers one
  re-login;
- 403 means bad credentials or a role without the v2api module;
- validation errors may come with HTTP 200 (`success: false` / non-empty `errors`, list or field map);
- 429 and 5xx are retried with backoff through `connector.retry.RetryPolicy`;
- AlfaCRM asks for sequential calls: a per-account `RateLimiter` spaces them;
- `index` pages start at 0 and hold 50 items whatever page size is asked;
- some entities need owner ids in the query string (`communication?class=Customer&related_id=N`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from email.utils import parsedate_to_datetime

import httpx

from connector.alfacrm.models import (
    Branch,
    Customer,
    IndexPage,
    LeadSource,
    LeadStatus,
    Pay,
    PayItem,
    Teacher,
    User,
    to_int,
)
from connector.errors import (
    AlfaCrmAuthFailed,
    AlfaCrmError,
    AlfaCrmNotFound,
    AlfaCrmUnavailable,
    AlfaCrmValidationError,
)
from connector.models.lookups import PhoneSearch
from connector.models.raw import JsonObject, JsonValue
from connector.phones import national_digits, to_e164
from connector.retry import Limiter, RateLimiter, RetryPolicy

log = logging.getLogger(__name__)

PAGE_SIZE = 50
# Official lifetime is 15 minutes; renew a minute early so a token never dies in flight.
TOKEN_TTL_SECONDS = 14 * 60
# Bounded so that every try of a call to a hung account ends within the calling worker's timeout (the deal and
# text workers: 60 s; tests/schools/test_isolation.py): a school's hung AlfaCRM costs only its own worker.
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
TOKEN_HEADER = "X-ALFACRM-TOKEN"  # noqa: S105 (a header name, not a secret)
# One client claims AlfaCRM cuts comments at 2048 characters (unverified): split below that, never lose text.
COMMENT_MAX_CHARS = 2000
# A de-duplication search reads at most this many pages of candidates.
SEARCH_MAX_PAGES = 4
# AlfaCRM branch-less routes.
_NO_BRANCH_ENTITIES = frozenset({"auth", "branch"})


# AlfaCRM asks for sequential calls; a client without a limiter spaces its own calls at this rate.
DEFAULT_RPS = 2.0

# Customer fields every account has (custom_* ones are learned from a record).
STANDARD_CUSTOMER_FIELDS: tuple[str, ...] = (
    "name",
    "branch_ids",
    "teacher_ids",
    "is_study",
    "study_status_id",
    "lead_status_id",
    "lead_source_id",
    "lead_reject_id",
    "customer_reject_id",
    "assigned_id",
    "legal_type",
    "legal_name",
    "dob",
    "phone",
    "email",
    "web",
    "addr",
    "note",
)

# Filters that make `customer/index` see leads and clients (`is_study` 2) and archived ones (`removed` 1);
# without them AlfaCRM seems to return active clients only.
ALL_CUSTOMERS = {"is_study": 2, "removed": 1}


def fingerprint(api_key: str) -> str:
    # A changed API key must not reuse the old key's token; only a digest is kept in memory.
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class TokenCache:
    """AlfaCRM tokens per account ((base URL, e-mail) → key fingerprint, token, expiry), shared by the clients
    of one container (the `Runtime` holds one), so a second client of an account logs in no second time."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._lock = threading.Lock()

    def get(self, account: tuple[str, str], fingerprint: str, now: float) -> str | None:
        with self._lock:
            cached = self._tokens.get(account)
        if cached and cached[0] == fingerprint and cached[2] > now:
            return cached[1]
        return None

    def put(self, account: tuple[str, str], fingerprint: str, token: str, expires: float) -> None:
        with self._lock:
            self._tokens[account] = (fingerprint, token, expires)

    def forget(self, account: tuple[str, str], token: str) -> None:
        with self._lock:
            cached = self._tokens.get(account)
            if cached and cached[1] == token:
                del self._tokens[account]

    def secret(self, account: tuple[str, str]) -> str | None:
        """The account's current token whatever its key (only to scrub it from server messages)."""
        with self._lock:
            cached = self._tokens.get(account)
        return cached[1] if cached else None


def pooled_http() -> httpx.Client:
    """A pooled httpx client for AlfaCRM (the `Runtime` keeps one per container: connections are reused)."""
    return httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_connections=20))


def base_url(hostname: str) -> str:
    """`school.s20.online` → `https://school.s20.online/v2api/`; a host given with a scheme is kept.

    Hostnames are not validated here (settings validation owns that): the host is used as stored.
    """
    host = hostname.strip().rstrip("/")
    if "://" not in host:
        host = f"https://{host}"
    return f"{host}/v2api/"


def format_errors(errors: JsonValue) -> tuple[str, str | None]:
    """AlfaCRM's `errors` (list of strings, or field → message(s), shape undocumented) → text + first field."""
    if isinstance(errors, Mapping):
        parts = []
        for name, messages in errors.items():
            listed = messages if isinstance(messages, list | tuple) else [messages]
            parts.append(f"{name}: {'; '.join(str(text) for text in listed)}")
        return "; ".join(parts), (str(next(iter(errors))) if errors else None)
    if isinstance(errors, list | tuple):
        texts: list[str] = []
        first_field: str | None = None
        for item in errors:
            if isinstance(item, Mapping) and "message" in item:
                # Yii's own shape: [{"field": ..., "message": ...}]
                field = item.get("field")
                first_field = first_field or (str(field) if field else None)
                texts.append(f"{field}: {item['message']}" if field else str(item["message"]))
            elif isinstance(item, Mapping):
                text, inner = format_errors(item)
                first_field = first_field or inner
                texts.append(text)
            else:
                texts.append(str(item))
        return "; ".join(texts), first_field
    return str(errors), None


def split_comment(text: str, limit: int = COMMENT_MAX_CHARS) -> list[str]:
    """Split a long comment into parts of at most `limit` characters, preferring line breaks."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip("\n"))
        rest = rest[cut:].lstrip("\n")
    if rest:
        parts.append(rest)
    return parts


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max((moment - datetime.now(moment.tzinfo)).total_seconds(), 0.0)


def _wait_in_message(message: str) -> float | None:
    """The seconds in AlfaCRM's 429 text ("Please try in 1 second"); None → the policy's jittered backoff."""
    match = re.search(r"try in (\d+(?:\.\d+)?) sec", message, flags=re.IGNORECASE)
    return float(match.group(1)) if match else None


def _ambiguous(exc: AlfaCrmUnavailable) -> AlfaCrmUnavailable:
    """Mark a failure after which AlfaCRM may or may not have applied the request."""
    exc.ambiguous = True  # type: ignore[attr-defined]
    return exc


def landing_window(exc: BaseException) -> float:
    """How long a write that failed this way may still land in AlfaCRM: one read timeout after a lost answer
    (PHP goes on after the gateway's 504 or our read timeout, so a read-back made sooner would miss it), else 0.
    """
    return (TIMEOUT.read or 0.0) if getattr(exc, "ambiguous", False) else 0.0


def _certainly_not_applied(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", False)) and not getattr(exc, "ambiguous", False)


def _body(response: httpx.Response) -> JsonValue:
    try:
        return response.json()
    except ValueError:
        return None


def _out_of_time(exc: AlfaCrmUnavailable) -> AlfaCrmUnavailable:
    exc.out_of_time = True  # type: ignore[attr-defined]
    return exc


def _server_message(body: JsonValue) -> str:
    """The 401/403/5xx bodies are undocumented (Yii-style `{"name","message"}` likely): parse defensively."""
    if isinstance(body, Mapping):
        for key in ("message", "name", "error"):
            if body.get(key):
                return str(body[key])
    return ""


class AlfaCrmClient:
    """One AlfaCRM account. Raises only `connector.errors` exceptions."""

    def __init__(
        self,
        hostname: str,
        email: str,
        api_key: str,
        *,
        http: httpx.Client | None = None,
        rps: float | None = None,
        retry: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        tokens: TokenCache | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hostname = hostname
        self.email = email
        self._api_key = api_key
        self._fingerprint = fingerprint(api_key)
        self.base_url = base_url(hostname)
        self._http = http
        self._retry = retry or RetryPolicy()
        self._limiter: Limiter = limiter or RateLimiter(DEFAULT_RPS if rps is None else rps)
        self._tokens = tokens or TokenCache()
        self._clock = clock
        self._account = (self.base_url, email)
        self.calls = 0
        # what phone searches taught about this account (see `find_customers`), kept beyond the container by
        # the caller (`remember_phone_search`); None: nothing known yet, not even from the store
        self.phone_search: PhoneSearch | None = None

    def __repr__(self) -> str:
        # never the API key or token; the e-mail is personal data, so only its domain
        domain = self.email.rpartition("@")[2] or "?"
        return f"AlfaCrmClient(host={self.hostname!r}, user=***@{domain})"

    # --- transport --------------------------------------------------------------------------------------
    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = pooled_http()
        return self._http

    def _url(self, entity: str, action: str, branch_id: int | None) -> str:
        if branch_id is None or entity in _NO_BRANCH_ENTITIES:
            return f"{self.base_url}{entity}/{action}"
        return f"{self.base_url}{int(branch_id)}/{entity}/{action}"

    def _scrub(self, text: str) -> str:
        """Defence in depth: a server message must never carry our secret into logs or errors."""
        for secret in (self._api_key, self._tokens.secret(self._account)):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _send(
        self, url: str, body: Mapping[str, object], query: Mapping[str, object] | None, token: str | None
    ) -> httpx.Response:
        """One HTTP request: rate-limited, counted; transport failures become AlfaCrmUnavailable."""
        timeout = self._retry.http_timeout(TIMEOUT)
        if timeout is None:
            # the invocation's budget is spent: not sent at all, so the record is tried again later
            raise _out_of_time(AlfaCrmUnavailable("AlfaCRM not called: no time left in this invocation"))
        self._limiter.acquire(self._account)
        headers = {"Accept": "application/json"}
        if token:
            headers[TOKEN_HEADER] = token
        self.calls += 1
        try:
            params = {k: v for k, v in query.items()} if query else None
            return self.http.post(url, json=body, params=params, headers=headers, timeout=timeout)  # type: ignore[arg-type]
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # the request never reached AlfaCRM: safe to repeat, even a create
            raise AlfaCrmUnavailable(f"AlfaCRM unreachable ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            # sent, but no answer (read timeout, dropped connection): AlfaCRM may have applied it
            raise _ambiguous(AlfaCrmUnavailable(f"AlfaCRM did not answer ({type(exc).__name__})")) from None

    def _check(self, response: httpx.Response, what: str) -> JsonValue:
        """Map an HTTP reply to its JSON body or a named error (401 is handled by the caller)."""
        status = response.status_code
        body = _body(response)
        message = self._scrub(_server_message(body))
        if status == 403:
            raise AlfaCrmAuthFailed(
                f"AlfaCRM refused access on {what} (403 {message or 'Access Denied'}): check the e-mail and "
                "API key, and that the user's role has the v2api module"
            )
        if status == 404:
            raise AlfaCrmNotFound(f"AlfaCRM: {what} not found (404 {message})".rstrip())
        if status == 429:
            exc = AlfaCrmUnavailable(f"AlfaCRM rate limit on {what} (429 {message})".rstrip())
            # RetryPolicy waits this long when set; AlfaCRM says "Please try in 1 second" in the body
            wait = _retry_after(response)
            exc.retry_after = wait if wait is not None else _wait_in_message(message)  # type: ignore[attr-defined]
            raise exc
        if status >= 500:
            # a 5xx (or a gateway timeout) does not say whether the write was committed
            raise _ambiguous(AlfaCrmUnavailable(f"AlfaCRM server error on {what} ({status} {message})".rstrip()))
        if status in (400, 422):
            errors = body.get("errors") if isinstance(body, Mapping) else None
            if errors:
                self._raise_validation(errors, what)
            raise AlfaCrmValidationError(f"AlfaCRM rejected {what} ({status} {message})".rstrip())
        if status >= 400:
            raise AlfaCrmError(f"AlfaCRM answered {status} on {what} {message}".rstrip())
        if body is None:
            # an HTML maintenance page or a proxy error with 200: try again later
            raise AlfaCrmUnavailable(f"AlfaCRM sent a non-JSON reply on {what}")
        if isinstance(body, Mapping) and (body.get("success") is False or body.get("errors")):
            # validation errors come with HTTP 200
            self._raise_validation(body.get("errors") or "success=false without a reason", what)
        return body

    def _raise_validation(self, errors: JsonValue, what: str) -> None:
        text, field = format_errors(errors)
        raise AlfaCrmValidationError(f"AlfaCRM rejected {what}: {self._scrub(text)}", errors=errors, field=field)

    # --- login and token ---------------------------------------------------------------------------------
    def login(self) -> str:
        """A real login (always a request, retried on 429/5xx): checks the credentials, refreshes the token."""
        return self._retry.run(self._login_once)

    def _login_once(self) -> str:
        response = self._send(
            self._url("auth", "login", None), {"email": self.email, "api_key": self._api_key}, None, None
        )
        if response.status_code == 401:
            raise AlfaCrmAuthFailed("AlfaCRM refused the login (401): check the e-mail and API key")
        body = self._check(response, "auth/login")
        token = body.get("token") if isinstance(body, Mapping) else None
        if not token:
            raise AlfaCrmAuthFailed("AlfaCRM login returned no token")
        self._tokens.put(self._account, self._fingerprint, str(token), self._clock() + TOKEN_TTL_SECONDS)
        return str(token)

    def _token(self) -> str:
        """The cached token, or a new one. A single attempt: the caller's retry loop covers the login too."""
        return self._tokens.get(self._account, self._fingerprint, self._clock()) or self._login_once()

    def _forget(self, token: str) -> None:
        self._tokens.forget(self._account, token)

    def request(
        self,
        entity: str,
        action: str,
        body: Mapping[str, object] | None = None,
        *,
        branch_id: int | None,
        query: Mapping[str, object] | None = None,
        idempotent: bool = True,
    ) -> JsonValue:
        """POST `{base}/{branch}/{entity}/{action}?{query}` with retries; → the JSON body.

        A non-idempotent call (`create`) is repeated only after failures that prove it was not applied
        (429, connection refused, 401): after a 5xx or a lost answer it raises AlfaCrmUnavailable at once,
        so a retry never creates a second lead, comment or task; the caller re-checks before trying again.
        """
        url = self._url(entity, action, branch_id)
        what = f"{entity}/{action}"
        payload = dict(body or {})

        def attempt() -> JsonValue:
            token = self._token()
            response = self._send(url, payload, query, token)
            if response.status_code == 401:
                # token expired or revoked: one re-login, then the same call once more
                log.info("alfacrm token rejected, logging in again", extra={"host": self.hostname})
                self._forget(token)
                response = self._send(url, payload, query, self._login_once())
                if response.status_code == 401:
                    raise AlfaCrmAuthFailed(f"AlfaCRM rejected a fresh token on {what} (401)")
            return self._check(response, what)

        if idempotent:
            return self._retry.run(attempt)
        return self._retry.run(attempt, is_retryable=_certainly_not_applied)

    # --- generic actions -----------------------------------------------------------------------------------
    def index(
        self,
        entity: str,
        filters: Mapping[str, object] | None = None,
        *,
        branch_id: int | None,
        query: Mapping[str, object] | None = None,
        page: int = 0,
    ) -> IndexPage:
        body = {**(filters or {}), "page": page}
        return IndexPage.model_validate(self.request(entity, "index", body, branch_id=branch_id, query=query))

    def iter_all(
        self,
        entity: str,
        filters: Mapping[str, object] | None = None,
        *,
        branch_id: int | None,
        query: Mapping[str, object] | None = None,
        max_pages: int | None = None,
    ) -> Iterator[JsonObject]:
        """Every item, page by page (0, 1, …) until `total` items are read or a page comes back empty
        (or `max_pages` pages are read)."""
        page, seen = 0, 0
        while max_pages is None or page < max_pages:
            reply = self.index(entity, filters, branch_id=branch_id, query=query, page=page)
            if not reply.items:
                return
            yield from reply.items
            seen += len(reply.items)
            if reply.total and seen >= reply.total:
                return
            page += 1

    def get(
        self,
        entity: str,
        id: int,
        *,
        branch_id: int | None,
        filters: Mapping[str, object] | None = None,
        query: Mapping[str, object] | None = None,
    ) -> JsonObject | None:
        """One record: `index` with `{"id": N}`. The id is checked, so an ignored filter never returns a stranger."""
        reply = self.index(entity, {**(filters or {}), "id": id}, branch_id=branch_id, query=query)
        for item in reply.items:
            if to_int(item.get("id")) == int(id):
                return item
        return None

    def _write(
        self,
        entity: str,
        action: str,
        fields: Mapping[str, object],
        *,
        branch_id: int | None,
        query: Mapping[str, object],
        idempotent: bool = True,
    ) -> JsonObject:
        reply = self.request(entity, action, fields, branch_id=branch_id, query=query, idempotent=idempotent)
        model = reply.get("model") if isinstance(reply, Mapping) else None
        return dict(model) if isinstance(model, Mapping) else {}

    def create(
        self,
        entity: str,
        fields: Mapping[str, object],
        *,
        branch_id: int | None,
        query: Mapping[str, object] | None = None,
    ) -> JsonObject:
        """→ the created model (a dict as AlfaCRM returned it)."""
        return self._write(entity, "create", fields, branch_id=branch_id, query=query or {}, idempotent=False)

    def update(
        self,
        entity: str,
        id: int,
        fields: Mapping[str, object],
        *,
        branch_id: int | None,
        query: Mapping[str, object] | None = None,
    ) -> JsonObject:
        """Send only the changed fields; the id goes in the query string."""
        return self._write(entity, "update", fields, branch_id=branch_id, query={**(query or {}), "id": id})

    def delete(self, entity: str, id: int, *, branch_id: int | None) -> JsonObject:
        return self._write(entity, "delete", {}, branch_id=branch_id, query={"id": id})

    # --- customers and payments --------------------------------------------------------------------------
    def get_customer(self, id: int, branch_id: int) -> Customer | None:
        """A lead or a client, archived included."""
        item = self.get("customer", id, branch_id=branch_id, filters=ALL_CUSTOMERS)
        return Customer.model_validate(item) if item is not None else None

    def get_pay(self, id: int, branch_id: int) -> Pay | None:
        item = self.get("pay", id, branch_id=branch_id)
        return Pay.model_validate(item) if item is not None else None

    def find_customers(
        self,
        *,
        branch_id: int,
        phone: str | None = None,
        email: str | None = None,
        region: str = "RU",
    ) -> list[Customer]:
        """Customers (leads and clients, archived too) with this phone or e-mail, verified on our side.

        AlfaCRM's server-side phone matching is undocumented (numbers are stored as typed: `+7(916)123-45-67`,
        `89161234567`, `79161234567`), so each candidate is kept only when one of its phones is the same E.164
        number, and several spellings are tried: national digits, the 11-digit `7XXXXXXXXXX` form a client used
        against a real account searches with, E.164, the number as given. The calls stay at the floor:
        - the spelling that last found someone is tried first;
        - once the national digits have found a number stored with more digits (`9161234567` in
          `+7(916)123-45-67`), the server evidently matches inside stored numbers, so that one search answers for
          every way of writing the number: a miss is a miss (a new lead costs one search).
        """
        if phone:
            target = to_e164(phone, region)
            spellings = _phone_spellings(phone, target)
            learned = self.phone_search or PhoneSearch()
            if learned.substring and "national" in spellings:
                spellings = {"national": spellings["national"]}
            elif learned.spelling in spellings:
                spellings = {learned.spelling: spellings[learned.spelling], **spellings}
            for kind, text in spellings.items():
                found = [
                    customer
                    for customer in self._search_customers({"phone": text}, branch_id)
                    if _has_phone(customer, phone, target, region)
                ]
                if found:
                    self._learn_spelling(kind, text, found)
                    return found
            return []
        if email and email.strip():
            wanted = email.strip().lower()
            return [
                customer
                for customer in self._search_customers({"email": email.strip()}, branch_id)
                if any(address.strip().lower() == wanted for address in customer.email)
            ]
        return []

    def _learn_spelling(self, kind: str, text: str, found: list[Customer]) -> None:
        substring = (self.phone_search or PhoneSearch()).substring
        if kind == "national":
            wanted = _digits(text)
            substring = substring or any(
                len(_digits(p)) > len(wanted) and wanted in _digits(p) for c in found for p in c.phone
            )
        self.phone_search = PhoneSearch(spelling=kind, substring=substring)

    def probe_phone_matching(self, created: Customer, *, branch_id: int, region: str) -> None:
        """Learn the account's phone matching from a lead the connector has just created (once per account).

        Until a search has found a number stored with more digits, a miss must try every spelling (three
        searches per new visitor). The lead just created holds its phone as we wrote it (E.164, longer than
        the national digits), so one search by the national digits tells whether the server matches inside
        stored numbers: found → every later miss costs one search. Not found (an exact-text server) → the
        spellings stay, and the probe is not repeated (`probed`).
        """
        learned = self.phone_search or PhoneSearch()
        if learned.substring or learned.probed:
            return
        numbers = [e for e in (to_e164(p, region) for p in created.phone) if e]
        national = national_digits(numbers[0]) if numbers else None
        if not national:
            return
        found = [c for c in self._search_customers({"phone": national}, branch_id) if c.id == created.id]
        if found:
            self._learn_spelling("national", national, found)
        self.phone_search = (self.phone_search or PhoneSearch()).model_copy(update={"probed": True})

    def remember_phone_search(self, learned: PhoneSearch) -> None:
        """Start from what an earlier container learned about this account."""
        self.phone_search = learned

    @property
    def account(self) -> tuple[str, str]:
        """The account this client logs in to: (base URL, e-mail)."""
        return self._account

    def _search_customers(self, filters: Mapping[str, object], branch_id: int) -> list[Customer]:
        # Bounded: should an account ignore the filter, we must not page through its whole customer base.
        items = self.iter_all("customer", {**filters, **ALL_CUSTOMERS}, branch_id=branch_id, max_pages=SEARCH_MAX_PAGES)
        return [Customer.model_validate(item) for item in items]

    def create_customer(self, fields: Mapping[str, object], branch_id: int) -> Customer:
        body = dict(fields)
        # a customer outside every branch is invisible in AlfaCRM's UI
        body.setdefault("branch_ids", [branch_id])
        return Customer.model_validate(self.create("customer", body, branch_id=branch_id))

    def update_customer(
        self, id: int, fields: Mapping[str, object], branch_id: int, *, merge_branches: bool = True
    ) -> Customer:
        """Update the given fields. `branch_ids` replaces the whole list in AlfaCRM: it is merged first."""
        body = dict(fields)
        branches = body.get("branch_ids")
        if merge_branches and isinstance(branches, list | tuple):
            current = self.get_customer(id, branch_id)
            if current is not None:
                wanted = [int(branch) for branch in branches]
                body["branch_ids"] = current.branch_ids + [b for b in wanted if b not in current.branch_ids]
        model = self.update("customer", id, body, branch_id=branch_id)
        if not model.get("id"):
            # no model in the reply: read the record back rather than guess it
            reread = self.get_customer(id, branch_id)
            if reread is None:
                raise AlfaCrmNotFound(f"AlfaCRM customer {id} not found after update")
            return reread
        return Customer.model_validate(model)

    def add_comment(
        self,
        customer_id: int,
        text: str,
        *,
        branch_id: int,
        user_id: int | None = None,
        type_id: int = 1,
    ) -> JsonObject:
        """A comment on the customer's card (type 1 = plain comment). → the created communication.

        A text longer than `COMMENT_MAX_CHARS` is posted as several numbered comments, in order, so nothing
        is cut silently; the first one is returned.
        """
        parts = split_comment(text)
        created: list[JsonObject] = []
        for number, part in enumerate(parts, start=1):
            comment = part if len(parts) == 1 else f"({number}/{len(parts)}) {part}"
            body: dict[str, object] = {"type_id": type_id, "comment": comment}
            if user_id is not None:
                body["user_id"] = user_id
            created.append(
                self.create(
                    "communication",
                    body,
                    branch_id=branch_id,
                    query={"class": "Customer", "related_id": customer_id},
                )
            )
        return created[0]

    def comments(self, customer_id: int, *, branch_id: int) -> list[JsonObject]:
        return list(
            self.iter_all(
                "communication", {}, branch_id=branch_id, query={"class": "Customer", "related_id": customer_id}
            )
        )

    def create_task(
        self,
        *,
        branch_id: int,
        title: str,
        text: str,
        customer_ids: list[int],
        assigned_ids: list[int],
        due_date: date | str | None,
        user_id: int | None = None,
        priority: int | None = None,
        is_private: bool | None = None,
        is_notify: bool | None = None,
    ) -> JsonObject:
        """A task for the managers (`assigned_ids` are executors, `user_id` the author). → the created task."""
        body: dict[str, object] = {
            "title": title,
            "text": text,
            "customer_ids": list(customer_ids),
            "assigned_ids": list(assigned_ids),
            "branch_ids": [branch_id],
        }
        if due_date is not None:
            if isinstance(due_date, datetime):
                due_date = due_date.date()
            body["due_date"] = due_date.isoformat() if isinstance(due_date, date) else due_date
        optional = {"user_id": user_id, "priority": priority, "is_private": is_private, "is_notify": is_notify}
        for name, value in optional.items():
            if value is not None:
                body[name] = int(value) if isinstance(value, bool) else value
        return self.create("task", body, branch_id=branch_id)

    # --- look-ups ------------------------------------------------------------------------------------------
    def lead_statuses(self, branch_id: int) -> list[LeadStatus]:
        """The sales funnel's stages, in AlfaCRM's order (`weight`)."""
        items = [LeadStatus.model_validate(item) for item in self.iter_all("lead-status", {}, branch_id=branch_id)]
        return sorted(items, key=lambda status: (status.weight, status.id))

    def lead_sources(self, branch_id: int) -> list[LeadSource]:
        items = [LeadSource.model_validate(item) for item in self.iter_all("lead-source", {}, branch_id=branch_id)]
        return sorted(items, key=lambda source: (source.weight, source.id))

    def branches(self) -> list[Branch]:
        items = [Branch.model_validate(item) for item in self.iter_all("branch", {}, branch_id=None)]
        return sorted(items, key=lambda branch: (branch.weight, branch.id))

    def pay_items(self, branch_id: int) -> list[PayItem]:
        """Income and expense items (`pay-item`), each with the pay types it is used with (`pay_type_ids`)."""
        items = [PayItem.model_validate(item) for item in self.iter_all("pay-item", {}, branch_id=branch_id)]
        return sorted(items, key=lambda item: (item.weight, item.id))

    def api_user_id(self, branch_id: int) -> int | None:
        """The AlfaCRM user this client logs in as (its e-mail among `users`), or None when users cannot be
        listed or none has that e-mail."""
        wanted = self.email.strip().lower()
        return next((u.id for u in self.users(branch_id) if (u.email or "").strip().lower() == wanted), None)

    def teachers(self, branch_id: int) -> list[Teacher]:
        return [Teacher.model_validate(item) for item in self.iter_all("teacher", {}, branch_id=branch_id)]

    def users(self, branch_id: int) -> list[User]:
        """AlfaCRM users (managers): the ids behind `assigned_id`, task executors and webhook `user_id`.

        `user` is not in the documented v2api entity list (the log names a `User` class): an account whose
        API has no `user/index` answers 404, and then the list is empty rather than invented from teachers
        (teacher ids are not user ids).
        """
        try:
            return [User.model_validate(item) for item in self.iter_all("user", {}, branch_id=branch_id)]
        except AlfaCrmNotFound:
            log.warning("alfacrm user/index is not available on this account", extra={"host": self.hostname})
            return []

    def customer_fields(self, branch_id: int) -> list[str]:
        """Writable customer field names: the standard ones plus the account's `custom_*` (from one record)."""
        names = list(STANDARD_CUSTOMER_FIELDS)
        sample = self.index("customer", ALL_CUSTOMERS, branch_id=branch_id).items
        if sample:
            names += sorted(key for key in sample[0] if key.startswith("custom_") and key not in names)
        return names


def _phone_spellings(phone: str, e164: str | None) -> dict[str, str]:
    """Spellings to search with, by kind, each text once: national digits (match masked and 8-prefixed records
    if the server compares digits or substrings), the 11-digit `7XXXXXXXXXX` (country code and number, the form
    a client of real accounts searches with), E.164, and the number as given."""
    kinds: list[tuple[str, str]] = []
    if e164:
        kinds += [("national", national_digits(e164) or ""), ("digits", e164.removeprefix("+")), ("e164", e164)]
    kinds.append(("given", phone.strip()))
    out: dict[str, str] = {}
    for kind, text in kinds:
        if text and text not in out.values():
            out[kind] = text
    return out


def _digits(text: str) -> str:
    # only to see how the server matched (a longer stored number found by fewer digits), never to normalise
    return "".join(ch for ch in text if ch.isdigit())


def _has_phone(customer: Customer, phone: str, e164: str | None, region: str) -> bool:
    for stored in customer.phone:
        stored_e164 = to_e164(stored, region)
        if e164 is not None and stored_e164 == e164:
            return True
        if e164 is None and stored.strip() == phone.strip():
            return True
    return False
