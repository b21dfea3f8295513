"""Domain exceptions. Each names what happened; `connector.http_errors` maps them to HTTP replies,
the workers map them to retry / park decisions through `retryable`."""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base class. `retryable` tells a worker whether a later attempt may succeed."""

    code = "connector_error"
    retryable = False

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


# --- input / admin -------------------------------------------------------------------------------
class BadRequest(ConnectorError):
    code = "bad_request"


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"


class ValidationFailed(ConnectorError):
    """A settings or admin payload is invalid; `field` is the JSON path of the bad value."""

    code = "validation_failed"


class NotFound(ConnectorError):
    code = "not_found"


class Unauthorized(ConnectorError):
    code = "unauthorized"


class UnsafeHostname(ValidationFailed):
    code = "unsafe_hostname"


class CredentialsUnreadable(ConnectorError):
    """An integration's sealed credentials do not open (another integration's, another key, no key set)."""

    code = "credentials_unreadable"


# --- AlfaCRM -------------------------------------------------------------------------------------
class AlfaCrmError(ConnectorError):
    code = "alfacrm_error"


class AlfaCrmAuthFailed(AlfaCrmError):
    """403 on login or call: wrong e-mail/API key, or the user's role lacks the v2api module."""

    code = "alfacrm_auth_failed"


class AlfaCrmValidationError(AlfaCrmError):
    """HTTP 200 with success=false (or 400/422): AlfaCRM refused the data. Not retryable."""

    code = "alfacrm_validation_error"

    def __init__(self, message: str, *, errors: Any = None, field: str | None = None) -> None:
        super().__init__(message, field=field, details=errors)
        self.errors = errors


class AlfaCrmNotFound(AlfaCrmError):
    code = "alfacrm_not_found"


class AlfaCrmUnavailable(AlfaCrmError):
    """429, 5xx or transport failure after the bounded retries: try again later."""

    code = "alfacrm_unavailable"
    retryable = True


# --- UIS -----------------------------------------------------------------------------------------
class UisError(ConnectorError):
    """A JSON-RPC error from the UIS Data API; `mnemonic` is `error.data.mnemonic`."""

    code = "uis_error"

    def __init__(
        self,
        message: str,
        *,
        mnemonic: str | None = None,
        rpc_code: int | None = None,
        field: str | None = None,
        value: Any = None,
        params: Any = None,
    ) -> None:
        super().__init__(message, field=field, details={"mnemonic": mnemonic, "value": value, "params": params})
        self.mnemonic = mnemonic
        self.rpc_code = rpc_code
        self.value = value
        self.params = params


class UisAuthFailed(UisError):
    code = "uis_auth_failed"


class UisForbidden(UisError):
    """-32003: `ip_not_whitelisted` or `forbidden`."""

    code = "uis_forbidden"


class UisValidationError(UisError):
    """-32602: the data was refused (`invalid_parameter_value`, `entity_not_found`, ...)."""

    code = "uis_validation_error"


class UisLimitExceeded(UisError):
    """-32029 `limit_exceeded`; `reset_after` is the seconds UIS says to wait."""

    code = "uis_limit_exceeded"
    retryable = True

    def __init__(self, message: str, *, reset_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reset_after = reset_after


class UisComponentMissing(UisError):
    """-32008 `method_component_disabled`: the account lacks a component the method needs (data_api/components/:
    «Воронки продаж» for every deal method, a chat component for the chat reports). Only the school can switch it
    on, so no retry heals it; `components` are UIS's ids of what would do ("at least one of")."""

    code = "uis_component_missing"

    def __init__(self, message: str, *, components: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.components = components or []


class UisUnavailable(UisError):
    """Transport failure, 5xx or account inactive: try again later.

    `ambiguous`: the request was sent and its answer lost (a 5xx, a read timeout): UIS may have applied it, so a
    write is not sent again blindly — the caller reads back what UIS holds first."""

    code = "uis_unavailable"
    retryable = True

    def __init__(self, message: str, *, ambiguous: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.ambiguous = ambiguous


# --- domain --------------------------------------------------------------------------------------
class ConcurrentUpdate(ConnectorError):
    """A conditional write lost a race; re-read and retry."""

    code = "concurrent_update"
    retryable = True
