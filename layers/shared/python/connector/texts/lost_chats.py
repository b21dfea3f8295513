"""Lost chats → one AlfaCRM task each ("Создавать задачу по потерянному чату").

Two sources report a lost chat: UIS's `lost_chat` notification (through the text worker) and the chat
poller (a `lost` row in `get.chats_report`, for notifications that never came). Whichever comes first,
and however often, the chat gets exactly one task. The `CHAT#<chat_id>#lost_task` item carries a claim:

    absent ──claim──▶ claimed ──before the HTTP call──▶ sending ──task created──▶ done
                         │                               │
                         └──── error: released ◀─────────┘   (a later report claims it again)

- `done` → nothing to do. A fresh `claimed`/`sending` held by someone else → `LostChatTaskBusy`
  (retryable: the SQS message comes back after its visibility timeout; the poller keeps its
  watermark before that chat and looks again next run). So is a claim released after a create whose
  answer was lost, for one AlfaCRM read timeout (`settle_until`, as `StepClaims.fail` does for comments
  and leads): AlfaCRM may still be carrying that create out, and the takeover's read-back would miss it.
- A claim older than `STALE_AFTER` is taken over: its holder is dead (every Lambda that creates tasks
  times out long before that).
- A crash between "AlfaCRM created the task" and "we wrote done" is the one window that could create a
  second task. It is milliseconds wide (one DynamoDB write), and the takeover of a claim left in
  `sending` first looks for the task in AlfaCRM (same title, our `Чат UIS №<id>` marker in its text)
  before creating one. We choose at-least-once over at-most-once: a missing task loses a customer,
  a duplicate task costs a manager one click.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from connector.alfacrm.client import AlfaCrmClient, landing_window
from connector.alfacrm.models import Customer, to_int
from connector.errors import AlfaCrmError, ConcurrentUpdate, ConnectorError
from connector.models.events import EventOutcome
from connector.models.raw import JsonValue
from connector.models.texts import ChatFacts, LostTaskClaim
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration, LostChatTask
from connector.texts.customers import PhoneSpellings, find_customer
from connector.texts.rules import chat_passes_filters
from connector.texts.templates import render_title, title_values
from connector.texts.visitors import Visitors, with_card
from connector.timeutil import utc_to_local

STALE_AFTER = 15 * 60.0  # seconds; the longest function that creates tasks times out well before
RECOVERY_PAGES = 2  # AlfaCRM pages (50 tasks each) searched for a task a dead holder may have created


class LostChatTaskBusy(ConnectorError):
    """Another worker holds a fresh claim on this chat's task: try again later."""

    code = "lost_chat_task_busy"
    retryable = True


def marker(chat_id: int) -> str:
    """The line that ties a task to its chat (searched for when a dead holder's claim is taken over)."""
    return f"Чат UIS №{chat_id}"


def task_text(chat: ChatFacts, tz: str | None) -> str:
    """The task's body: the chat's details a manager needs to call the visitor back."""
    values = title_values(chat, tz)
    lines = ["Посетитель не дождался ответа в чате (потерянный чат UIS)."]
    for label, key in (
        ("Имя", "visitor_name"),
        ("Телефон", "visitor_phone"),
        ("E-mail", "visitor_email"),
        ("Сайт", "site"),
        ("Канал", "channel"),
        ("Начало чата", "started_at"),
        ("Оператор", "operator"),
        ("Теги", "tags"),
    ):
        if values[key]:
            lines.append(f"{label}: {values[key]}")
    ids = marker(chat.chat_id)
    if chat.communication_id is not None:
        ids += f", коммуникация {chat.communication_id}"
    lines.append(ids)
    return "\n".join(lines)


def task_applies(integration: Integration, chat: ChatFacts) -> tuple[bool, str]:
    """Should this lost chat get a task at all? (→ (yes/no, why not))."""
    if not integration.active:
        return False, "integration inactive"
    chats = integration.settings.texts.chats
    if not chats.enabled:
        return False, "chats off"
    if not chats.lost_chat_task.enabled:
        return False, "lost-chat task off"
    return chat_passes_filters(chats.filters, chat)


class LostChatTasks:
    """The one AlfaCRM task of each lost chat, on the runtime's store, clients and clock."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.texts = rt.store.texts
        self.clock = rt.epoch

    def handle(
        self,
        integration: Integration,
        chat: ChatFacts,
        *,
        customer_id: int | None = None,
        customer_branch_id: int | None = None,
        visitors: Visitors | None = None,
    ) -> str:
        """→ what happened: `created`, `recovered`, `done` (already had a task) or `skipped: <why>`.

        `customer_id`: the AlfaCRM customer the text worker attached this chat to (found or just created —
        a lead for a visitor without contacts cannot be found again by phone or e-mail); the task links it.
        Raises `LostChatTaskBusy` (retryable) when another worker is creating it right now, and the AlfaCRM
        client's errors when AlfaCRM refuses or is unavailable (the claim is released first).
        """
        ok, why = task_applies(integration, chat)
        if not ok:
            logger.info(
                "lost chat: no task", extra={"integration_id": integration.id, "chat_id": chat.chat_id, "reason": why}
            )
            return self._record(integration, chat, "skipped", why, f"skipped: {why}")
        state, claim = self.texts.claim_lost_task(
            integration.id, chat.chat_id, token=uuid.uuid4().hex, now=self.clock(), stale_after=STALE_AFTER
        )
        if state == "done":
            return self._record(integration, chat, "skipped", "the chat has its task already", "done")
        if state == "busy":
            raise LostChatTaskBusy(f"chat {chat.chat_id}: another worker is creating its task")
        try:
            made = self._create(integration, chat, claim, customer_id, customer_branch_id, visitors)
        except Exception as exc:
            self._release(integration, chat, claim, exc)
            raise
        reason = "task found (an earlier attempt made it)" if made == "recovered" else "task created"
        return self._record(integration, chat, "done", reason, made)

    def _record(self, integration: Integration, chat: ChatFacts, outcome: EventOutcome, reason: str, made: str) -> str:
        key = f"chat{chat.chat_id}"
        self.rt.events.record(integration.id, source="uis", kind="lost_chat", key=key, outcome=outcome, reason=reason)
        return made

    def _create(
        self,
        integration: Integration,
        chat: ChatFacts,
        claim: LostTaskClaim,
        customer_id: int | None = None,
        customer_branch_id: int | None = None,
        visitors: Visitors | None = None,
    ) -> str:
        task = integration.settings.texts.chats.lost_chat_task
        branch_id = integration.settings.texts.branch_id or integration.alfacrm.branch_id
        client = self.rt.clients.alfacrm(integration)
        title = render_title(task.title, chat, integration.timezone)
        if self._recovered(integration, chat, claim, client, branch_id, title):
            return "recovered"
        customer = self._customer(integration, chat, client, branch_id, customer_id, customer_branch_id)
        if customer is not None and not chat.visitor_name:
            # `get.chats_report` has no visitor name (only notifications carry it): the customer's is the best
            chat = chat.model_copy(update={"visitor_name": customer.name})
            title = render_title(task.title, chat, integration.timezone)
        elif customer is None and not chat.visitor_name:
            # a stranger: the name the visitor gave UIS (get.visitors; the poller asked already, as a rule)
            chat = with_card(visitors.look_up(chat) if visitors is not None else chat)
            title = render_title(task.title, chat, integration.timezone)
        linked = customer_id if customer_id is not None else (customer.id if customer else None)
        task_id = self._send_task(integration, chat, claim, client, branch_id=branch_id, title=title, linked=linked)
        logger.info(
            "lost chat: task created",
            extra={
                "integration_id": integration.id,
                "chat_id": chat.chat_id,
                "task_id": task_id,
                "customer_found": linked is not None,
            },
        )
        return "created"

    def _send_task(
        self,
        integration: Integration,
        chat: ChatFacts,
        claim: LostTaskClaim,
        client: AlfaCrmClient,
        *,
        branch_id: int,
        title: str,
        linked: int | None,
    ) -> int | None:
        """`sending` (with the title, for a takeover's search) → AlfaCRM's create → `done` with the task's id."""
        task = integration.settings.texts.chats.lost_chat_task
        claim = self.texts.update_lost_task(
            integration.id, chat.chat_id, claim, state="sending", customer_id=linked, title=title
        )
        created = client.create_task(
            branch_id=branch_id,
            title=title,
            text=task_text(chat, integration.timezone),
            customer_ids=[linked] if linked is not None else [],
            assigned_ids=list(task.assigned_ids),
            due_date=self._due(task, integration),
        )
        task_id = _int(created.get("id"))
        try:
            self.texts.update_lost_task(
                integration.id, chat.chat_id, claim, state="done", task_id=task_id, done_at=int(self.clock())
            )
        except ConcurrentUpdate:
            # our claim went stale and someone took it over while AlfaCRM answered: theirs decides now
            logger.warning(
                "lost chat: claim taken over while creating the task",
                extra={"integration_id": integration.id, "chat_id": chat.chat_id, "task_id": task_id},
            )
        return task_id

    def _recovered(
        self,
        integration: Integration,
        chat: ChatFacts,
        claim: LostTaskClaim,
        client: AlfaCrmClient,
        branch_id: int,
        title: str,
    ) -> bool:
        """The previous holder may have reached AlfaCRM (it died in `sending`, or its call timed out there):
        its task, when found, is recorded as this chat's instead of creating a second one."""
        if claim.taken_over != "sending" and not claim.was_sending:
            return False
        # the title it sent is kept in the claim (it may differ: a customer's name filled it in)
        found = None
        for sent_title in dict.fromkeys(t for t in (claim.title, title) if t):
            found = self._find_existing(client, branch_id, sent_title, chat.chat_id)
            if found is not None:
                break
        if found is None:
            return False
        self.texts.update_lost_task(
            integration.id, chat.chat_id, claim, state="done", task_id=found, done_at=int(self.clock()), recovered=True
        )
        logger.warning(
            "lost chat: task found after a takeover, not created again",
            extra={"integration_id": integration.id, "chat_id": chat.chat_id, "task_id": found},
        )
        return True

    def _customer(
        self,
        integration: Integration,
        chat: ChatFacts,
        client: AlfaCrmClient,
        branch_id: int,
        customer_id: int | None,
        customer_branch_id: int | None,
    ) -> Customer | None:
        """The customer the task links: the one the chat is attached to (read only for its name, when the
        chat lacks one), else the one with the visitor's phone or e-mail."""
        if customer_id is not None:
            return None if chat.visitor_name else client.get_customer(customer_id, customer_branch_id or branch_id)
        if chat.visitor_phone or chat.visitor_email:
            return find_customer(
                client,
                PhoneSpellings.of(self.rt),
                branch_id=branch_id,
                phone=chat.visitor_phone,
                email=chat.visitor_email,
                region=integration.phone_region,
            )
        return None

    def _due(self, task: LostChatTask, integration: Integration) -> date:
        now = datetime.fromtimestamp(self.clock(), UTC)
        return utc_to_local(now + timedelta(hours=task.due_hours), integration.timezone).date()

    def _find_existing(self, client: AlfaCrmClient, branch_id: int, title: str, chat_id: int) -> int | None:
        """A task a dead holder created for this chat: our marker in its text (AlfaCRM may ignore the filter)."""
        wanted = marker(chat_id)
        for page in range(RECOVERY_PAGES):
            reply = client.index("task", {"title": title}, branch_id=branch_id, page=page)
            for item in reply.items:
                lines = str(item.get("text") or "").splitlines()
                if any(line == wanted or line.startswith(wanted + ",") for line in lines):
                    return _int(item.get("id"))
            if len(reply.items) == 0 or (page + 1) * 50 >= (reply.total or 0):
                return None
        return None

    def _release(self, integration: Integration, chat: ChatFacts, claim: LostTaskClaim, exc: Exception) -> None:
        """Free the claim so the next report (SQS retry, replay, next poll) tries again at once."""
        error = exc.message if isinstance(exc, ConnectorError) else type(exc).__name__
        try:
            current = self.texts.lost_task(integration.id, chat.chat_id)
            if current is None or current.token != claim.token or current.state == "done":
                return
            self.texts.update_lost_task(
                integration.id,
                chat.chat_id,
                current,
                state="released",
                error=error[:500],
                released_at=int(self.clock()),
                was_sending=current.state == "sending" or current.was_sending,
                settle_until=self._settle_until(exc),
            )
        except Exception:  # the claim simply goes stale instead; never hide the original error
            logger.exception("lost chat: could not release the claim", extra={"chat_id": chat.chat_id})
        logger.warning(
            "lost chat: task not created",
            extra={
                "integration_id": integration.id,
                "chat_id": chat.chat_id,
                "error": error[:300],
                "retryable": bool(getattr(exc, "retryable", False)),
                "alfacrm": isinstance(exc, AlfaCrmError),
            },
        )

    def _settle_until(self, exc: Exception) -> float | None:
        """A create whose answer was lost may still land: no takeover (which reads back first) before then."""
        window = landing_window(exc)
        return self.clock() + window if window > 0 else None


def _int(value: JsonValue) -> int | None:
    try:
        return to_int(value)
    except ValueError:
        return None
