"""Who may call the admin API: the operator's admin token reaches every school, a school's own token only
its own integration.

A school token is `<integration id>.<secret>` (the secret has 192 bits); only a SHA-256 of the secret is
stored, compared in constant time. One token per integration: issuing a new one replaces the stored hash,
so the old link stops working at once ("new link, old one stops"). Issuing is the operator's: a school
token cannot mint tokens, list, create or read other integrations.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as pysecrets
from collections.abc import Mapping
from dataclasses import dataclass

from connector.errors import NotFound, Unauthorized
from connector.models.access import SchoolToken
from connector.models.raw import JsonObject
from connector.store import Store
from connector.timeutil import to_iso, utcnow

_DUMMY_HASH = hashlib.sha256(b"no school token").hexdigest()
_SCHOOL_ONLY_DENIED = {"access"}  # sub-resources of /integrations/{id} that stay the operator's


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """`integration_id` None is the operator (every integration); otherwise a school's own scope."""

    integration_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.integration_id is None

    def denial(self, path: str, method: str = "GET") -> str | None:
        """Why this caller may not reach `path` (the path the router sees) with `method`, or None when it may."""
        if self.is_operator:
            return None
        parts = path.strip("/").split("/")
        if any(p in {"", ".", ".."} for p in parts) or parts[0] != "integrations" or len(parts) < 2:
            return "a school's access token reaches only its own integration"
        if parts[1] != self.integration_id:
            return "a school's access token reaches only its own integration"
        if len(parts) > 2 and parts[2] in _SCHOOL_ONLY_DENIED:
            return "only the operator issues access tokens"
        if len(parts) == 2 and method.upper() == "DELETE":
            # irreversible, and a school link can leak: removing a school is the operator's
            return "only the operator removes an integration"
        return None


def bearer_of(headers: Mapping[str, str] | None) -> str:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    scheme, _, token = lowered.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing or malformed bearer token")
    return token.strip()


def identify(store: Store, headers: Mapping[str, str] | None, admin_token: str) -> Caller:
    """The caller behind the bearer token; Unauthorized when it is neither the admin token nor a school's."""
    token = bearer_of(headers)
    expected = admin_token
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return Caller()
    integration_id, dot, secret = token.partition(".")
    stored = None
    if dot and secret and 0 < len(integration_id) <= 64 and integration_id.isalnum():
        stored = store.access.current(integration_id)
    expected_hash = stored.token_hash if stored else _DUMMY_HASH
    ok = hmac.compare_digest(_digest(secret), expected_hash)
    if stored is None or not ok:
        raise Unauthorized("invalid bearer token")
    return Caller(integration_id)


def issue(store: Store, integration_id: str, base_url: str) -> JsonObject:
    """A new school token for `integration_id` (the previous one stops working) and the page link carrying it.

    The token travels in the URL fragment (`#token=`), which browsers never send to a server, so it stays
    out of access logs; the page then sends it as a bearer header.
    """
    if store.integrations.get(integration_id, fresh=True) is None:
        raise NotFound(f"integration {integration_id} not found")
    secret = pysecrets.token_urlsafe(24)
    store.access.replace(integration_id, SchoolToken(token_hash=_digest(secret), issued_at=to_iso(utcnow())))
    token = f"{integration_id}.{secret}"
    return {"token": token, "url": f"{base_url.rstrip('/')}/ui/#token={token}"}
