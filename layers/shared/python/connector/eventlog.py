"""The recorder every outcome goes through (`rt.events`): a school's execution log, its activity and the
credential state the workers see. Cheap on the hot path:

- `record(...)` only buffers; `flush()` (the end of each invocation, `Runtime.invocation`, or every
  `AUTO_FLUSH` entries) writes each school's entries as one item: a batch of ten SQS records costs one write
  per school, not ten;
- `seen(...)` / `credential(...)` fold into the school's `HEALTH` item, written at most once a minute per
  container and school, except when a credential changes state (broken or mended), which is written at once;
- a broken credential also makes one `IntegrationsFailing` metric (no per-school dimension: CloudWatch bills per
  metric) and an ERROR line `integration failing` naming the integration (README, "Operations").
Writing the log never fails the work it describes: a DynamoDB error here is logged and the entries dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from botocore.exceptions import BotoCoreError, ClientError

from connector.errors import AlfaCrmAuthFailed, ConnectorError, UisAuthFailed, UisError, UisForbidden
from connector.models.events import (
    CredentialState,
    CredentialSystem,
    EventKind,
    EventOutcome,
    EventSource,
    ExecutionEvent,
)
from connector.models.raw import JsonObject
from connector.observability import logger, mask_text, metrics
from connector.store.base import model_item
from connector.store.events import EventStore

ACTIVITY_EVERY = 60.0  # seconds between two writes of one school's activity by one container
AUTO_FLUSH = 25  # entries buffered before a write even inside an invocation
ActivityField = Literal["alfacrm_webhook_at", "uis_notification_at", "upload_at"]
# UIS answers -32008 when a component the call needs is switched off for the account
_COMPONENT_CODE = -32008


def stamp(moment: datetime) -> str:
    """UTC ISO with milliseconds: entries of one second keep their order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def credential_failure(exc: BaseException) -> CredentialSystem | None:
    """Which credential an error says is broken (None: not a credential problem)."""
    if isinstance(exc, AlfaCrmAuthFailed):
        return "alfacrm"
    if isinstance(exc, UisAuthFailed | UisForbidden):
        return "uis"
    if isinstance(exc, UisError) and (exc.rpc_code == _COMPONENT_CODE or "component" in (exc.mnemonic or "")):
        return "uis_components"
    return None


class EventLog:
    def __init__(
        self,
        store: EventStore,
        now: Callable[[], datetime],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.now = now
        self.monotonic = monotonic
        self._lock = threading.Lock()  # the local stack runs every function in threads on one runtime
        self._entries: dict[str, list[ExecutionEvent]] = {}
        self._activity: dict[str, JsonObject] = {}
        self._written: dict[str, float] = {}  # school → when this container last wrote its activity
        self._states: dict[tuple[str, str], str] = {}  # (school, system) → the credential state last written

    # --- what the use cases call -------------------------------------------------------------------------
    def record(
        self,
        integration_id: str,
        *,
        source: EventSource,
        kind: EventKind,
        key: str,
        outcome: EventOutcome,
        reason: str = "",
    ) -> ExecutionEvent:
        """One outcome of the school's execution log (buffered until the invocation ends)."""
        event = ExecutionEvent(
            at=stamp(self.now()), source=source, kind=kind, key=key, outcome=outcome, reason=mask_text(reason)
        )
        with self._lock:
            self._entries.setdefault(integration_id, []).append(event)
            full = sum(len(v) for v in self._entries.values()) >= AUTO_FLUSH
        if full:
            self.flush()
        return event

    def seen(self, integration_id: str, field: ActivityField, at: str | None = None) -> None:
        """The school's last webhook / notification received, or last upload (`at`: now when None)."""
        with self._lock:
            pending = self._activity.setdefault(integration_id, {})
            value = at or stamp(self.now())
            old = pending.get(field)
            if not isinstance(old, str) or old < value:
                pending[field] = value

    def credential(self, integration_id: str, system: CredentialSystem, *, ok: bool, error: str | None = None) -> None:
        state = CredentialState(state="ok" if ok else "failing", at=stamp(self.now()), error=error)
        with self._lock:
            self._activity.setdefault(integration_id, {})[system] = model_item(state)

    def failed(self, integration_id: str, exc: BaseException) -> None:
        """An error a use case met: a broken credential is noted as such (the rest is in the log entry)."""
        system = credential_failure(exc)
        if system is not None:
            message = exc.message if isinstance(exc, ConnectorError) else str(exc)
            self.credential(integration_id, system, ok=False, error=mask_text(message))

    # --- writing ------------------------------------------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            entries, self._entries = self._entries, {}
            due = self._due_activity()
        try:
            if entries:
                self.store.append(entries)
            for integration_id, fields in due.items():
                self.store.update_activity(integration_id, fields)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("execution log not written", extra={"error": type(exc).__name__})

    def _due_activity(self) -> dict[str, JsonObject]:
        """The schools whose activity is written now (under the lock): a minute since the last write by this
        container, or a credential that changed state."""
        due: dict[str, JsonObject] = {}
        clock = self.monotonic()
        for integration_id, fields in list(self._activity.items()):
            changed = [
                system
                for system in ("alfacrm", "uis", "uis_components")
                if isinstance(fields.get(system), dict)
                and self._states.get((integration_id, system)) != fields[system].get("state")  # type: ignore[union-attr]
            ]
            last = self._written.get(integration_id)
            if not changed and last is not None and clock - last < ACTIVITY_EVERY:
                continue
            due[integration_id] = fields
            del self._activity[integration_id]
            self._written[integration_id] = clock
            for system in ("alfacrm", "uis", "uis_components"):
                value = fields.get(system)
                if isinstance(value, dict):
                    self._states[(integration_id, system)] = str(value.get("state"))
                    if value.get("state") == "failing":
                        _failing(integration_id, system, value.get("error"))
        return due


def _failing(integration_id: str, system: str, error: object) -> None:
    # one metric for every school (an alarm on it), the school in the log line (a Logs Insights query lists them)
    metrics.add_metric(name="IntegrationsFailing", unit="Count", value=1)
    logger.error("integration failing", extra={"integration_id": integration_id, "system": system, "error": error})
