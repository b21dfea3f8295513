"""Cached look-ups (`CACHE#<name>`): AlfaCRM's and UIS's lists the connector reads often and that change rarely."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from connector.models.raw import JsonObject


class CachedLookup(BaseModel):
    """A list as AlfaCRM's models or UIS's rows dump it (`[{"id", "name", …}]`), until `expires_at` (epoch s)."""

    model_config = ConfigDict(extra="ignore")

    value: list[JsonObject]
    expires_at: int
