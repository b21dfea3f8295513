"""What a school's health page and execution log show (`GET /integrations/{id}/health`, `/events`).

- `ExecutionEvent`: one entry of the execution log, written where an outcome is decided (deal worker, text
  worker, uploader, poller, lost-chat tasks): what came in (`source`, `kind`, `key`) and how it ended, with
  why (`reason`: the filter that skipped it, the error that parked or failed it);
- `Activity`: the school's last webhook, notification and upload, and the credential state the workers last
  saw (`HEALTH`, written at most once a minute per container and school, or when a credential breaks);
- `DeadLetterMark`: one of the school's messages SQS moved to a dead-letter queue (SQS cannot count per school);
- `RedriveJob`: a dead-letter redrive running in the background (`JOB#redrive`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

EventOutcome = Literal["done", "skipped", "parked", "failed"]
# where an event came from: an AlfaCRM webhook, a UIS notification, or one of the connector's own runs
EventSource = Literal["alfacrm", "uis", "poller", "uploader", "reconciler"]
# deal_event / text_event: a queue message; upload: one flush; deal: one deal of it; poll / lost_chat: the poller's
EventKind = Literal["deal_event", "text_event", "upload", "deal", "poll", "lost_chat"]
CredentialSystem = Literal["alfacrm", "uis", "uis_components"]
MAX_REASON = 300


class _Model(BaseModel):
    # validators built at first use (`defer_build`, as AlfaModel): the admin API loads these for a few routes
    model_config = ConfigDict(extra="ignore", defer_build=True)


class ExecutionEvent(_Model):
    at: str  # UTC ISO, when the outcome was decided
    source: EventSource
    kind: EventKind
    key: str
    outcome: EventOutcome
    reason: str = ""

    @field_validator("reason", "key")
    @classmethod
    def _bounded(cls, value: str) -> str:
        # an error message may be long (a UIS reply quoted): the log stays small and cheap
        return value if len(value) <= MAX_REASON else value[: MAX_REASON - 1] + "…"


class CredentialState(_Model):
    """What the workers last saw of one system's credentials (or a live check did)."""

    state: Literal["ok", "failing"]
    at: str
    error: str | None = None


class Activity(_Model):
    alfacrm_webhook_at: str | None = None  # the newest AlfaCRM webhook a worker took (its intake time)
    uis_notification_at: str | None = None
    upload_at: str | None = None  # the last flush that sent something to UIS
    alfacrm: CredentialState | None = None
    uis: CredentialState | None = None
    uis_components: CredentialState | None = None


class DeadLetterMark(_Model):
    queue: Literal["deal", "text"]
    message_id: str
    at: str
    reason: str = ""


class RedriveJob(_Model):
    """A school's dead-letter redrive that a replay could not finish in the API's time, running in the jobs
    worker (its progress in the replay reply and in health)."""

    kind: Literal["redrive"] = "redrive"
    job_id: str
    state: Literal["running", "done", "failed"] = "running"
    moved: int = 0  # dead letters redriven so far
    started_at: str
    updated_at: str
    finished_at: str | None = None
    error: str | None = None
