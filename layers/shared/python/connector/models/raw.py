"""Raw JSON as AlfaCRM and UIS send it, before the models coerce it: the one spelling of "untyped JSON"."""

from __future__ import annotations

from pydantic import JsonValue

JsonObject = dict[str, JsonValue]

__all__ = ["JsonObject", "JsonValue"]
