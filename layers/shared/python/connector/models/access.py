"""A school's own access token to the admin API (`ACCESS`): only its hash is kept (connector.access)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SchoolToken(BaseModel):
    model_config = ConfigDict(extra="ignore")

    token_hash: str  # SHA-256 of the token's secret part
    issued_at: str  # UTC ISO
