"""A chat visitor's name and e-mail, which no chat report has (report/get_chats_report): `get.visitors`.

`get.visitors {ids}` (person/get_visitors) answers `name`, `phones`, `emails` per visitor id: a `VisitorCard`.
It is asked only for chats that lack the name and are about to need it, and each chat keeps its card (an empty
one when UIS knew nothing), so no later event of it asks again:
- the poller's lost chats and chat starts: one call per poll for all of them, batched by visitor id, the card
  riding in the report row the poller enqueues (`visitor_card`);
- an event about to create a lead, or a lost-chat task for a visitor no customer matched, whose chat has no
  card yet and whose notification lacks the name's field (a trimmed body, a poller row no one looked up): one
  call. A default chat body carries `visitor_info.visitor_name`: empty there, UIS knows no name, nothing asked.
The card names a *stranger*: a customer found in AlfaCRM keeps its own name (`with_card` is applied only where
no customer names the chat). The method needs the account's «Data API для настройки» component: without it
the connector says so once (a warning; the answer is remembered for a day in `CACHE#uis_visitors`) and falls
back to what the chat shows (the phone, the customer's name).
"""

from __future__ import annotations

from collections.abc import Iterable

from connector.errors import UisComponentMissing
from connector.models.raw import JsonObject, JsonValue
from connector.models.texts import ChatFacts, VisitorCard
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.uis.points import UisPoints

CACHE_NAME = "uis_visitors"  # whether the account lets the connector call get.visitors
CACHE_SECONDS = 86400
ROW_KEY = "visitor_card"  # where the poller puts a card in the report row it enqueues


class Visitors:
    """One unit of work's access to get.visitors (its points on that unit's meter)."""

    def __init__(self, rt: Runtime, integration: Integration, points: UisPoints) -> None:
        self.rt = rt
        self.integration = integration
        self.points = points
        self._available: bool | None = None  # the remembered answer (None: not known yet)

    def complete_rows(self, rows: Iterable[JsonObject]) -> None:
        """Report rows the poller announces: each row lacking the visitor's name gets its card, in place."""
        lacking = [r for r in rows if _lacks(r.get("visitor_name"), r.get("visitor_id"), r.get(ROW_KEY))]
        cards = self._cards(r.get("visitor_id") for r in lacking)
        for row in lacking:
            card = cards.get(_id(row.get("visitor_id")) or 0, VisitorCard())
            row[ROW_KEY] = card.model_dump(exclude_none=True)

    def look_up(self, chat: ChatFacts) -> ChatFacts:
        """The chat with its visitor's card, asked for when it lacks the name and has no card yet. A notification
        that carried the name's field empty (the default chat bodies have `visitor_info.visitor_name`) says UIS
        has no name for the visitor: no call (the event stays at its floor)."""
        if "visitor_name" in chat.provided or not _lacks(chat.visitor_name, chat.visitor_id, chat.visitor_card):
            return chat
        card = self._cards([chat.visitor_id]).get(chat.visitor_id or 0, VisitorCard())
        return chat.model_copy(update={"visitor_card": card})

    def _cards(self, ids: Iterable[JsonValue]) -> dict[int, VisitorCard]:
        wanted = sorted({i for i in (_id(v) for v in ids) if i is not None})
        if not wanted or not self._allowed():
            return {}
        try:
            visitors = self.points.client.get_visitors(wanted)
        except UisComponentMissing as exc:
            self._remember(False)
            logger.warning(
                "uis get.visitors unavailable: visitor names fall back to what the chat shows",
                extra={"integration_id": self.integration.id, "error": exc.message},
            )
            return {}
        self._remember(True)
        return {i: _card(v) for v in visitors if (i := _id(v.get("id"))) is not None}

    def _allowed(self) -> bool:
        if self._available is None:
            cached = self.rt.store.integrations.cached(self.integration.id, CACHE_NAME)
            self._available = bool(cached[0].get("available")) if cached else None
        return self._available is not False

    def _remember(self, available: bool) -> None:
        if self._available != available:
            self._available = available
            store = self.rt.store.integrations
            store.put_cached(self.integration.id, CACHE_NAME, [{"available": available}], CACHE_SECONDS)


def with_card(chat: ChatFacts) -> ChatFacts:
    """The chat's missing name, e-mail and phone filled from its visitor's card (a stranger's chat)."""
    card = chat.visitor_card
    if card is None:
        return chat
    update = {
        field: value
        for field, value in (("visitor_name", card.name), ("visitor_email", card.email), ("visitor_phone", card.phone))
        if value and not getattr(chat, field)
    }
    return chat.model_copy(update=update) if update else chat


def _card(visitor: JsonObject) -> VisitorCard:
    name = visitor.get("name")
    return VisitorCard(
        name=name.strip() if isinstance(name, str) and name.strip() else None,
        email=_first(visitor.get("emails")),
        phone=_first(visitor.get("phones")),
    )


def _first(values: JsonValue) -> str | None:
    if not isinstance(values, list):
        return None
    return next((str(v).strip() for v in values if v not in (None, "") and str(v).strip()), None)


def _lacks(name: JsonValue | str | None, visitor_id: JsonValue, card: object) -> bool:
    return name in (None, "") and _id(visitor_id) is not None and card is None


def _id(value: JsonValue) -> int | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None
