"""The environment, read once per container (cold start) into a typed model.

Logic never reads `os.environ`: it receives settings or this model.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field


class Environment(BaseModel):
    state_table: str = Field(default="StateTable")
    idempotency_table: str = Field(default="IdempotencyTable")
    deal_events_queue_url: str = ""
    text_events_queue_url: str = ""
    deal_events_dlq_url: str = ""
    text_events_dlq_url: str = ""
    secrets_prefix: str = "alfacrm-uis"
    admin_token_secret_id: str = ""
    admin_token: str = ""  # local stack only; in AWS the token lives in Secrets Manager
    allow_insecure_hosts: bool = False
    # AlfaCRM requests per second per account, across all containers (0 = no shared limit)
    alfacrm_account_rps: int = 4
    max_body_bytes: int = 256 * 1024


@lru_cache(maxsize=1)
def env() -> Environment:
    e = os.environ
    return Environment(
        state_table=e.get("STATE_TABLE", "StateTable"),
        idempotency_table=e.get("IDEMPOTENCY_TABLE", "IdempotencyTable"),
        deal_events_queue_url=e.get("DEAL_EVENTS_QUEUE_URL", ""),
        text_events_queue_url=e.get("TEXT_EVENTS_QUEUE_URL", ""),
        deal_events_dlq_url=e.get("DEAL_EVENTS_DLQ_URL", ""),
        text_events_dlq_url=e.get("TEXT_EVENTS_DLQ_URL", ""),
        secrets_prefix=e.get("SECRETS_PREFIX", "alfacrm-uis"),
        admin_token_secret_id=e.get("ADMIN_TOKEN_SECRET_ID", ""),
        admin_token=e.get("ADMIN_TOKEN", ""),
        allow_insecure_hosts=e.get("ALLOW_INSECURE_HOSTS", "false").lower() in {"1", "true", "yes"},
        alfacrm_account_rps=int(e.get("ALFACRM_ACCOUNT_RPS", "4") or 0),
    )
