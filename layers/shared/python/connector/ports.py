"""The ports use cases take: where to get an integration's AlfaCRM and UIS clients.

The default factory reads the credentials from Secrets Manager and returns the container's cached
client per account; tests pass a factory that returns sandbox-backed clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from connector.alfacrm.client import AlfaCrmClient
    from connector.settings import Integration
    from connector.uis.client import UisClient


class ClientFactory(Protocol):
    def alfacrm(self, integration: Integration) -> AlfaCrmClient: ...

    def uis(self, integration: Integration) -> UisClient: ...


class SecretsClientFactory:
    """Production factory: credentials from Secrets Manager, one client per account per container."""

    def alfacrm(self, integration: Integration) -> AlfaCrmClient:
        from connector import secrets
        from connector.alfacrm.client import client_for

        creds = secrets.credentials(integration.secret_id)
        return client_for(
            integration.alfacrm.hostname, integration.alfacrm.email, creds.alfacrm_api_key, limiter=alfacrm_limiter()
        )

    def uis(self, integration: Integration) -> UisClient:
        from connector import secrets
        from connector.uis.client import client_for

        creds = secrets.credentials(integration.secret_id)
        return client_for(integration.uis.api_url, creds.uis_access_token)


_alfacrm_limiter: Any = None


def alfacrm_limiter() -> Any:
    """In-process spacing (ALFACRM_RPS) chained with the account-wide budget (ALFACRM_ACCOUNT_RPS, default 4/s)
    that every container shares through the state table."""
    global _alfacrm_limiter
    if _alfacrm_limiter is None:
        from connector.alfacrm.client import DEFAULT_RPS, shared_limiter
        from connector.config import env
        from connector.retry import ChainedLimiter
        from connector.store import default_store
        from connector.store.ratelimit import SharedWindowLimiter

        account = SharedWindowLimiter(default_store().table, env().alfacrm_account_rps)
        _alfacrm_limiter = ChainedLimiter(shared_limiter(DEFAULT_RPS), account)
    return _alfacrm_limiter


def reset_limiter() -> None:
    global _alfacrm_limiter
    _alfacrm_limiter = None


default_clients = SecretsClientFactory()
