"""The one place domain errors become HTTP replies (`{"error": {code, message, field}}`, contract.md).

Every API handler uses it (through `connector.http`); the webhook handlers load nothing of the admin's.
"""

from __future__ import annotations

from connector.errors import (
    AlfaCrmAuthFailed,
    AlfaCrmError,
    AlfaCrmUnavailable,
    BadRequest,
    ConnectorError,
    NotFound,
    UisAuthFailed,
    UisComponentMissing,
    UisError,
    UisForbidden,
    UisLimitExceeded,
    UisUnavailable,
    Unauthorized,
    ValidationFailed,
)
from connector.models.raw import JsonObject


def status_of(exc: ConnectorError) -> int:
    if isinstance(exc, BadRequest):  # PayloadTooLarge included
        return 400
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ValidationFailed | AlfaCrmAuthFailed | UisAuthFailed | UisForbidden | UisComponentMissing):
        return 422
    if isinstance(exc, AlfaCrmUnavailable | UisUnavailable | UisLimitExceeded):
        return 503
    if isinstance(exc, AlfaCrmError | UisError):
        return 502
    return 500


def error_reply(exc: ConnectorError) -> tuple[int, JsonObject]:
    return status_of(exc), {"error": {"code": exc.code, "message": exc.message, "field": exc.field}}
