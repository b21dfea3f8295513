"""Test helpers shared across areas (one copy of each)."""

from __future__ import annotations

from typing import Any

from connector.settings import Integration, SettingsDocument


class RecordingSender:
    """Stands in for the network where a sandbox sends webhooks or notifications: keeps each request and
    answers `status` (or raises `error`), so a test decides when, and whether, the connector sees them."""

    def __init__(self, status: int = 200) -> None:
        self.sent: list[dict[str, Any]] = []
        self.status = status
        self.error: Exception | None = None

    def __call__(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> int:
        if self.error is not None:
            raise self.error
        self.sent.append({"method": method, "url": url, "body": body, "headers": headers})
        return self.status


def sandbox_integration(
    store: Any,
    settings: SettingsDocument,
    *,
    hostname: str,
    email: str,
    api_url: str,
    timezone: str,
    iid: str = "int1",
    active: bool = True,
    api_user_id: int | None = None,
) -> Integration:
    """An integration record wired to in-process sandboxes (no secrets: tests pass their own clients)."""
    integration = Integration(
        id=iid,
        name="Школа",
        alfacrm={"hostname": hostname, "email": email, "branch_id": 1, "api_user_id": api_user_id},
        uis={"api_url": api_url},
        timezone=timezone,
        active=active,
        secret_id=f"test/{iid}",
        alfacrm_webhook_secret_hash="x",
        uis_webhook_secret_hash="y",
        settings=settings,
    )
    store.integrations.create(integration)
    return integration
