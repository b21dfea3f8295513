"""Admin use cases behind the admin API (contract.md): integrations, settings, look-ups, views, replay."""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from connector import queues
from connector import secrets as secret_store
from connector.config import env
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
from connector.ports import ClientFactory, default_clients
from connector.settings import (
    Credentials,
    Integration,
    SettingsDocument,
    check_alfacrm_hostname,
    check_uis_api_url,
    parse_create_input,
    parse_settings,
    resolve_is_public,
)
from connector.store import Store, default_store
from connector.timeutil import to_iso, utc_to_local, utcnow

UIS_LOOKUP_TTL = 300  # seconds: each UIS call costs a point of the account's daily budget


def _connect_alfacrm(hostname: str, email: str, api_key: str) -> Any:
    from connector.alfacrm.client import AlfaCrmClient

    return AlfaCrmClient(hostname, email, api_key)


def _connect_uis(api_url: str, token: str) -> Any:
    from connector.uis.client import UisClient

    return UisClient(api_url, token)


@dataclass
class Admin:
    """Admin use cases with their ports (tests pass sandbox-backed ones)."""

    store: Store = field(default_factory=default_store)
    clients: ClientFactory = default_clients
    connect_alfacrm: Callable[[str, str, str], Any] = _connect_alfacrm
    connect_uis: Callable[[str, str], Any] = _connect_uis
    allow_insecure_hosts: bool = field(default_factory=lambda: env().allow_insecure_hosts)
    check_dns: Callable[[str], bool] = resolve_is_public

    # --- integrations -------------------------------------------------------------------------
    def create_integration(self, body: Any, base_url: str) -> dict[str, Any]:
        data = parse_create_input(body)
        hostname = check_alfacrm_hostname(data.alfacrm.hostname, allow_insecure=self.allow_insecure_hosts)
        if not self.allow_insecure_hosts and not self.check_dns(hostname):
            raise ValidationFailed(
                f"alfacrm.hostname: '{hostname}' does not resolve to public addresses only", field="alfacrm.hostname"
            )
        api_url = check_uis_api_url(data.uis.api_url, allow_insecure=self.allow_insecure_hosts)
        uis_host = urlsplit(api_url).hostname or ""
        if not self.allow_insecure_hosts and not self.check_dns(uis_host):
            raise ValidationFailed(
                f"uis.api_url: '{uis_host}' does not resolve to public addresses only", field="uis.api_url"
            )
        alfacrm = self.connect_alfacrm(hostname, data.alfacrm.email, data.alfacrm.api_key)
        try:
            alfacrm.login()
        except AlfaCrmError as exc:
            raise AlfaCrmAuthFailed(f"AlfaCRM login failed: {exc.message}", field="alfacrm") from None
        api_user_id = _api_user(alfacrm, data.alfacrm.branch_id)
        uis = self.connect_uis(api_url, data.uis.access_token)
        try:
            account = uis.check_auth()
        except UisError as exc:
            code = UisForbidden if isinstance(exc, UisForbidden) else UisAuthFailed
            raise code(f"UIS login failed: {exc.message}", mnemonic=exc.mnemonic, field="uis") from None
        # the default settings upload deals: the account needs «Воронки продаж» (data_api/components/)
        self._require_components(uis, SettingsDocument())

        integration_id = pysecrets.token_hex(8)
        alfa_secret, uis_secret = pysecrets.token_urlsafe(24), pysecrets.token_urlsafe(24)  # 192 bits each
        secret_id = secret_store.store_credentials(
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
                "api_user_id": api_user_id,
            },
            uis={"api_url": api_url, "timezone": account.get("timezone") or None},
            timezone=data.timezone,
            phone_region=data.phone_region,
            active=False,
            created_at=to_iso(utcnow()),
            secret_id=secret_id,
            alfacrm_webhook_secret_hash=hash_secret(alfa_secret),
            uis_webhook_secret_hash=hash_secret(uis_secret),
        )
        try:
            self.store.integrations.create(integration)
        except Exception:
            # nothing partial: the credentials go when the record could not be written
            secret_store.delete_credentials(secret_id)
            raise
        return {
            "id": integration_id,
            "webhooks": self._webhooks(base_url, integration_id, alfa_secret, uis_secret),
            "active": False,
        }

    def webhooks(self, integration_id: str, base_url: str) -> dict[str, str]:
        integration = self._get(integration_id)
        creds = secret_store.credentials(integration.secret_id)
        return self._webhooks(base_url, integration_id, creds.alfacrm_webhook_secret, creds.uis_webhook_secret)

    @staticmethod
    def _webhooks(base_url: str, integration_id: str, alfa_secret: str, uis_secret: str) -> dict[str, str]:
        base = base_url.rstrip("/")
        return {
            "alfacrm": f"{base}/hooks/alfacrm/{integration_id}/{alfa_secret}",
            "uis": f"{base}/hooks/uis/{integration_id}/{uis_secret}",
        }

    def _get(self, integration_id: str) -> Integration:
        integration = self.store.integrations.get(integration_id, fresh=True)
        if integration is None:
            raise NotFound(f"integration {integration_id} not found")
        return integration

    def get_integration(self, integration_id: str) -> dict[str, Any]:
        integration = self._get(integration_id)
        return {**integration.public(), "uis_points": self.store.integrations.recent_points(integration_id)}

    def list_integrations(self) -> dict[str, Any]:
        return {"items": [i.public() for i in self.store.integrations.all()]}

    # --- settings -----------------------------------------------------------------------------
    def put_settings(self, integration_id: str, body: Any) -> dict[str, Any]:
        integration = self._get(integration_id)
        settings = parse_settings(body)
        self._check_against_alfacrm(integration, settings)
        if integration.active:
            self._require_components(self.clients.uis(integration), settings, integration)
        self.store.integrations.save_settings(integration_id, settings)
        integration = self._get(integration_id)
        if integration.active and settings.deals.enabled:
            self._ensure_funnels(integration, force=True)
        return settings.model_dump(mode="json")

    def _check_against_alfacrm(self, integration: Integration, settings: SettingsDocument) -> None:
        """Ids in the document must exist in the AlfaCRM account (one look-up each, only when used)."""
        client = self.clients.alfacrm(integration)
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

    def _check_comment_author(self, integration: Integration, settings: SettingsDocument, client: Any) -> None:
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
        self.store.integrations.save_alfacrm_account(integration.id, account)

    def set_active(self, integration_id: str, active: bool) -> dict[str, Any]:
        integration = self._get(integration_id)
        if active:
            self._require_components(self.clients.uis(integration), integration.settings, integration)
        if active and integration.settings.deals.enabled:
            # the funnels must exist before the first deal is uploaded; a UIS failure refuses activation
            self._ensure_funnels(integration, force=True)
        self.store.integrations.set_active(integration_id, active)
        return {"active": active}

    def _require_components(self, uis: Any, settings: SettingsDocument, integration: Integration | None = None) -> None:
        """422 `uis_component_missing` when the UIS account lacks a component what the settings switch on needs
        (data_api/components/): deals → «Воронки продаж», chats → a chat component for get.chats_report,
        requests → get.offline_messages_report's. One cheap call per feature (refused calls cost nothing).
        get.visitors' component is not required: without it lead names fall back to what the chat shows."""
        from connector.uis.client import FEATURE_METHODS, component_text

        features = [
            name
            for name, on in (
                ("deals", settings.deals.enabled),
                ("chats", settings.texts.chats.enabled),
                ("requests", settings.texts.requests.enabled),
            )
            if on
        ]
        if not features:
            return
        before = uis.calls
        missing = uis.missing_components(features)
        if integration is not None and uis.calls > before:
            day = utc_to_local(utcnow(), integration.timezone).date().isoformat()
            self.store.integrations.add_points(integration.id, day, uis.calls - before, purpose="admin")
        if missing:
            text = "; ".join(
                f"{FEATURE_METHODS[feature]} need {component_text(exc)}" for feature, exc in missing.items()
            )
            raise UisComponentMissing(
                f"The UIS account lacks a component: {text}. Ask UIS to switch it on for the account, "
                "or turn the feature off in the settings.",
                field="uis",
                mnemonic="method_component_disabled",
            )

    def _ensure_funnels(self, integration: Integration, *, force: bool) -> None:
        from connector.deals.funnels import ensure_funnels

        ensure_funnels(integration, store=self.store, clients=self.clients, force=force)

    # --- look-ups -----------------------------------------------------------------------------
    def alfacrm_lookup(self, integration_id: str, name: str) -> dict[str, Any]:
        integration = self._get(integration_id)
        client = self.clients.alfacrm(integration)
        branch = integration.alfacrm.branch_id
        readers: dict[str, Callable[[], Any]] = {
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
        items = readers[name]()
        return {"items": [_plain(i) for i in items]}

    def uis_lookup(self, integration_id: str, name: str) -> dict[str, Any]:
        integration = self._get(integration_id)
        methods = {"sites": "get_sites", "chat-channels": "get_chat_channels", "tags": "get_tags"}
        if name not in methods:
            raise NotFound(f"unknown UIS look-up '{name}'; known: {', '.join(methods)}")
        cache_name = f"uis_{name}"
        cached = self.store.integrations.cached(integration_id, cache_name)
        if cached is not None:
            return {"items": cached}
        client = self.clients.uis(integration)
        items = [_plain(i) for i in getattr(client, methods[name])()]
        self.store.integrations.put_cached(integration_id, cache_name, items, UIS_LOOKUP_TTL)
        # the account's day: UIS's budget resets at its midnight, and the deals and the poller count by it too
        day = utc_to_local(utcnow(), integration.timezone).date().isoformat()
        self.store.integrations.add_points(integration_id, day, 1, purpose="admin")
        return {"items": items}

    # --- deals, parked, replay ------------------------------------------------------------------
    def deals(self, integration_id: str, funnel: str | None) -> dict[str, Any]:
        from connector.deals.views import deals_view

        self._get(integration_id)
        if funnel not in (None, "first_sale", "upsell"):
            raise ValidationFailed("funnel: must be 'first_sale' or 'upsell'", field="funnel")
        return {"items": deals_view(self.store, integration_id, funnel)}

    def parked(self, integration_id: str) -> dict[str, Any]:
        self._get(integration_id)
        return {"items": self.store.integrations.parked(integration_id)}

    def replay(self, integration_id: str) -> dict[str, Any]:
        """Re-drive this integration's parked items and its messages in the dead-letter queues."""
        self._get(integration_id)
        replayed: dict[str, int] = {"deal": 0, "deal_event": 0, "text_event": 0}
        e = env()
        for item in self.store.integrations.parked(integration_id):
            kind, key, payload = item["kind"], item["key"], item["payload"]
            if kind == "deal":
                self.store.deals.mark_pending(integration_id, payload["funnel"], payload["ext_id"])
            elif kind == "deal_event":
                # a fresh `replay` nonce: the idempotency table must not answer the replay from memory
                queues.send(e.deal_events_queue_url, {**payload, "replay": pysecrets.token_hex(8)})
            elif kind == "text_event":
                queues.send(e.text_events_queue_url, {**payload, "replay": pysecrets.token_hex(8)})
            else:
                continue
            self.store.integrations.unpark(integration_id, kind, key)
            replayed[kind] = replayed.get(kind, 0) + 1
        redriven = 0
        for dlq, target in (
            (e.deal_events_dlq_url, e.deal_events_queue_url),
            (e.text_events_dlq_url, e.text_events_queue_url),
        ):
            if dlq and target:
                redriven += queues.redrive_dlq(dlq, target, integration_id=integration_id)
        return {"replayed": replayed, "dead_letters_redriven": redriven}


def _api_user(client: Any, branch_id: int) -> int | None:
    """The API user's id, or None when AlfaCRM cannot say (no `user/index`, no user with that e-mail)."""
    try:
        found = client.api_user_id(branch_id)
    except AlfaCrmError:
        return None
    return int(found) if found is not None else None


def _plain(item: Any) -> Any:
    if hasattr(item, "model_dump"):
        return item.model_dump(mode="json", exclude_none=True)
    return item


def error_reply(exc: ConnectorError) -> tuple[int, dict[str, Any]]:
    """The one place domain errors become HTTP replies (`{"error": {code, message, field}}`)."""
    from connector.errors import (
        AlfaCrmUnavailable,
        BadRequest,
        PayloadTooLarge,
        UisLimitExceeded,
        UisUnavailable,
        Unauthorized,
    )

    status = 500
    if isinstance(exc, PayloadTooLarge | BadRequest):
        status = 400
    elif isinstance(exc, Unauthorized):
        status = 401
    elif isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, ValidationFailed | AlfaCrmAuthFailed | UisAuthFailed | UisForbidden | UisComponentMissing):
        status = 422
    elif isinstance(exc, AlfaCrmError | UisError):
        status = 503 if isinstance(exc, AlfaCrmUnavailable | UisUnavailable | UisLimitExceeded) else 502
    return status, {"error": {"code": exc.code, "message": exc.message, "field": exc.field}}
