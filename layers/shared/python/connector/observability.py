"""One place for logging, tracing and metrics (Powertools), with personal data masked.

Phones, e-mails and names never reach CloudWatch in clear: known keys are masked wherever they appear
in a log record (message extras, nested dicts), and phone- or e-mail-shaped text inside messages is
masked too. Secrets (api keys, tokens) are dropped entirely.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

SERVICE = "alfacrm-uis-connector"

_PHONE_KEYS = {"phone", "phones", "phone_numbers", "visitor_phone", "visitor_phone_number", "contact_phone"}
_EMAIL_KEYS = {"email", "emails", "visitor_email"}
_NAME_KEYS = {"name", "visitor_name", "payer_name", "legal_name", "full_name", "employee_full_name", "title"}
_SECRET_KEYS = {"api_key", "access_token", "token", "password", "authorization", "x-alfacrm-token", "secret"}

_PHONE_RE = re.compile(r"(?<![\w])\+?\d[\d\s()\-]{8,}\d")
_EMAIL_RE = re.compile(r"([\w.+-])[\w.+-]*@([\w-]+\.[\w.-]+)")


def mask_phone(value: Any) -> str:
    digits = re.sub(r"\D", "", str(value))
    if len(digits) <= 4:
        return "***"
    return f"***{digits[-2:]}"


def mask_email(value: Any) -> str:
    text = str(value)
    local, _, domain = text.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_name(value: Any) -> str:
    text = str(value).strip()
    return f"{text[:1]}***" if text else ""


_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2})?|\d{2}[.-]\d{2}[.-]\d{4}(?: \d{2})?")


def _phone_or_date(match: re.Match[str]) -> str:
    # dates and date-times have a phone's shape (2026-11-25 06): keep them readable
    text = match.group(0)
    return text if _DATE_RE.fullmatch(text.strip()) else mask_phone(text)


def mask_text(text: str) -> str:
    text = _EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE_RE.sub(_phone_or_date, text)


def mask(value: Any, key: str | None = None) -> Any:
    """Mask personal data in any JSON-like value, by key name and by shape."""
    k = (key or "").lower()
    if k in _SECRET_KEYS:
        return "[secret]"
    if isinstance(value, dict):
        return {kk: mask(vv, str(kk)) for kk, vv in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, key) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if k in _PHONE_KEYS:  # UIS reports send phones as numbers too (79161234567)
        return mask_phone(value)
    if k in _EMAIL_KEYS:
        return mask_email(value)
    if isinstance(value, int | float):
        return value
    if k in _NAME_KEYS:
        return mask_name(value)
    if isinstance(value, str):
        return mask_text(value)
    return value


class MaskingFormatter(LambdaPowertoolsFormatter):
    _RESERVED: ClassVar[set[str]] = {
        "level",
        "location",
        "timestamp",
        "service",
        "sampling_rate",
        "xray_trace_id",
        "function_name",
        "function_request_id",
        "function_arn",
        "function_memory_size",
        "cold_start",
    }

    def serialize(self, log: Any) -> str:
        masked = {k: (v if k in self._RESERVED else mask(v, k)) for k, v in log.items()}
        if isinstance(log.get("message"), str):
            masked["message"] = mask_text(log["message"])
        return super().serialize(masked)


logger = Logger(service=SERVICE, logger_formatter=MaskingFormatter())
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace="AlfaCrmUisConnector")
