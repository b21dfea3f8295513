"""The environment, read once per container (cold start) into a typed model.

Logic never reads `os.environ`: the `Runtime` holds this model and hands use cases what they need.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value and value.strip() else default
    except ValueError:
        return default


class Environment(BaseModel):
    state_table: str = "StateTable"
    idempotency_table: str = "IdempotencyTable"
    deal_events_queue_url: str = ""
    text_events_queue_url: str = ""
    deal_events_dlq_url: str = ""
    text_events_dlq_url: str = ""
    jobs_queue_url: str = ""  # background jobs: a long dead-letter redrive, an integration's removal
    # receives before SQS dead-letters a message (the queues' maxReceiveCount in template.yaml)
    max_receive_count: int = 5
    # a removed integration's partition is swept again this long after the removal (writes in flight)
    purge_sweep_seconds: int = 60
    secrets_prefix: str = "alfacrm-uis"
    # the stack's KMS key (an alias) that seals every integration's credentials
    credentials_key_id: str = ""
    admin_token_secret_id: str = ""
    admin_token: str = ""  # local stack only; in AWS the token lives in Secrets Manager
    allow_insecure_hosts: bool = False
    # AlfaCRM requests per second per account from one container (spacing; 0 = none)
    alfacrm_rps: float = 2.0
    # AlfaCRM requests per second per account, across all containers (0 = no shared limit)
    alfacrm_account_rps: int = 4
    max_body_bytes: int = 256 * 1024

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Environment:
        e = os.environ if environ is None else environ
        return cls(
            state_table=e.get("STATE_TABLE", "StateTable"),
            idempotency_table=e.get("IDEMPOTENCY_TABLE", "IdempotencyTable"),
            deal_events_queue_url=e.get("DEAL_EVENTS_QUEUE_URL", ""),
            text_events_queue_url=e.get("TEXT_EVENTS_QUEUE_URL", ""),
            deal_events_dlq_url=e.get("DEAL_EVENTS_DLQ_URL", ""),
            text_events_dlq_url=e.get("TEXT_EVENTS_DLQ_URL", ""),
            jobs_queue_url=e.get("JOBS_QUEUE_URL", ""),
            max_receive_count=int(_number(e.get("MAX_RECEIVE_COUNT"), 5)),
            purge_sweep_seconds=int(_number(e.get("PURGE_SWEEP_SECONDS"), 60)),
            secrets_prefix=e.get("SECRETS_PREFIX", "alfacrm-uis"),
            credentials_key_id=e.get("CREDENTIALS_KEY_ID", ""),
            admin_token_secret_id=e.get("ADMIN_TOKEN_SECRET_ID", ""),
            admin_token=e.get("ADMIN_TOKEN", ""),
            allow_insecure_hosts=_flag(e.get("ALLOW_INSECURE_HOSTS", "false")),
            alfacrm_rps=_number(e.get("ALFACRM_RPS"), 2.0),
            alfacrm_account_rps=int(_number(e.get("ALFACRM_ACCOUNT_RPS", "4"), 0)),
        )
