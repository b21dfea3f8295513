"""Strict JSON for bodies from outside (webhooks, admin API): refuse what json.loads lets through but nothing
downstream can keep, with a BadRequest naming the problem and where it is, before anything is stored.

Python's json accepts `NaN`/`Infinity` (not JSON), numbers that overflow to inf, nesting until the interpreter's
recursion limit, and `\\ud800` escapes that decode to lone surrogates (no UTF-8 encoder, so neither SQS nor
DynamoDB, takes those). The limits are DynamoDB's, where a parked message ends up: 32 nested levels (a parked
message wraps a body in three more), 38 significant digits, magnitudes within 1E-130..1E+126.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from connector.errors import BadRequest
from connector.settings import json_path

MAX_DEPTH = 16
MAX_INT_DIGITS = 38
FLOAT_RANGE = (1e-130, 1e126)
_INT_LIMIT = 10**MAX_INT_DIGITS
_SUSPECT = re.compile(r"\d{39}|[eE][+-]?\d{3}|\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def decode_utf8(raw: bytes, what: str = "body") -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise BadRequest(f"{what} is not UTF-8 text: byte 0x{bad} at position {exc.start} ({exc.reason})") from None


def parse_json(raw: bytes | str, what: str = "body") -> Any:
    """The JSON value of `raw`, or BadRequest naming what is wrong with it."""
    text = raw if isinstance(raw, str) else decode_utf8(raw, what)

    def no_constant(name: str) -> Any:
        raise BadRequest(f"{what}: {name} is not a JSON number")

    try:
        value = json.loads(text, parse_constant=no_constant)
    except RecursionError:
        raise BadRequest(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # an integer beyond the interpreter's 4300 digits
        raise BadRequest(f"{what}: an integer has more than {MAX_INT_DIGITS} digits") from None
    # The walk costs ~0.4 µs an element; only a body that could hold a problem pays it (no false negatives:
    # 16 levels need 16 brackets, 39-digit integers 39 digits in a row, a number out of range a 3-digit
    # exponent or 39 digits, a lone surrogate its escape or itself).
    if text.count("[") + text.count("{") > MAX_DEPTH or _SUSPECT.search(text):
        check_value(value, what)
    return value


def check_value(value: Any, what: str = "body") -> None:
    """Depth and text of an already parsed value (query parameters too): BadRequest naming the bad place."""
    _walk(value, what, (), 0)


def _walk(value: Any, what: str, path: tuple[str | int, ...], depth: int) -> None:
    if isinstance(value, str):
        _check_text(value, what, path)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            where = _where(what, path)
            raise BadRequest(
                f"{where}: the integer has more than {MAX_INT_DIGITS} digits", field=where if path else None
            )
    elif isinstance(value, float):
        if not math.isfinite(value) or (value and not FLOAT_RANGE[0] <= abs(value) < FLOAT_RANGE[1]):
            where = _where(what, path)
            shown = f" ({value!r})" if math.isfinite(value) else ""
            raise BadRequest(f"{where}: the number is out of range{shown}", field=where if path else None)
    elif isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise BadRequest(f"{what} nests deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_text(key, what, path)
            _walk(item, what, (*path, key), depth + 1)


def _check_text(text: str, what: str, path: tuple[str | int, ...]) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = _where(what, path)
        raise BadRequest(
            f"{where}: a lone surrogate (\\u{ord(text[exc.start]):04x}) is not text", field=where if path else None
        ) from None


def _where(what: str, path: tuple[str | int, ...]) -> str:
    return json_path(path) or what
