"""Cached look-ups (`CACHE#<name>`): AlfaCRM's and UIS's lists the connector reads often and that change rarely."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from connector.models.raw import JsonObject


class CachedLookup(BaseModel):
    """A list as AlfaCRM's models or UIS's rows dump it (`[{"id", "name", …}]`), until `expires_at` (epoch s)."""

    model_config = ConfigDict(extra="ignore")

    value: list[JsonObject]
    expires_at: int


class PhoneSearch(BaseModel):
    """What phone searches taught about one AlfaCRM account (its server-side matching is undocumented): the
    spelling that last found a customer, whether the national digits match inside longer stored numbers, and
    whether the account was probed with a lead the connector created (`AlfaCrmClient.probe_phone_matching`).
    Kept per account (`ACCT#<hash>` / `PHONES`), so a cold container starts from it instead of re-learning."""

    model_config = ConfigDict(extra="ignore")

    spelling: str | None = None  # national | digits | e164 | given
    substring: bool = False
    probed: bool = False  # searched once for a lead we created by its national digits (done once per account)
