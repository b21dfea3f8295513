"""The production `ClientFactory`: AlfaCRM and UIS clients per account, on the container's two connection pools.

Built by the `Runtime` on first use (`rt.accounts`), so a handler that never calls AlfaCRM or UIS (the
webhook intakes, the pages) never imports the clients and their models.
"""

from __future__ import annotations

import hashlib
import threading
from functools import cached_property

import httpx

from connector.alfacrm import client as alfacrm_client
from connector.alfacrm.client import AlfaCrmClient, TokenCache
from connector.retry import Limiter, RetryPolicy
from connector.secrets import Secrets
from connector.settings import Integration
from connector.uis import client as uis_client
from connector.uis.client import UisClient


class AccountClients:
    """Credentials from the secrets port, one client per account, all of them on the container's two
    connection pools, AlfaCRM's through the account limiter and one token cache."""

    def __init__(self, secrets: Secrets, *, limiter: Limiter, spacing: Limiter, retry: RetryPolicy) -> None:
        self.secrets = secrets
        self.retry = retry  # keeps to the invocation's time budget (the runtime's Deadline)
        self.limiter = limiter  # in-process spacing chained with the account-wide budget
        self.spacing = spacing  # in-process spacing alone (accounts that are no integration yet)
        self.tokens = TokenCache()
        self._alfacrm: dict[tuple[str, str, str], AlfaCrmClient] = {}
        self._uis: dict[tuple[str, str], UisClient] = {}
        self._lock = threading.Lock()

    @cached_property
    def alfacrm_http(self) -> httpx.Client:
        return alfacrm_client.pooled_http()

    @cached_property
    def uis_http(self) -> httpx.Client:
        return uis_client.pooled_http()

    def alfacrm(self, integration: Integration) -> AlfaCrmClient:
        creds = self.secrets.credentials(integration.secret_id)
        return self.alfacrm_for(integration.alfacrm.hostname, integration.alfacrm.email, creds.alfacrm_api_key)

    def uis(self, integration: Integration) -> UisClient:
        creds = self.secrets.credentials(integration.secret_id)
        return self.uis_for(integration.uis.api_url, creds.uis_access_token)

    def alfacrm_for(self, hostname: str, email: str, api_key: str) -> AlfaCrmClient:
        """The container's client of this account (a rotated key gets a new one; only a digest is kept)."""
        key = (hostname, email, _digest(api_key))
        with self._lock:
            found = self._alfacrm.get(key)
            if found is None:
                found = self._alfacrm[key] = AlfaCrmClient(
                    hostname,
                    email,
                    api_key,
                    http=self.alfacrm_http,
                    limiter=self.limiter,
                    tokens=self.tokens,
                    retry=self.retry,
                )
            return found

    def uis_for(self, api_url: str, access_token: str) -> UisClient:
        """The container's client of this account, so its `limits` accumulate across invocations."""
        key = (api_url, _digest(access_token))
        with self._lock:
            found = self._uis.get(key)
            if found is None:
                found = self._uis[key] = UisClient(api_url, access_token, http=self.uis_http, retry=self.retry)
            return found

    # --- accounts that are not integrations yet (the admin's login checks) ---------------------
    def connect_alfacrm(self, hostname: str, email: str, api_key: str) -> AlfaCrmClient:
        return AlfaCrmClient(
            hostname,
            email,
            api_key,
            http=self.alfacrm_http,
            limiter=self.spacing,
            tokens=self.tokens,
            retry=self.retry,
        )

    def connect_uis(self, api_url: str, access_token: str) -> UisClient:
        return UisClient(api_url, access_token, http=self.uis_http, retry=self.retry)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
