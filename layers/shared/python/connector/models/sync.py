"""What the connector remembers about the other systems' state, as the store keeps it.

- UIS sync state (`UIS#funnel#<funnel>`, `UIS#field#<name>`, `UIS#resync`): the stages and user fields UIS
  holds, so a flush costs no UIS point when nothing changed (connector.deals.funnels);
- the reconciler's position in AlfaCRM's `log/index` (`WM#alfacrm_log`, one `LogMark` per entity) and in
  its passes over the customer and payment lists changed since a watermark (`WM#reread`, `RereadMark`);
- the chat poller's watermark and the last UIS budget it saw (`WM#chats`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Sync(BaseModel):
    # validators built at first use (`defer_build`, as AlfaModel): the admin API loads these for a few routes
    model_config = ConfigDict(extra="ignore", defer_build=True)


# --- UIS funnels and user fields ----------------------------------------------------------------------------
class StageState(_Sync):
    name: str | None = None
    status: str | None = None  # in_process | success | failed
    order: int | None = None


class FunnelState(_Sync):
    """`UIS#funnel#<funnel>`: the stages UIS holds, and `hash` of the stages wanted when they were synced."""

    hash: str = ""
    stages: dict[str, StageState] = Field(default_factory=dict)
    kept: list[str] = Field(default_factory=list)  # unwanted stages UIS refused to delete (deals sit in them)


class FunnelSyncPending(_Sync):
    """On the integration record (`funnel_sync`): settings were saved but UIS did not take the funnel sync that
    follows a save; the uploader retries it (at once, then backing off) and the page shows it pending."""

    state: Literal["pending"] = "pending"
    since: datetime
    error: str
    attempts: int = 1
    retry_at: datetime

    @classmethod
    def first(cls, now: datetime, error: str) -> FunnelSyncPending:
        return cls(since=now, error=error, retry_at=now)  # the next flush tries again

    def failed_again(self, now: datetime, error: str) -> FunnelSyncPending:
        wait = min(60 * 2 ** (self.attempts - 1), 3600)  # 1, 2, 4 … minutes, at most an hour: UIS points
        return self.model_copy(
            update={"error": error, "attempts": self.attempts + 1, "retry_at": now + timedelta(seconds=wait)}
        )

    def due(self, now: datetime) -> bool:
        return now >= self.retry_at


class UserFieldState(_Sync):
    """`UIS#field#<name>`: a deal user field UIS holds."""

    name: str
    data_type: str = "string"


class UisSyncState(_Sync):
    """Both funnels' and the user fields' sync state, as one read gives them."""

    funnels: dict[str, FunnelState] = Field(default_factory=dict)
    fields: dict[str, UserFieldState] = Field(default_factory=dict)


class ResyncMark(_Sync):
    """`UIS#resync`: a forced funnel sync that did not cure a sync problem (the uploader waits it out)."""

    at: str
    error: str | None = None


# --- AlfaCRM's change log -----------------------------------------------------------------------------------
class LogMark(_Sync):
    """How far the reconciler has read one entity's `log/index` (the log's order is detected and kept)."""

    at: str = ""
    id: int = 0
    page: int = 0
    order: str | None = None  # asc | desc | None (not known yet)


class ListPass(_Sync):
    """One entity's pass over its AlfaCRM list, changed since a watermark (`connector.deals.reread`)."""

    since: str | None = None  # local date-time: the last complete pass's start (records updated since then)
    started: str | None = None  # local date-time this pass began (the next pass's `since`); None: none running
    branches: list[int] = Field(default_factory=list)  # the account's branches, read when the pass began
    branch: int = 0  # index into `branches`
    page: int = 0  # the page of that branch the pass reads next
    filter: str | None = None  # honoured | ignored: what the records' own `updated_at` said of the filter


class RereadMark(_Sync):
    """`WM#reread`: the reconciler's passes over the customer and payment lists."""

    customer: ListPass = Field(default_factory=ListPass)
    pay: ListPass = Field(default_factory=ListPass)
    version: int = 0


# --- the chat poller ----------------------------------------------------------------------------------------
class UisLimits(_Sync):
    """`metadata.limits` of a UIS reply (each `*_reset` in seconds from when it was seen)."""

    day_limit: float | None = None
    day_remaining: float | None = None
    day_reset: float | None = None
    minute_limit: float | None = None
    minute_remaining: float | None = None


class SeenLimits(UisLimits):
    seen_at: str | None = None  # UTC ISO


class PollerState(_Sync):
    """`WM#chats`: where the next poll starts, when the last one ran, and the budget it saw."""

    watermark: str | None = None  # UTC ISO
    last_poll_at: str | None = None
    span_seconds: int | None = None  # the window the next poll reads (halved when one was too full)
    limits: SeenLimits | None = None
    last_window: list[str] | None = None
    last_error: str | None = None
    version: int = 0


class CheckedFunnels(_Sync):
    """A container's memory of its last funnel check: the wanted stages' hash and the stages UIS holds."""

    wanted_hash: str
    known: dict[str, frozenset[str]] = Field(default_factory=dict)
