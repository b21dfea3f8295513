"""Parked items (`PARKED#<kind>#<key>`): what failed for a reason a retry will not fix, visible and replayable."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from connector.models.raw import JsonValue

# deal_event / text_event: the payload is the queue message (a replay re-sends it);
# deal: the payload is a `DealRef` (a replay marks the deal pending again)
ParkedKind = Literal["deal_event", "text_event", "deal"]


class ParkedItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: ParkedKind
    key: str
    payload: JsonValue = None
    error: str
    code: str | None = None
    parked_at: int = 0  # epoch seconds


def fingerprint(value: JsonValue | bytes) -> str:
    """A short digest of what a message says, for the key of a parked item that names nothing identifying
    (the same event delivered twice gives the same digest; two different ones never share a key)."""
    raw = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:16]
