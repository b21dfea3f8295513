"""Hostile request bodies: JSON that Python's json accepts but is not JSON (NaN, Infinity), numbers that
overflow or cost CPU to convert, lone surrogates, deep nesting, truncation, wrong types, bytes that are not
UTF-8, oversized bodies, and webhook-shaped objects whose fields carry all of that."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st


class Raw(str):
    """A JSON token written as is into the body's text (most are not JSON at all)."""


RAW_TOKENS = [
    "Infinity",
    "-Infinity",
    "NaN",
    "1e1000000",
    "-1e999",
    "1E400",
    "1e-400",
    "1" + "0" * 60,
    "9" * 5000,
    "-0",
    "0.1e-200",
    '"\\ud800"',
    '"x\\udfff"',
    '"\\udc00\\ud800"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"1e1000000"',
    '"Infinity"',
    '"NaN"',
    '"9223372036854775808"',
    '"  145 "',
    '"145.0"',
    '"0x10"',
    '"1_000"',
    '"٣"',
]
SPECIAL_CHARS = [
    "\ud800",
    "\udfff",
    "\x00",
    "\x7f",
    "\uffff",
    "\ufffe",
    "\u2028",
    "\u202e",
    "\r\n",
    "\\",
    '"',
    "%",
    "&",
    "=",
    "+",
    "/",
    "я",
    "😀",
    "{",
    "[",
]

text = st.lists(st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARS)), max_size=12).map("".join)
raw_tokens = st.sampled_from(RAW_TOKENS).map(Raw)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(),
    text,
    raw_tokens,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=10,
)
hostile = st.one_of(raw_tokens, scalars, json_values)
# what real webhooks carry: JSON numbers in range, text without lone surrogates
clean_text = st.text(max_size=12)
clean_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | clean_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(clean_text, children, max_size=4),
    max_leaves=8,
)


def render(value: Any) -> str:
    """JSON text of `value`, with Raw tokens as they are and lone surrogates as their \\u escapes."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return json.dumps(value)


MANGLINGS = [
    "cut",
    "byte",
    "lone surrogate bytes",
    "bom",
    "utf-16",
    "deep",
    "wrapped",
    "tail",
    "oversized",
    "empty",
    "latin-1",
]


def mangle(draw: st.DrawFn, body: str) -> bytes:
    """The body's bytes as sent (two times in three), or cut, corrupted, re-encoded, nested, oversized."""
    raw = body.encode("utf-8")
    if draw(st.integers(0, 2)) != 2:
        return raw
    how = draw(st.sampled_from(MANGLINGS))
    if how == "cut":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "byte":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x80", b"\xf8\x88\x80\x80\x80"])) + raw[at:]
    if how == "lone surrogate bytes":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + b"\xed\xa0\x80" + raw[at:]
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "utf-16":
        return body.encode("utf-16", "surrogatepass")
    if how == "deep":
        depth = draw(st.sampled_from([17, 200, 1500, 100_000]))
        return b"[" * depth + b"]" * depth
    if how == "wrapped":
        depth = draw(st.integers(14, 40))
        return b'{"a": ' * depth + raw + b"}" * depth
    if how == "tail":
        return raw + draw(st.sampled_from([b" x", b"}", b"]", b",", b"\x00", b" {}"]))
    if how == "oversized":
        return b'{"pad": "' + b"x" * (256 * 1024) + b'"}'
    if how == "empty":
        return draw(st.sampled_from([b"", b" ", b"\n\t", b"null", b"0", b'""', b"[]", b"true"]))
    return body.encode("latin-1", "replace")


def _often(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's real shape most of the time, anything hostile now and then."""
    return st.integers(0, 7).flatmap(lambda n: hostile if n == 7 else valid)


ALFACRM_WEBHOOKS = st.fixed_dictionaries(
    {
        "event": _often(st.sampled_from(["create", "update", "delete", " Update "])),
        "entity": _often(st.sampled_from(["Customer", "Pay", "Lesson"])),
        "entity_id": _often(st.integers(1, 10**6) | st.sampled_from(["145", " 7 ", "12.0"])),
    },
    optional={
        "branch_id": _often(st.integers(1, 3)),
        "user_id": _often(st.integers(1, 10)),
        "datetime": _often(st.just("2026-11-25 10:15:00")),
        "fields_old": _often(clean_values),
        "fields_new": _often(clean_values),
        "fields_rel": _often(clean_values),
    },
)


@st.composite
def alfacrm_bodies(draw: st.DrawFn) -> bytes:
    return mangle(draw, render(draw(st.one_of(ALFACRM_WEBHOOKS, ALFACRM_WEBHOOKS, json_values))))


UIS_NOTIFICATIONS = st.fixed_dictionaries(
    {},
    optional={
        "chat_id": _often(st.integers(1, 10**6)),
        "communication_id": _often(st.integers(1, 10**6)),
        "offline_message_id": _often(st.integers(1, 10**6)),
        "visitor_name": _often(clean_text),
        "visitor_phone_number": _often(st.just("79161234567")),
        "tag_ids": _often(st.just("1,2")),
        "status": _often(st.just("succeed")),
        "visitor_info": _often(clean_values),
    },
)


@st.composite
def uis_bodies(draw: st.DrawFn) -> bytes:
    """A notification as JSON (mangled or not), or its fields form-encoded."""
    value = draw(st.one_of(UIS_NOTIFICATIONS, UIS_NOTIFICATIONS, json_values))
    if isinstance(value, dict) and draw(st.integers(0, 3)) == 0:
        fields = {str(k): v if isinstance(v, str) else render(v) for k, v in value.items()}
        return urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()
    return mangle(draw, render(value))


uis_queries = st.dictionaries(
    # API Gateway passes query parameters as text: hostile text, then
    st.sampled_from(["chat_id", "visitor_name", "offline_message_id", "notification_type"]) | text,
    st.integers(0, 7).flatmap(lambda n: text if n == 7 else clean_text),
    max_size=6,
).flatmap(
    lambda query: st.one_of(
        st.just(query),
        st.sampled_from(["chat_finished", "offline_message", "lost_chat", "set_mark", "party", ""]).map(
            lambda event: {**query, "event": event}
        ),
    )
)
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data",
]
