"""Typed integration record and settings document (contract.md), validated on write.

Validation errors name the bad field as a JSON path (`texts.chats.lost_chat_task.title`), so the admin
API can answer 422 with `field` set. Checks that need AlfaCRM (do these status ids exist?) live in
`connector.admin`; everything that can be judged from the document alone lives here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import string
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import idna
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connector.errors import UnsafeHostname, ValidationFailed
from connector.models.raw import JsonObject
from connector.models.sync import FunnelSyncPending

# --- title template -------------------------------------------------------------------------------
TITLE_PARAMS = (
    "visitor_name",
    "visitor_phone",
    "visitor_email",
    "site",
    "channel",
    "chat_id",
    "communication_id",
    "started_at",
    "operator",
    "tags",
)


def template_params(template: str) -> list[str]:
    """The `{param}` names a title template uses; raises ValueError on a malformed template."""
    names = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conv or not name.isidentifier():
            raise ValueError(f"'{{{name}}}' is not a plain parameter")
        names.append(name)
    return names


def _str_list(value: Any) -> Any:
    """Filters accept ids or names; numbers are kept as their string form so both compare alike."""
    if value is None:
        return []
    if isinstance(value, str | int):
        value = [value]
    return [str(v).strip() for v in value if str(v).strip()]


StrList = Annotated[list[str], BeforeValidator(_str_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- deals ----------------------------------------------------------------------------------------
class FirstSaleSettings(_Model):
    success_status_ids: list[int] = Field(
        default_factory=list,
        description="AlfaCRM lead status ids that end a first sale successfully (merged into one UIS success stage)",
    )
    failure_status_ids: list[int] = Field(
        default_factory=list,
        description="AlfaCRM lead status ids that end a first sale as failed (merged into one UIS failure stage)",
    )

    @model_validator(mode="after")
    def _disjoint(self) -> FirstSaleSettings:
        both = set(self.success_status_ids) & set(self.failure_status_ids)
        if both:
            raise ValueError(f"status ids {sorted(both)} are both success and failure")
        return self


class UpsellSettings(_Model):
    enabled: bool = Field(default=True, description="Payments after the first sale become «Допродажи» deals")
    # a goods sale or a refund item can be left out: see docs/external-apis.md, "Revenue and refunds"
    pay_item_ids: list[int] = Field(
        default_factory=list,
        description=(
            "AlfaCRM pay items whose payments are revenue, for the first sale and upsells alike (look-up: "
            "pay-items); empty: every positive payment"
        ),
    )


class DealsSettings(_Model):
    enabled: bool = Field(default=True, description="Deals AlfaCRM → UIS: leads and payments become UIS deals")
    first_sale: FirstSaleSettings = Field(
        default_factory=FirstSaleSettings, description="Funnel «Первая продажа» (AlfaCRM leads)"
    )
    upsell: UpsellSettings = Field(default_factory=UpsellSettings, description="Funnel «Допродажи» (payments)")


# --- texts ----------------------------------------------------------------------------------------
class LeadDefaults(_Model):
    lead_status_id: int | None = Field(default=None, description="AlfaCRM lead status of new leads (null: AlfaCRM's)")
    lead_source_id: int | None = Field(default=None, description="AlfaCRM lead source of new leads (null: none)")
    assigned_id: int | None = Field(default=None, description="AlfaCRM user responsible for new leads (null: none)")


class ExtraField(_Model):
    source: str = Field(
        min_length=1, description="UIS notification/report parameter (utm_source, campaign_name, search_query, …)"
    )
    target: str = Field(min_length=1, description="AlfaCRM customer field (note, web, email, custom_*, …)")
    update_always: bool = Field(
        default=False, description="«Обновлять всегда»: also overwrite on later communications, not only fill empty"
    )

    @field_validator("target")
    @classmethod
    def _target_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", v):
            raise ValueError("must be an AlfaCRM customer field name such as 'note' or 'custom_utm'")
        return v


class RequestFilters(_Model):
    sites: StrList = Field(default_factory=list, description="Site domain names or ids (empty: any)")
    form_types: StrList = Field(default_factory=list, description="Request form types (empty: any)")


class RequestsSettings(_Model):
    enabled: bool = Field(default=False, description="«Передавать заявки»: site requests go to AlfaCRM")
    filters: RequestFilters = Field(
        default_factory=RequestFilters, description="OR within a list, AND across lists; an empty list means any"
    )
    create_lead: bool = Field(default=True, description="«Создавать лид по обращению» when no customer matches")
    extra_fields: list[ExtraField] = Field(default_factory=list, description="Extra fields written to the lead")


class ChatFilters(_Model):
    sites: StrList = Field(default_factory=list, description="Site domain names or ids (empty: any)")
    channels: StrList = Field(default_factory=list, description="Chat channel types or ids (empty: any)")
    tags: StrList = Field(default_factory=list, description="UIS tag ids or names (empty: any)")


class CreateLeadOnChat(_Model):
    enabled: bool = Field(default=True, description="«Создавать лид» from chats")
    on: Literal["chat_started", "chat_finished", "tag_set"] = Field(
        default="chat_finished", description="When: chat start, chat end, or when one of `tags` is set"
    )
    tags: StrList = Field(default_factory=list, description="Tag ids or names for `tag_set`")

    @model_validator(mode="after")
    def _tags_for_tag_set(self) -> CreateLeadOnChat:
        if self.enabled and self.on == "tag_set" and not self.tags:
            raise ValueError("tags: list the tags that create a lead when 'on' is 'tag_set'")
        return self


DEFAULT_LOST_CHAT_TITLE = "Потерянный чат: {visitor_name} {visitor_phone}"


class LostChatTask(_Model):
    enabled: bool = Field(default=False, description="«Создавать задачу по потерянному чату»")
    title: str = Field(
        default=DEFAULT_LOST_CHAT_TITLE,
        description="Task title template; parameters: " + ", ".join(f"{{{p}}}" for p in TITLE_PARAMS),
    )
    assigned_ids: list[int] = Field(default_factory=list, description="AlfaCRM users the task is assigned to")
    due_hours: int = Field(default=24, ge=0, le=24 * 90, description="Task due time, hours after the chat")

    @field_validator("title")
    @classmethod
    def _known_params(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the task title template is empty")
        if len(v) > 500:
            raise ValueError("the task title template is longer than 500 characters")
        try:
            names = template_params(v)
        except ValueError as exc:
            raise ValueError(f"malformed template: {exc}") from exc
        unknown = [n for n in names if n not in TITLE_PARAMS]
        if unknown:
            raise ValueError(f"unknown parameter {{{unknown[0]}}}; known: " + ", ".join(TITLE_PARAMS))
        return v


class ChatsSettings(_Model):
    enabled: bool = Field(default=False, description="«Передавать чаты»: chats go to AlfaCRM")
    filters: ChatFilters = Field(
        default_factory=ChatFilters, description="OR within a list, AND across lists; an empty list means any"
    )
    create_lead: CreateLeadOnChat = Field(default_factory=CreateLeadOnChat, description="Lead creation from chats")
    lost_chat_task: LostChatTask = Field(default_factory=LostChatTask, description="Tasks for lost chats")
    without_contacts: bool = Field(
        default=False, description="Chats of visitors without phone or e-mail make a new lead each (duplicates)"
    )
    extra_fields: list[ExtraField] = Field(default_factory=list, description="Extra fields written to the customer")
    poll_interval_minutes: int = Field(
        default=5, ge=1, le=60, description="How often get.chats_report is read (UIS points per day)"
    )


class TextsSettings(_Model):
    branch_id: int | None = Field(default=None, description="AlfaCRM branch of new leads (null: the account's)")
    # AlfaCRM may require the author (`user_id`) on communication/create
    comment_author_id: int | None = Field(
        default=None, description="AlfaCRM user who signs the connector's comments (null: the API user)"
    )
    lead_defaults: LeadDefaults = Field(default_factory=LeadDefaults, description="Values of new leads")
    requests: RequestsSettings = Field(default_factory=RequestsSettings, description="Site requests (заявки)")
    chats: ChatsSettings = Field(default_factory=ChatsSettings, description="Chats")


_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


class WidgetSettings(_Model):
    """The РМО widget on AlfaCRM customer cards (`GET /widget/alfacrm.js?integration=<id>`)."""

    enabled: bool = Field(default=False, description="Show the «Открыть РМО UIS» button on AlfaCRM customer cards")
    workplace_url: str | None = Field(
        default=None,
        max_length=2000,
        validate_default=True,
        description="UIS operator workplace (РМО) URL; https (http only on a loopback host); needed when enabled",
    )
    open_in: Literal["iframe", "window"] = Field(
        default="iframe", description="Open the workplace in a panel on the card (iframe) or in a new window"
    )

    @field_validator("workplace_url")
    @classmethod
    def _workplace_url(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or not v.strip():
            if info.data.get("enabled"):
                raise ValueError("give the workplace URL to enable the widget")
            return None
        raw = v.strip()
        parts = urlsplit(raw)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an https URL such as https://app.uiscom.ru/…")
        if parts.username or parts.password:
            raise ValueError("must not carry a user name or password")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            raise ValueError("must be https (http only for a workplace on this computer)")
        return raw


class SettingsDocument(_Model):
    deals: DealsSettings = Field(default_factory=DealsSettings, description="Deals AlfaCRM → UIS")
    texts: TextsSettings = Field(default_factory=TextsSettings, description="Text communications UIS → AlfaCRM")
    widget: WidgetSettings = Field(default_factory=WidgetSettings, description="РМО widget in AlfaCRM")


# --- integration record ---------------------------------------------------------------------------
class AlfaCrmAccount(_Model):
    hostname: str
    email: str
    branch_id: int = 1
    # the AlfaCRM user the API key belongs to (found by its e-mail among the users; None: not found)
    api_user_id: int | None = None


class UisAccount(_Model):
    api_url: str = "https://dataapi.uiscom.ru/v2.0"
    # the account's IANA zone as get.account reported it at creation (None: not known)
    timezone: str | None = None


class Integration(_Model):
    """The stored integration (never holds credentials: `secret_id` names them in the secrets port)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    alfacrm: AlfaCrmAccount
    uis: UisAccount
    timezone: str = "Europe/Moscow"
    phone_region: str = "RU"
    active: bool = False
    created_at: str | None = None
    secret_id: str
    alfacrm_webhook_secret_hash: str
    uis_webhook_secret_hash: str
    settings: SettingsDocument = Field(default_factory=SettingsDocument)
    funnel_sync: FunnelSyncPending | None = None  # a funnel sync still owed to UIS after a settings save

    @property
    def uis_timezone(self) -> str:
        """The zone of the date-times the deal uploads write: the UIS account's (get.account, kept at creation)
        when known, else the school's. UIS documents no zone for them; it refuses a deal "created in the
        future" when they run ahead of its clock (docs/external-apis.md)."""
        return self.uis.timezone or self.timezone

    def public(self) -> JsonObject:
        """The integration as the admin API shows it: no secrets, no secret hashes."""
        return self.model_dump(
            mode="json", exclude={"secret_id", "alfacrm_webhook_secret_hash", "uis_webhook_secret_hash"}
        )


class Credentials(_Model):
    """One integration's credentials (sealed by the secrets port, `connector.secrets`)."""

    alfacrm_api_key: str
    uis_access_token: str
    alfacrm_webhook_secret: str
    uis_webhook_secret: str

    def __repr__(self) -> str:  # never print credentials, even by accident
        return "Credentials(***)"

    __str__ = __repr__


# --- create-integration input ---------------------------------------------------------------------
class AlfaCrmInput(_Model):
    hostname: str = Field(min_length=1)
    email: str = Field(min_length=3)
    api_key: str = Field(min_length=1, repr=False)
    branch_id: int = Field(default=1, ge=1)


class UisInput(_Model):
    api_url: str = "https://dataapi.uiscom.ru/v2.0"
    access_token: str = Field(min_length=1, repr=False)


class CreateIntegrationInput(_Model):
    name: str = Field(min_length=1, max_length=200)
    alfacrm: AlfaCrmInput
    uis: UisInput
    timezone: str = "Europe/Moscow"
    phone_region: str = "RU"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        # OSError: a key that is a directory of the zone database ("Europe") or too long a file name
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown time zone '{v[:60]}'") from exc
        return v

    @field_validator("phone_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Z]{2}", v):
            raise ValueError("must be a two-letter region code such as 'RU'")
        return v


class CredentialsInput(_Model):
    """`PUT /integrations/{id}/credentials`: the `alfacrm` and/or `uis` objects of the create body."""

    alfacrm: AlfaCrmInput | None = None
    uis: UisInput | None = None

    @model_validator(mode="after")
    def _one_at_least(self) -> CredentialsInput:
        if self.alfacrm is None and self.uis is None:
            raise ValueError("give the alfacrm or the uis credentials (or both)")
        return self


class ReplayInput(_Model):
    """`POST /integrations/{id}/replay`'s optional body: re-run only these parked items (`key` or `kind#key`)."""

    keys: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = Field(
        default=None, max_length=100, description="Parked items to re-run (their `key`); absent: all, and the DLQs"
    )


# --- helpers --------------------------------------------------------------------------------------
def needs_polling(integration: Integration) -> bool:
    """Chats on, and something to do: a lost-chat task, or leads created when a chat starts."""
    chats = integration.settings.texts.chats
    lead_on_start = chats.create_lead.enabled and chats.create_lead.on == "chat_started"
    return integration.active and chats.enabled and (chats.lost_chat_task.enabled or lead_on_start)


def json_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def first_error(exc: ValidationError, prefix: str = "") -> ValidationFailed:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = json_path(loc)
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    msg = err["msg"].removeprefix("Value error, ")
    return ValidationFailed(f"{path or 'body'}: {msg}", field=path or None)


def parse_settings(doc: Any) -> SettingsDocument:
    """Validate a settings document; raise ValidationFailed naming the first bad field."""
    try:
        return SettingsDocument.model_validate(doc)
    except ValidationError as exc:
        raise first_error(exc) from None


def parse_credentials_input(doc: Any) -> CredentialsInput:
    try:
        return CredentialsInput.model_validate(doc)
    except ValidationError as exc:
        raise first_error(exc) from None


def parse_create_input(doc: Any) -> CreateIntegrationInput:
    try:
        return CreateIntegrationInput.model_validate(doc)
    except ValidationError as exc:
        raise first_error(exc) from None


_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


# A space or control character (NUL, CR, LF) in a URL is refused by httpx, or worse, split into a header.
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")
# In the local stack: an IP literal or an ASCII host name (a sandbox on 127.0.0.1, localhost, a container name).
_LOCAL_HOST_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$")


def _idna_ok(host: str) -> bool:
    """httpx decodes a host's A-labels (`xn--…`) with idna and raises on a malformed one: find it first."""
    if "xn--" not in host:
        return True
    try:
        idna.decode(host)
    except (idna.IDNAError, UnicodeError, IndexError):
        return False
    return True


def _shown(text: str) -> str:
    return text if len(text) <= 80 else f"{text[:77]}..."


def _split_url(raw: str, field: str) -> SplitResult:
    """urlsplit and what it leaves for later to fail on: a port that is no number or out of range, a broken
    [IPv6] host, a control character. Any of them is the caller's bad field (422), not a crash."""
    if _CONTROL_OR_SPACE.search(raw):
        raise UnsafeHostname(f"{field}: spaces and control characters are not allowed in a URL", field=field)
    try:
        parts = urlsplit(raw)
        port, host = parts.port, parts.hostname
    except ValueError as exc:
        raise UnsafeHostname(f"{field}: '{_shown(raw)}' is not a valid URL ({exc})", field=field) from None
    if parts.scheme not in {"http", "https"} or not host:
        raise UnsafeHostname(f"{field}: '{_shown(raw)}' is not an http(s) URL", field=field)
    if port == 0:
        raise UnsafeHostname(f"{field}: port 0 is not a port", field=field)
    if not _LOCAL_HOST_RE.match(host) or not _idna_ok(host):
        try:
            # an IPv6 zone index (fe80::1%eth0) names an interface of this machine, not a host
            ipaddress.ip_address(host if "%" not in host else "")
        except ValueError:
            raise UnsafeHostname(f"{field}: '{_shown(host)}' is not a host name", field=field) from None
    return parts


def check_uis_api_url(url: str, *, allow_insecure: bool) -> str:
    """The UIS Data API URL: https on a public DNS name outside the local stack (the same rules as AlfaCRM)."""
    raw = url.strip().rstrip("/")
    field = "uis.api_url"
    parts = _split_url(raw, field)
    if allow_insecure:
        return raw
    if parts.scheme != "https" or parts.port not in (None, 443) or parts.username or parts.password:
        raise UnsafeHostname(f"{field}: must be an https URL without port or credentials", field=field)
    _check_public_name(parts.hostname or "", field)
    return raw


def _check_public_name(host: str, field: str) -> str:
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise UnsafeHostname(f"{field}: IP addresses are not allowed, use a domain name", field=field)
    if not _HOST_RE.match(host) or host == "localhost" or host.endswith(_PRIVATE_SUFFIXES) or not _idna_ok(host):
        raise UnsafeHostname(f"{field}: '{_shown(host)}' is not a public domain name", field=field)
    return host


_PRIVATE_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home", ".corp")


def check_alfacrm_hostname(hostname: str, *, allow_insecure: bool) -> str:
    """Return the hostname to store, or raise UnsafeHostname.

    Outside the local stack: a public DNS name served over https — no scheme other than https, no port,
    no path, no IP literal, no private/loopback/link-local ranges, no single-label or `.local` names.
    In the local stack (`allow_insecure`) a scheme and port such as `http://127.0.0.1:8081` are allowed.
    """
    raw = hostname.strip()
    field = "alfacrm.hostname"
    if allow_insecure and "://" in raw:
        _split_url(raw, field)
        return raw.rstrip("/")
    host = raw
    if "://" in raw:
        parts = _split_url(raw, field)
        if parts.scheme != "https":
            raise UnsafeHostname(f"{field}: only https is allowed", field=field)
        if parts.port is not None or (parts.path not in {"", "/"}) or parts.query:
            raise UnsafeHostname(f"{field}: give the host name only, without port or path", field=field)
        host = parts.hostname or ""
    return _check_public_name(host, field)


def resolve_is_public(host: str) -> bool:
    """DNS check against rebinding to private ranges: every address the name resolves to is global."""
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_global for info in infos)
