"""The two queue messages (docs/internals.md, "Queue messages"): what the producers build and the workers read.

Producers: the AlfaCRM intake and the reconciler (deal events), the UIS intake and the chat poller (text
events), the admin replay (both). The body a school's system sent stays raw (`event`, `payload`): a parked
message is replayed exactly as it came, and the deal worker's idempotency key is computed over it.
"""

from __future__ import annotations

from typing import Literal, get_args

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, field_validator

from connector.models.raw import JsonObject, JsonValue

TextEventName = Literal["offline_message", "chat_finished", "lost_chat", "set_mark", "unset_mark", "chat_started"]
TEXT_EVENTS: frozenset[str] = frozenset(get_args(TextEventName))
CHAT_EVENTS: frozenset[str] = TEXT_EVENTS - {"offline_message"}
ENDED_EVENTS: frozenset[str] = frozenset({"chat_finished", "lost_chat"})
MARK_EVENTS: frozenset[str] = frozenset({"set_mark", "unset_mark"})

DealEventSource = Literal["webhook", "reconciler"]
TextEventSource = Literal["notification", "poller", "chat_api"]


class QueueMessage(BaseModel):
    # validators built at first use (`defer_build`, as AlfaModel): the admin API loads these for a few routes
    model_config = ConfigDict(extra="ignore", defer_build=True)

    integration_id: str
    received_at: str | None = None  # UTC ISO, when the intake (or the producer) took it
    # set by an admin replay: a fresh nonce, so the idempotency table does not answer the replay from memory
    replay: str | None = None

    def body(self) -> str:
        """The SQS message body."""
        return self.model_dump_json(exclude_none=True)


class DealEventMessage(QueueMessage):
    """One AlfaCRM webhook for the deal worker. `event` is the webhook JSON as AlfaCRM sent it (or as the
    reconciler rebuilt it from `log/index`); the worker reads it as a `WebhookEvent`."""

    source: DealEventSource = "webhook"
    event: JsonObject


class TextEventMessage(QueueMessage):
    """One UIS text event for the text worker. `event` comes from the webhook URL's `?event=` (None: the
    worker infers it from the payload); `payload` is the notification's JSON body or query parameters, or
    the poller's `get.chats_report` row."""

    integration_id: str = Field(min_length=1)
    source: TextEventSource = "notification"
    event: TextEventName | None = None
    method: Literal["GET", "POST"] = "POST"
    payload: JsonObject = Field(default_factory=dict)

    @field_validator("event", mode="before")
    @classmethod
    def _blank_event(cls, value: JsonValue) -> JsonValue:
        return None if value in ("", "null") else value

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: JsonValue) -> JsonValue:
        return value.upper() if isinstance(value, str) else value


class JobMessage(QueueMessage):
    """A background job of one integration for the jobs worker: the rest of a dead-letter redrive, or of an
    integration's removal (`connector.replay`, `connector.lifecycle`). A job that runs out of time sends its
    own continuation."""

    job: Literal["redrive", "purge"]
    job_id: str = Field(min_length=1)


class DealEventRecord(SqsRecordModel):
    """An SQS record of the deal events queue, its body parsed (the deal worker's batch processor model)."""

    body: Json[DealEventMessage]


class JobRecord(SqsRecordModel):
    """An SQS record of the jobs queue, its body parsed (the jobs worker's batch processor model)."""

    body: Json[JobMessage]
