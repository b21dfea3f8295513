"""A text-queue body → its typed `TextEventMessage`, apart from `connector.uis.notifications`: the admin's
replay re-sends parked text events and needs only this, not the notification parsing and its models.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from connector.errors import BadRequest
from connector.models.messages import TextEventMessage
from connector.models.raw import JsonValue


def read_message(body: JsonValue | str | bytes) -> TextEventMessage:
    """A text-queue body → its typed message. BadRequest when it is none (parked, not retried)."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise BadRequest(f"text event is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("text event is not a JSON object")
    try:
        return TextEventMessage.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        if any(tuple(e["loc"])[:1] == ("event",) for e in errors):
            raise BadRequest(
                f"cannot tell which UIS event this is (event={body.get('event')!r}); "
                "add ?event=<name> to the notification URL"
            ) from None
        # the field and the rule only: pydantic's own text echoes the input (visitors' names and phones)
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in errors)
        raise BadRequest(f"text event is malformed: {problems}") from None
