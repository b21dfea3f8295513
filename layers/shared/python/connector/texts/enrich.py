"""Completing a notification from the UIS Data API — only what the rules need, at most one call per event.

UIS points are scarce (e.g. 60/min, 3000/day per account), so:
- nothing is read when the notification (or what an earlier event of the same chat stored) already has
  every fact the rules need (`rules.chat_missing` / `rules.request_missing`);
- one `get.chats_report` row (filtered by chat id) gives phone, site, channel and tag names at once;
  one `get.offline_messages_report` row gives a request's form type, site id and contacts;
- the transcript comes from the notification's `messages`; only a chat_finished whose notification has
  no messages reads `get.chat_messages_report` — the one case that may cost a second call (a chat first
  seen at its end with neither contacts nor messages in the notification). A lost chat reads messages
  only when no other call was made for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connector.errors import UisUnavailable
from connector.texts.models import ChatFacts, RequestFacts
from connector.timeutil import utc_to_local, utcnow
from connector.uis import columns

if TYPE_CHECKING:
    from connector.settings import ExtraField
    from connector.uis.client import UisClient

# Report windows stay under UIS's 3-month limit; a chat may have started long before it ended.
CHAT_LOOKBACK = timedelta(days=85)
REQUEST_LOOKBACK = timedelta(days=30)
# a little slack for clocks (UIS stamps in the account's local time)
CLOCK_SLACK = timedelta(minutes=10)


def chat_fields(mappings: Iterable[ExtraField] = ()) -> list[str]:
    """The `get.chats_report` columns to ask for: what the chat facts need, plus every documented column an
    extra-field mapping names (UIS returns only its default columns otherwise, which lack channel, tags, UTM)."""
    return columns.with_extra(columns.CHAT_FIELDS, columns.CHATS_REPORT_COLUMNS, (m.source for m in mappings))


def request_fields(mappings: Iterable[ExtraField] = ()) -> list[str]:
    """The `get.offline_messages_report` columns to ask for (the default set lacks date, site domain, UTM)."""
    return columns.with_extra(
        columns.REQUEST_FIELDS, columns.OFFLINE_MESSAGES_REPORT_COLUMNS, (m.source for m in mappings)
    )


class NotReadyYet(UisUnavailable):
    """UIS has not put the chat/request in its report yet: retry later (SQS redelivery)."""

    code = "uis_not_ready"


class Enricher:
    """One event's access to UIS: a lazily created client and the calls it spent."""

    def __init__(
        self,
        uis: Callable[[], UisClient],
        *,
        tz: str | None,
        anchor: datetime | None = None,
        chat_fields: list[str] | None = None,
        request_fields: list[str] | None = None,
    ) -> None:
        self._factory = uis
        self.chat_fields = chat_fields
        self.request_fields = request_fields
        self._client: UisClient | None = None
        self.tz = tz
        self.anchor = anchor or utcnow()  # aware UTC: when the notification arrived
        self.calls = 0

    @property
    def client(self) -> UisClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def _window(self, back: timedelta) -> tuple[datetime, datetime]:
        till = min(self.anchor + CLOCK_SLACK, utcnow() + CLOCK_SLACK)
        return utc_to_local(till - back, self.tz), utc_to_local(till, self.tz)

    def _spent(self, before: int) -> None:
        self.calls += max(self.client.calls - before, 1)

    # --- chats -----------------------------------------------------------------------------------------
    def chat_row(self, *, chat_id: int | None = None, communication_id: int | None = None) -> dict[str, Any]:
        """The chat's `get.chats_report` row (one call); NotReadyYet when UIS does not list it yet."""
        field, value = ("id", chat_id) if chat_id is not None else ("communication_id", communication_id)
        date_from, date_till = self._window(CHAT_LOOKBACK)
        before = self.client.calls
        rows = self.client.get_chats_report(
            date_from,
            date_till,
            filter={"field": field, "operator": "=", "value": value},
            fields=self.chat_fields,
            limit=10,
        )
        self._spent(before)
        row = next((r for r in rows if str(r.get(field)) == str(value)), None)
        if row is None:
            raise NotReadyYet(f"UIS get.chats_report does not list chat {field}={value} yet", mnemonic="not_ready")
        return row

    def complete_chat(self, chat: ChatFacts) -> ChatFacts:
        row = self.chat_row(chat_id=chat.chat_id)
        return chat.merged_with_report(ChatFacts.from_report_row(row, self.tz))

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The chat's messages in order (`get.chat_messages_report`; one call per 1000 messages)."""
        before = self.client.calls
        rows = list(self.client.iter_chat_messages_report(chat_id=chat_id))
        self._spent(before)
        return sorted(rows, key=lambda m: (str(m.get("date_time") or ""), int(m.get("id") or 0)))

    # --- requests --------------------------------------------------------------------------------------
    def complete_request(self, req: RequestFacts) -> RequestFacts:
        field, value = (
            ("id", req.offline_message_id)
            if req.offline_message_id is not None
            else ("communication_id", req.communication_id)
        )
        date_from, date_till = self._window(REQUEST_LOOKBACK)
        before = self.client.calls
        rows = self.client.get_offline_messages_report(
            date_from,
            date_till,
            filter={"field": field, "operator": "=", "value": value},
            fields=self.request_fields,
            limit=10,
        )
        self._spent(before)
        row = next((r for r in rows if str(r.get(field)) == str(value)), None)
        if row is None:
            raise NotReadyYet(
                f"UIS get.offline_messages_report does not list request {field}={value} yet", mnemonic="not_ready"
            )
        return req.merged_with_report(row, self.tz)
