"""The ports use cases take: where to get an integration's AlfaCRM and UIS clients.

The default factory reads the credentials from Secrets Manager and returns the container's cached
client per account; tests pass a factory that returns sandbox-backed clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

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
        return client_for(integration.alfacrm.hostname, integration.alfacrm.email, creds.alfacrm_api_key)

    def uis(self, integration: Integration) -> UisClient:
        from connector import secrets
        from connector.uis.client import client_for

        creds = secrets.credentials(integration.secret_id)
        return client_for(integration.uis.api_url, creds.uis_access_token)


default_clients = SecretsClientFactory()
