"""Admin use cases behind the admin API (contract.md): integrations, settings, look-ups, views, replay."""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from pydantic import BaseModel

from connector.deals.funnels import ensure_funnels
from connector.deals.views import deals_view
from connector.errors import (
    AlfaCrmAuthFailed,
    AlfaCrmError,
    ConnectorError,
    NotFound,
    UisAuthFailed,
    UisComponentMissing,
    UisError,
    UisForbidden,
    ValidationFailed,
)
from connector.intake import hash_secret
from connector.models.deals import FUNNELS
from connector.models.raw import JsonObject, JsonValue
from connector.models.sync import FunnelSyncPending
from connector.observability import logger
from connector.replay import Replay
from connector.runtime import Runtime
from connector.settings import (
    AlfaCrmAccount,
    AlfaCrmInput,
    CreateIntegrationInput,
    Credentials,
    Integration,
    SettingsDocument,
    UisAccount,
    UisInput,
    check_alfacrm_hostname,
    check_uis_api_url,
    parse_create_input,
    parse_credentials_input,
    parse_settings,
    resolve_is_public,
)
from connector.timeutil import to_iso
from connector.uis.client import FEATURE_METHODS, UisClient, component_text

if TYPE_CHECKING:
    from connector.alfacrm.client import AlfaCrmClient

UIS_LOOKUP_TTL = 300  # seconds: each UIS call costs a point of the account's daily budget


@dataclass
class Admin:
    """Admin use cases over the container's runtime (tests build theirs on moto and the sandboxes)."""

    rt: Runtime
    check_dns: Callable[[str], bool] = resolve_is_public

    # --- integrations -------------------------------------------------------------------------
    def create_integration(self, body: object, base_url: str) -> JsonObject:
        data = parse_create_input(body)
        hostname, api_url = self._checked_hosts(data)
        logins = self._check_logins(data, hostname, api_url)
        integration_id = pysecrets.token_hex(8)
        alfa_secret, uis_secret = pysecrets.token_urlsafe(24), pysecrets.token_urlsafe(24)  # 192 bits each
        secrets = self.rt.secrets
        secret_id = secrets.store_credentials(
            integration_id,
            Credentials(
                alfacrm_api_key=data.alfacrm.api_key,
                uis_access_token=data.uis.access_token,
                alfacrm_webhook_secret=alfa_secret,
                uis_webhook_secret=uis_secret,
            ),
        )
        integration = Integration(
            id=integration_id,
            name=data.name,
            alfacrm={
                "hostname": hostname,
                "email": data.alfacrm.email,
                "branch_id": data.alfacrm.branch_id,
                "api_user_id": logins.api_user_id,
            },
            uis={"api_url": api_url, "timezone": logins.uis_timezone},
            timezone=data.timezone,
            phone_region=data.phone_region,
            active=False,
            created_at=to_iso(self.rt.now()),
            secret_id=secret_id,
            alfacrm_webhook_secret_hash=hash_secret(alfa_secret),
            uis_webhook_secret_hash=hash_secret(uis_secret),
        )
        try:
            self.rt.store.integrations.create(integration)
        except Exception:
            # nothing partial: the credentials go when the record could not be written
            secrets.delete_credentials(secret_id)
            raise
        webhooks = _webhooks(base_url, integration_id, alfa_secret, uis_secret)
        return {"id": integration_id, "webhooks": cast("JsonObject", webhooks), "active": False}

    def _checked_hosts(self, data: CreateIntegrationInput) -> tuple[str, str]:
        """Both accounts' addresses, public https hosts only (outside the local stack)."""
        return self._alfacrm_host(data.alfacrm), self._uis_url(data.uis)

    def _alfacrm_host(self, account: AlfaCrmInput) -> str:
        insecure = self.rt.env.allow_insecure_hosts
        hostname = check_alfacrm_hostname(account.hostname, allow_insecure=insecure)
        if not insecure and not self.check_dns(hostname):
            raise ValidationFailed(
                f"alfacrm.hostname: '{hostname}' does not resolve to public addresses only", field="alfacrm.hostname"
            )
        return hostname

    def _uis_url(self, account: UisInput) -> str:
        insecure = self.rt.env.allow_insecure_hosts
        api_url = check_uis_api_url(account.api_url, allow_insecure=insecure)
        uis_host = urlsplit(api_url).hostname or ""
        if not insecure and not self.check_dns(uis_host):
            raise ValidationFailed(
                f"uis.api_url: '{uis_host}' does not resolve to public addresses only", field="uis.api_url"
            )
        return api_url

    def _check_logins(self, data: CreateIntegrationInput, hostname: str, api_url: str) -> _Logins:
        """Both credentials work (one AlfaCRM login, one cheap UIS call) and the UIS account has the components
        the default settings need, before anything is stored; what the logins tell is kept on the record."""
        api_user_id = self._login_alfacrm(hostname, data.alfacrm)
        # the default settings upload deals: the account needs «Воронки продаж» (data_api/components/)
        uis_timezone = self._login_uis(api_url, data.uis, SettingsDocument())
        return _Logins(api_user_id=api_user_id, uis_timezone=uis_timezone)

    def _login_alfacrm(self, hostname: str, account: AlfaCrmInput) -> int | None:
        """One AlfaCRM login (AlfaCrmAuthFailed when refused); → the API user's id (None: AlfaCRM cannot say)."""
        alfacrm = self.rt.connect_alfacrm(hostname, account.email, account.api_key)
        try:
            alfacrm.login()
        except AlfaCrmError as exc:
            raise AlfaCrmAuthFailed(f"AlfaCRM login failed: {exc.message}", field="alfacrm") from None
        return _api_user(alfacrm, account.branch_id)

    def _login_uis(self, api_url: str, account: UisInput, settings: SettingsDocument) -> str | None:
        """One cheap UIS call, then the components `settings` need; → the UIS account's IANA zone (get.account)."""
        uis = self.rt.connect_uis(api_url, account.access_token)
        try:
            found = uis.check_auth()
        except UisError as exc:
            code = UisForbidden if isinstance(exc, UisForbidden) else UisAuthFailed
            raise code(f"UIS login failed: {exc.message}", mnemonic=exc.mnemonic, field="uis") from None
        _require_components(uis, settings)
        zone = found.get("timezone")
        return str(zone) if zone else None

    # --- lifecycle: webhook secrets, credentials (removal: connector.lifecycle) ----------------------
    def rotate_webhooks(self, integration_id: str, base_url: str) -> JsonObject:
        """New secrets in both webhook URLs; the old URLs stop (answer 404) as soon as the record changes
        (another warm intake container remembers the record for at most 10 s)."""
        integration = self._get(integration_id)
        creds = self.rt.secrets.credentials(integration.secret_id)
        alfa_secret, uis_secret = pysecrets.token_urlsafe(24), pysecrets.token_urlsafe(24)
        update = {"alfacrm_webhook_secret": alfa_secret, "uis_webhook_secret": uis_secret}
        # the secrets first: a record naming hashes of secrets nobody can show would lock the school out
        self.rt.secrets.store_credentials(integration_id, creds.model_copy(update=update))
        self.rt.store.integrations.set_webhook_hashes(integration_id, hash_secret(alfa_secret), hash_secret(uis_secret))
        return {"webhooks": cast("JsonObject", _webhooks(base_url, integration_id, alfa_secret, uis_secret))}

    def update_credentials(self, integration_id: str, body: object) -> JsonObject:
        """New AlfaCRM and/or UIS credentials (the create body's objects), each login tried before anything
        is stored; the integration as shown, without secrets."""
        integration = self._get(integration_id)
        data = parse_credentials_input(body)
        creds = self.rt.secrets.credentials(integration.secret_id)
        alfacrm: AlfaCrmAccount | None = None
        uis: UisAccount | None = None
        if data.alfacrm is not None:
            hostname = self._alfacrm_host(data.alfacrm)
            api_user_id = self._login_alfacrm(hostname, data.alfacrm)
            creds = creds.model_copy(update={"alfacrm_api_key": data.alfacrm.api_key})
            alfacrm = AlfaCrmAccount(
                hostname=hostname,
                email=data.alfacrm.email,
                branch_id=data.alfacrm.branch_id,
                api_user_id=api_user_id,
            )
        if data.uis is not None:
            api_url = self._uis_url(data.uis)
            # the new account must have the components the school's settings switch on, as a create's must
            zone = self._login_uis(api_url, data.uis, integration.settings)
            creds = creds.model_copy(update={"uis_access_token": data.uis.access_token})
            uis = UisAccount(api_url=api_url, timezone=zone)
        self.rt.secrets.store_credentials(integration_id, creds)
        self.rt.store.integrations.set_accounts(integration_id, alfacrm=alfacrm, uis=uis)
        if alfacrm is not None:
            self.rt.events.credential(integration_id, "alfacrm", ok=True)
        if uis is not None:
            self.rt.events.credential(integration_id, "uis", ok=True)
        return self._get(integration_id).public()

    def webhooks(self, integration_id: str, base_url: str) -> dict[str, str]:
        integration = self._get(integration_id)
        creds = self.rt.secrets.credentials(integration.secret_id)
        return _webhooks(base_url, integration_id, creds.alfacrm_webhook_secret, creds.uis_webhook_secret)

    def _get(self, integration_id: str) -> Integration:
        integration = self.rt.store.integrations.get(integration_id, fresh=True)
        if integration is None:
            raise NotFound(f"integration {integration_id} not found")
        return integration

    def get_integration(self, integration_id: str) -> JsonObject:
        integration = self._get(integration_id)
        points = cast("JsonObject", self.rt.store.integrations.recent_points(integration_id))
        return {**integration.public(), "uis_points": points}

    def list_integrations(self) -> JsonObject:
        return {"items": [i.public() for i in self.rt.store.integrations.all()]}

    # --- settings -----------------------------------------------------------------------------
    def put_settings(self, integration_id: str, body: object) -> JsonObject:
        integration = self._get(integration_id)
        settings = parse_settings(body)
        self._check_against_alfacrm(integration, settings)
        if integration.active:
            self._require_components(integration, settings)
        self.rt.store.integrations.save_settings(integration_id, settings)
        integration = self._get(integration_id)
        if integration.active and settings.deals.enabled:
            try:
                ensure_funnels(self.rt, integration, force=True)
            except ConnectorError as exc:
                # saved whatever UIS says (the school's typing is not lost): the sync is owed, shown pending on
                # the integration and retried by the uploader (issue 9, defect 4)
                pending = FunnelSyncPending.first(self.rt.now(), exc.message)
                self.rt.store.integrations.set_funnel_sync(integration_id, pending)
                logger.warning(
                    "funnel sync pending after a settings save",
                    extra={"integration_id": integration_id, "code": exc.code},
                )
        dumped: JsonObject = settings.model_dump(mode="json")
        return dumped

    def _check_against_alfacrm(self, integration: Integration, settings: SettingsDocument) -> None:
        """Ids in the document must exist in the AlfaCRM account (one look-up each, only when used)."""
        client = self.rt.clients.alfacrm(integration)
        branch = integration.alfacrm.branch_id
        fs = settings.deals.first_sale
        texts = settings.texts
        if fs.success_status_ids or fs.failure_status_ids or texts.lead_defaults.lead_status_id:
            known = {s.id for s in client.lead_statuses(branch)}
            for path, ids in (
                ("deals.first_sale.success_status_ids", fs.success_status_ids),
                ("deals.first_sale.failure_status_ids", fs.failure_status_ids),
                ("texts.lead_defaults.lead_status_id", [texts.lead_defaults.lead_status_id]),
            ):
                bad = [i for i in ids if i is not None and i not in known]
                if bad:
                    raise ValidationFailed(f"{path}: unknown AlfaCRM lead status id {bad[0]}", field=path)
        if texts.lead_defaults.lead_source_id is not None:
            sources = {s.id for s in client.lead_sources(branch)}
            if texts.lead_defaults.lead_source_id not in sources:
                path = "texts.lead_defaults.lead_source_id"
                raise ValidationFailed(
                    f"{path}: unknown AlfaCRM lead source id {texts.lead_defaults.lead_source_id}", field=path
                )
        if texts.branch_id is not None:
            branches = {b.id for b in client.branches()}
            if texts.branch_id not in branches:
                raise ValidationFailed(
                    f"texts.branch_id: unknown AlfaCRM branch id {texts.branch_id}", field="texts.branch_id"
                )
        pay_items = settings.deals.upsell.pay_item_ids
        if pay_items:
            known_items = {item.id for item in client.pay_items(branch)}
            bad_items = [i for i in pay_items if i not in known_items]
            if bad_items:
                path = "deals.upsell.pay_item_ids"
                raise ValidationFailed(f"{path}: unknown AlfaCRM pay item id {bad_items[0]}", field=path)
        self._check_comment_author(integration, settings, client)
        mappings = [
            ("texts.requests.extra_fields", texts.requests.extra_fields),
            ("texts.chats.extra_fields", texts.chats.extra_fields),
        ]
        if any(m for _, m in mappings):
            fields = set(client.customer_fields(branch))
            for path, items in mappings:
                for i, m in enumerate(items):
                    if m.target not in fields:
                        raise ValidationFailed(
                            f"{path}[{i}].target: AlfaCRM customers have no field '{m.target}'",
                            field=f"{path}[{i}].target",
                        )

    def _check_comment_author(
        self, integration: Integration, settings: SettingsDocument, client: AlfaCrmClient
    ) -> None:
        """The comments' author (`communication/create` `user_id`, which AlfaCRM may require): a user the
        settings name must exist; with none named, the API user signs, so it must be known (found by its
        e-mail among the users, once, and kept on the record)."""
        texts = settings.texts
        path = "texts.comment_author_id"
        branch = integration.alfacrm.branch_id
        if texts.comment_author_id is not None:
            users = {u.id for u in client.users(branch)}
            if users and texts.comment_author_id not in users:
                raise ValidationFailed(f"{path}: unknown AlfaCRM user id {texts.comment_author_id}", field=path)
            return
        if not (texts.requests.enabled or texts.chats.enabled) or integration.alfacrm.api_user_id is not None:
            return
        found = _api_user(client, branch)
        if found is None:
            raise ValidationFailed(
                f"{path}: AlfaCRM may require an author (user_id) for the connector's comments, and the API user "
                f"({integration.alfacrm.email}) is not among the users AlfaCRM lists: set texts.comment_author_id "
                "to the AlfaCRM user id that signs them",
                field=path,
            )
        account = integration.alfacrm.model_copy(update={"api_user_id": found})
        self.rt.store.integrations.save_alfacrm_account(integration.id, account)

    def _require_components(self, integration: Integration, settings: SettingsDocument) -> None:
        """The integration's UIS account has the components its settings need (the probe's points: `admin`)."""
        with self.rt.uis_points(integration, "admin") as points:
            _require_components(points.client, settings)

    def set_active(self, integration_id: str, active: bool) -> JsonObject:
        integration = self._get(integration_id)
        if active:
            self._require_components(integration, integration.settings)
        if active and integration.settings.deals.enabled:
            # the funnels must exist before the first deal is uploaded; a UIS failure refuses activation
            ensure_funnels(self.rt, integration, force=True)
        self.rt.store.integrations.set_active(integration_id, active)
        return {"active": active}

    # --- look-ups -----------------------------------------------------------------------------
    def alfacrm_lookup(self, integration_id: str, name: str) -> JsonObject:
        integration = self._get(integration_id)
        client = self.rt.clients.alfacrm(integration)
        branch = integration.alfacrm.branch_id
        readers: dict[str, Callable[[], Sequence[BaseModel | str]]] = {
            "lead-statuses": lambda: client.lead_statuses(branch),
            "lead-sources": lambda: client.lead_sources(branch),
            "branches": client.branches,
            "users": lambda: client.users(branch),
            "teachers": lambda: client.teachers(branch),
            "customer-fields": lambda: client.customer_fields(branch),
            "pay-items": lambda: client.pay_items(branch),
        }
        if name not in readers:
            raise NotFound(f"unknown AlfaCRM look-up '{name}'; known: {', '.join(readers)}")
        return {"items": [_plain(i) for i in readers[name]()]}

    def uis_lookup(self, integration_id: str, name: str) -> JsonObject:
        integration = self._get(integration_id)
        methods = {"sites": "get_sites", "chat-channels": "get_chat_channels", "tags": "get_tags"}
        if name not in methods:
            raise NotFound(f"unknown UIS look-up '{name}'; known: {', '.join(methods)}")
        cache_name = f"uis_{name}"
        integrations = self.rt.store.integrations
        cached = integrations.cached(integration_id, cache_name)
        if cached is not None:
            return {"items": cast("list[JsonValue]", cached)}
        with self.rt.uis_points(integration, "admin") as points:
            items: list[JsonObject] = getattr(points.client, methods[name])()
        integrations.put_cached(integration_id, cache_name, items, UIS_LOOKUP_TTL)
        return {"items": cast("list[JsonValue]", items)}

    # --- deals, parked, replay ------------------------------------------------------------------
    def deals(self, integration_id: str, funnel: str | None) -> JsonObject:
        self._get(integration_id)
        if funnel not in (None, *FUNNELS):
            raise ValidationFailed("funnel: must be 'first_sale' or 'upsell'", field="funnel")
        return {"items": cast("list[JsonValue]", deals_view(self.rt.store, integration_id, funnel))}

    def parked(self, integration_id: str) -> JsonObject:
        self._get(integration_id)
        items = self.rt.store.integrations.parked(integration_id)
        return {"items": [i.model_dump(mode="json") for i in items]}

    def events(self, integration_id: str, limit: int) -> JsonObject:
        self._get(integration_id)
        items = self.rt.store.events.recent(integration_id, limit)
        return {"items": [e.model_dump(mode="json") for e in items]}

    def replay(self, integration_id: str, keys: Sequence[str] | None = None) -> JsonObject:
        return Replay(self.rt).run(integration_id, keys)


@dataclass(frozen=True)
class _Logins:
    """What the login checks of a new integration learned."""

    api_user_id: int | None  # the AlfaCRM user the API key belongs to (None: AlfaCRM cannot say)
    uis_timezone: str | None  # the UIS account's IANA zone (get.account)


def _require_components(uis: UisClient, settings: SettingsDocument) -> None:
    """422 `uis_component_missing` when the UIS account lacks a component what the settings switch on needs
    (data_api/components/): deals → «Воронки продаж», chats → a chat component for get.chats_report,
    requests → get.offline_messages_report's. One cheap call per feature (refused calls cost nothing).
    get.visitors' component is not required: without it lead names fall back to what the chat shows."""
    switched_on = (
        ("deals", settings.deals.enabled),
        ("chats", settings.texts.chats.enabled),
        ("requests", settings.texts.requests.enabled),
    )
    features = [name for name, on in switched_on if on]
    missing = uis.missing_components(features) if features else {}
    if missing:
        text = "; ".join(f"{FEATURE_METHODS[feature]} need {component_text(exc)}" for feature, exc in missing.items())
        raise UisComponentMissing(
            f"The UIS account lacks a component: {text}. Ask UIS to switch it on for the account, "
            "or turn the feature off in the settings.",
            field="uis",
            mnemonic="method_component_disabled",
        )


def _api_user(client: AlfaCrmClient, branch_id: int) -> int | None:
    """The API user's id, or None when AlfaCRM cannot say (no `user/index`, no user with that e-mail)."""
    try:
        return client.api_user_id(branch_id)
    except AlfaCrmError:
        return None


def _webhooks(base_url: str, integration_id: str, alfa_secret: str, uis_secret: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {
        "alfacrm": f"{base}/hooks/alfacrm/{integration_id}/{alfa_secret}",
        "uis": f"{base}/hooks/uis/{integration_id}/{uis_secret}",
    }


def _plain(item: BaseModel | str) -> JsonValue:
    if isinstance(item, BaseModel):
        dumped: JsonValue = item.model_dump(mode="json", exclude_none=True)
        return dumped
    return item
