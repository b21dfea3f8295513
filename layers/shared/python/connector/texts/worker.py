"""The text worker use case: one text event (a UIS notification, a poller or Chat API event) → AlfaCRM.

A chat event is five steps over its `ChatTurn` (the chat's facts and its `CHAT#<chat_id>` progress item):

    resolve facts → plan → ensure customer → post once → lost-chat task

- resolve facts (`connector.texts.facts`): the notification, what earlier events of the chat stored, the
  report row of a mark that names only its communication;
- plan (`connector.texts.rules`): what this event may do (create the lead? post the transcript?), decided
  before any call; a duplicate delivery stops here; a fact a rule needs but nobody gave is read from UIS
  (≤ 1 report call) and the plan made again; then the filters;
- ensure customer: the one the chat is attached to, else the one with the visitor's phone/e-mail, else the
  lead, created once (`connector.texts.leads`); mapped extra fields written under their rule;
- post once: the transcript, a claimed step (never two copies, even after a lost answer);
- lost-chat task (`connector.texts.lost_chats`): one AlfaCRM task per lost chat.
A request (`REQ#om<offline_message_id>`) is the same without the plan and the task: resolve facts (the
report completes missing ids) → filters → ensure customer → post its comment once.

Every AlfaCRM write is a claimed step of the progress item, so any number of deliveries make one lead and
one comment. Errors: retryable ones (AlfaCRM/UIS unavailable, UIS limits, a busy claim) propagate so SQS
retries the record; anything a retry cannot fix (AlfaCRM refusing a lead, a malformed event) is parked with
the message and the record succeeds. Every UIS point an event spends is charged to the ledger (`texts`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from connector.alfacrm.client import AlfaCrmClient
from connector.alfacrm.models import Customer
from connector.errors import BadRequest, ConnectorError
from connector.models.events import EventOutcome, EventSource
from connector.models.messages import MARK_EVENTS, TextEventMessage
from connector.models.parked import ParkedItem, fingerprint
from connector.models.raw import JsonObject, JsonValue
from connector.models.texts import ChatFacts, ChatProgress, CustomerLink, RequestFacts, RequestProgress
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import ChatsSettings, Integration
from connector.store.texts import chat_item
from connector.texts import facts, rules
from connector.texts.customers import NewLead, PhoneSpellings, apply_extra_fields, customer_branch, find_customer
from connector.texts.leads import CommunicationType, LeadCreator, LeadMade, Recording, StepClaims
from connector.texts.lost_chats import LostChatTasks
from connector.texts.transcript import split, transcript_parts
from connector.texts.visitors import Visitors, with_card
from connector.uis.notifications import Notification, as_int, parse_message
from connector.uis.points import UisPoints
from connector.uis.text_queue import read_message

PARK_KIND = "text_event"
_OUTCOMES: dict[str, EventOutcome] = {"done": "done", "skipped": "skipped", "parked": "parked"}


@dataclass
class Outcome:
    """What one event did (returned for tests, the demo and the log line)."""

    status: str  # done | skipped | parked
    reason: str = ""
    event: str | None = None
    customer_id: int | None = None
    lead_created: bool = False
    comments: int = 0
    uis_calls: int = 0
    alfacrm_calls: int = 0
    notes: list[str] = field(default_factory=list)


class _Event:
    """One event's context: the integration's text settings, metered UIS reads, a lazy AlfaCRM client."""

    def __init__(
        self, worker: TextWorker, integration: Integration, n: Notification, message: TextEventMessage
    ) -> None:
        rt = worker.rt
        self.rt = rt
        self.message = message  # what a parked event replays
        self.integration = integration
        self.n = n
        self.texts = integration.settings.texts
        self.branch_id = self.texts.branch_id or integration.alfacrm.branch_id
        # AlfaCRM may require an author on communication/create: the settings' one, else the API user
        self.comment_author = self.texts.comment_author_id or integration.alfacrm.api_user_id
        self.region = integration.phone_region
        self.tz = integration.timezone
        self.points: UisPoints = rt.uis_points(integration, "texts")
        self.reads = facts.UisReads(
            self.points,
            tz=self.tz,
            anchor=n.received_at,
            chat_fields=facts.chat_fields(self.texts.chats.extra_fields),
            request_fields=facts.request_fields(self.texts.requests.extra_fields),
        )
        self.visitors = Visitors(rt, integration, self.points)
        self.claims = StepClaims(rt.store.texts, integration.id, clock=rt.epoch, stale_after=worker.stale_after)
        self._alfacrm: AlfaCrmClient | None = None
        self._alfacrm_before = 0
        self.spellings = PhoneSpellings.of(rt)
        self.outcome = Outcome("done", event=n.event)

    @property
    def alfacrm(self) -> AlfaCrmClient:
        if self._alfacrm is None:
            self._alfacrm = self.rt.clients.alfacrm(self.integration)
            self._alfacrm_before = self._alfacrm.calls
        return self._alfacrm

    def leads(self) -> LeadCreator:
        return LeadCreator(self.claims, self.alfacrm, self.spellings, branch_id=self.branch_id, region=self.region)

    def finish(self) -> Outcome:
        self.points.close()
        self.outcome.uis_calls = self.points.spent
        if self._alfacrm is not None:
            self.outcome.alfacrm_calls = self._alfacrm.calls - self._alfacrm_before
        return self.outcome

    def skip(self, reason: str) -> None:
        self.outcome.status = "skipped"
        self.outcome.reason = reason

    def note(self, text: str) -> None:
        self.outcome.notes.append(text)

    def remember(self, item: str, update: ChatProgress | RequestProgress) -> None:
        self.rt.store.texts.remember(self.integration.id, item, update)


@dataclass
class ChatTurn:
    """One chat event's facts and the chat's progress, as the steps refine them."""

    item: str  # CHAT#<chat_id>
    chat: ChatFacts
    progress: ChatProgress
    stored: bool  # the facts came (partly) from the progress item: a report row was read before
    lost: bool  # a lost_chat event: the task step runs whatever the plan
    waiting: bool  # the chat ended before it had a customer: a lead made now gets the transcript
    plan: rules.ChatPlan = field(default_factory=lambda: rules.ChatPlan(False, False, ""))
    customer_id: int | None = None
    branch_id: int | None = None


@dataclass
class RequestTurn:
    item: str  # REQ#om<offline_message_id> (or REQ#c<communication_id> until the report names the request)
    req: RequestFacts
    progress: RequestProgress


class TextWorker:
    def __init__(self, rt: Runtime, *, stale_after: float | None = None) -> None:
        self.rt = rt
        self.stale_after = stale_after

    # --- entry ---------------------------------------------------------------------------------------------
    def handle(self, message: TextEventMessage | JsonObject | str | bytes) -> Outcome:
        """One queue message → its AlfaCRM writes. Raises only retryable errors (the record is retried)."""
        try:
            typed = message if isinstance(message, TextEventMessage) else read_message(_json(message))
            n = parse_message(typed)
        except BadRequest as exc:
            return self._park_unparsed(message, exc)
        integration = self.rt.store.integrations.get(n.integration_id)
        if integration is None:
            logger.warning("text event for an unknown integration", extra={"integration_id": n.integration_id})
            return Outcome("skipped", "unknown integration", event=n.event)
        ev = _Event(self, integration, n, typed)
        try:
            if not integration.active:
                ev.skip("integration inactive")
            elif n.is_request:
                self._request(ev)
            else:
                self._chat(ev)
        except ConnectorError as exc:
            self.rt.events.failed(integration.id, exc)
            if exc.retryable:
                logger.warning("text event will be retried", extra=_failure(ev, exc))
                self._record(ev, "failed", exc.message)
                raise
            self._park(ev, exc)
        except Exception as exc:
            self._record(ev, "failed", f"unexpected {type(exc).__name__}")
            raise
        finally:
            ev.finish()  # the UIS points this event spent go to the ledger, whatever happened
        self._record(ev, ev.outcome.status, ev.outcome.reason)
        return _log(ev.outcome)

    def _record(self, ev: _Event, outcome: str, reason: str) -> None:
        """The event in the school's execution log; its credentials seen working when it reached them."""
        events, iid, n = self.rt.events, ev.integration.id, ev.n
        status = _OUTCOMES.get(outcome, "failed")
        source: EventSource = "poller" if n.source == "poller" else "uis"
        events.record(iid, source=source, kind="text_event", key=n.dedup_key, outcome=status, reason=reason)
        if n.source != "poller":
            events.seen(iid, "uis_notification_at", ev.message.received_at)
        if status in ("done", "skipped"):
            if ev.outcome.alfacrm_calls:
                events.credential(iid, "alfacrm", ok=True)
            if ev.points.spent:
                events.credential(iid, "uis", ok=True)

    def _park(self, ev: _Event, exc: ConnectorError) -> None:
        payload = ev.message.model_dump(mode="json", exclude_none=True)
        parked = ParkedItem(kind=PARK_KIND, key=ev.n.dedup_key, payload=payload, error=exc.message, code=exc.code)
        self.rt.store.integrations.park(ev.integration.id, parked)
        logger.error("text event parked", extra=_failure(ev, exc))
        ev.outcome.status = "parked"
        ev.outcome.reason = exc.message

    def _park_unparsed(self, message: TextEventMessage | JsonObject | str | bytes, exc: BadRequest) -> Outcome:
        raw = _json(message)
        owner = raw.get("integration_id") if isinstance(raw, dict) else None
        if owner and self.rt.store.integrations.get(str(owner)) is None:
            owner = None  # a school removed since: nothing of it is stored again
        if owner:
            # keyed by its content, never by the time: two messages parked in one second are two items
            content = (
                {k: v for k, v in raw.items() if k not in ("received_at", "replay")} if isinstance(raw, dict) else raw
            )
            key = f"unparsed#{fingerprint(content)}"
            parked = ParkedItem(kind=PARK_KIND, key=key, payload=raw, error=exc.message, code=exc.code)
            self.rt.store.integrations.park(str(owner), parked)
            self.rt.events.record(
                str(owner), source="uis", kind="text_event", key=key, outcome="parked", reason=exc.message
            )
        logger.warning("text event not understood", extra={"integration_id": owner, "error": exc.message})
        return Outcome("parked", exc.message)

    # --- requests: resolve facts → filters → ensure customer → post once ------------------------------------
    def _request(self, ev: _Event) -> None:
        settings = ev.texts.requests
        if not settings.enabled:
            return ev.skip("requests are off")
        turn = self._resolve_request(ev)
        if turn is None:
            return None
        ok, why = rules.request_passes_filters(settings.filters, turn.req)
        if not ok:
            return ev.skip(why)
        found = self._request_customer(ev, turn)
        if found is not None:
            customer_id, branch = found
            comment = split(rules.request_comment(turn.req, ev.tz))
            self._post_once(ev, turn.item, "comment", customer_id, branch, comment)
        return None

    def _resolve_request(self, ev: _Event) -> RequestTurn | None:
        """One request, one progress item, whichever id a delivery names it by. The item is keyed by the
        request id (`REQ#om<offline_message_id>`: UIS's report always has it, and items stored before keep
        working); `REQ#c<communication_id>` is an alias to it. A delivery lacking either id learns it from
        the report (`rules.request_missing`: the one UIS call) before anything is written, then leaves the
        alias, so a later delivery naming only the communication finds the item without a UIS call."""
        texts, iid = self.rt.store.texts, ev.integration.id
        req = facts.request_facts(ev.n, ev.tz)
        item = f"REQ#{req.key}"
        progress = texts.request_progress(iid, item)
        if progress.alias_of:
            item = progress.alias_of
            progress = texts.request_progress(iid, item)
        if not progress.done("comment") and rules.request_missing(ev.texts.requests, req):
            named, req = req, ev.reads.complete_request(req)
            if (
                named.offline_message_id is None
                and req.offline_message_id is not None
                and progress == RequestProgress()
            ):
                # named by its communication only, and nothing recorded under that name: the request's item
                item = f"REQ#{req.key}"
                progress = texts.request_progress(iid, item)
            lacked_an_id = named.offline_message_id is None or named.communication_id is None
            if lacked_an_id and req.offline_message_id is not None and req.communication_id is not None:
                texts.alias(iid, f"REQ#c{req.communication_id}", item)
            if progress.done("comment"):
                ev.outcome.customer_id = progress.customer_id
                ev.skip("already handled (duplicate delivery, named by its other id)")
                return None
        if progress.done("comment"):
            ev.outcome.customer_id = progress.customer_id
            ev.skip("already handled (duplicate delivery)")
            return None
        return RequestTurn(item, req, progress)

    def _request_customer(self, ev: _Event, turn: RequestTurn) -> tuple[int, int] | None:
        settings, req = ev.texts.requests, turn.req
        customer_id, branch = turn.progress.customer_id, turn.progress.customer_branch_id
        if customer_id is None:

            def record(customer: Customer) -> RequestProgress:
                return RequestProgress(
                    customer_id=customer.id, customer_branch_id=customer_branch(customer, ev.branch_id)
                )

            extra = rules.extra_field_values(settings.extra_fields, req)
            customer = self._existing(ev, req.visitor_phone, req.visitor_email, extra) if req.has_contacts else None
            made = LeadMade(customer, created=False, recorded=False) if customer is not None else None
            if made is None:
                if not settings.create_lead:
                    ev.skip("no customer with this phone/e-mail and create_lead is off")
                    return None
                lead = self._new_lead(ev, rules.request_lead_name(req), req.visitor_phone, req.visitor_email, extra)
                communication: tuple[int | None, CommunicationType] = (req.communication_id, "offline_message")
                made = self._create_lead(
                    ev, turn.item, lead, search=req.has_contacts, communication=communication, record=record
                )
            customer_id, branch = made.customer.id, customer_branch(made.customer, ev.branch_id)
            if not made.recorded:
                ev.remember(turn.item, record(made.customer))
        ev.outcome.customer_id = customer_id
        return customer_id, branch or ev.branch_id

    # --- chats: resolve facts → plan → ensure customer → post once → lost-chat task --------------------------
    def _chat(self, ev: _Event) -> None:
        if not ev.texts.chats.enabled:
            return ev.skip("chats are off")
        turn = self._resolve_chat(ev)
        if turn is None or not self._plan_chat(ev, turn):
            return None
        self._ensure_chat_customer(ev, turn)
        self._post_transcript(ev, turn)
        if turn.lost:
            LostChatTasks(self.rt).handle(
                ev.integration,
                turn.chat,
                customer_id=turn.customer_id,
                customer_branch_id=turn.branch_id,
                visitors=ev.visitors,
            )
        if not ev.outcome.lead_created and not ev.outcome.comments:
            ev.outcome.reason = "; ".join(ev.outcome.notes) or "nothing left to write"
        return None

    def _resolve_chat(self, ev: _Event) -> ChatTurn | None:
        """The chat this event is about: the notification's facts completed by what earlier events stored."""
        n = ev.n
        if as_int(n.params.get("chat_id")) is not None or n.is_report_row:
            chat = facts.chat_facts(n, ev.tz)
        elif n.event in MARK_EVENTS:
            found = facts.mark_chat(n, ev.reads)
            if isinstance(found, str):
                ev.skip(found)
                return None
            chat = found
        else:
            raise BadRequest(f"{n.event} event without chat_id")
        progress = self.rt.store.texts.chat_progress(ev.integration.id, chat.chat_id)
        if progress.facts is not None:
            # an earlier event of this chat already read the report: no second call for the same facts
            chat = facts.with_mark(n, facts.merge_chat_report(chat, progress.facts))
        return ChatTurn(
            item=chat_item(chat.chat_id),
            chat=chat,
            progress=progress,
            stored=progress.facts is not None,
            lost=n.event == "lost_chat",
            waiting=progress.transcript_waiting,
        )

    def _plan_chat(self, ev: _Event, turn: ChatTurn) -> bool:
        """What this event may do; False (and why, in the outcome) when it does nothing."""
        settings, n = ev.texts.chats, ev.n
        turn.plan = _plan(settings, n.event, turn.chat, turn.waiting)
        if not turn.plan.acts and not turn.lost:
            ev.skip(turn.plan.reason)
            return False
        progress = turn.progress
        lead_left = turn.plan.create_lead and progress.customer_id is None
        transcript_left = turn.plan.transcript and not progress.done("transcript")
        if not turn.lost and not lead_left and not transcript_left:
            ev.outcome.customer_id = progress.customer_id
            ev.skip("already handled (duplicate delivery)")
            return False
        # contacts are only needed to find or create the customer: a chat already attached needs none
        if rules.chat_missing(settings, turn.chat, wants_customer=progress.customer_id is None):
            turn.chat = facts.with_mark(n, ev.reads.complete_chat(turn.chat))
            ev.remember(turn.item, ChatProgress(facts=turn.chat))
            turn.plan = _plan(settings, n.event, turn.chat, turn.waiting)
            if not turn.plan.acts and not turn.lost:
                ev.skip(turn.plan.reason)
                return False
        elif turn.chat.complete and not turn.stored:
            # a poller report row: keep it, so later events of this chat need no report call
            ev.remember(turn.item, ChatProgress(facts=turn.chat))
        ok, why = rules.chat_passes_filters(settings.filters, turn.chat)
        if not ok:
            ev.skip(why)
        return ok

    def _ensure_chat_customer(self, ev: _Event, turn: ChatTurn) -> None:
        progress = turn.progress
        turn.customer_id, turn.branch_id = progress.customer_id, progress.customer_branch_id
        extra = rules.extra_field_values(ev.texts.chats.extra_fields, turn.chat)
        if turn.customer_id is None:

            def record(customer: Customer) -> ChatProgress:
                # the mapped values this event carried went into the create body or onto the found customer
                branch = customer_branch(customer, ev.branch_id)
                return ChatProgress(
                    customer_id=customer.id, customer_branch_id=branch, fields_applied=_applied({}, extra)
                )

            made = self._chat_lead(ev, turn, extra, record)
            if made is not None:
                turn.customer_id, turn.branch_id = made.customer.id, customer_branch(made.customer, ev.branch_id)
                if not made.recorded:
                    ev.remember(turn.item, record(made.customer))
        elif extra:
            self._later_fields(ev, turn, extra)
        ev.outcome.customer_id = turn.customer_id
        if progress.link_pending and turn.customer_id is not None and turn.chat.communication_id is not None:
            # our lead was made before UIS named the chat's communication (a Chat API start): link it now
            link = CustomerLink(communication_id=turn.chat.communication_id, communication_type="chat")
            self.rt.store.texts.link_customer(ev.integration.id, turn.customer_id, link)
            ev.remember(turn.item, ChatProgress(link_pending=False))

    def _chat_lead(
        self, ev: _Event, turn: ChatTurn, extra: list[rules.FieldValue], record: Recording
    ) -> LeadMade | None:
        """The customer with the visitor's phone/e-mail, else the chat's new lead when the plan allows one."""
        chat = turn.chat
        if chat.has_contacts:
            customer = self._existing(ev, chat.visitor_phone, chat.visitor_email, extra)
            if customer is not None:
                return LeadMade(customer, created=False, recorded=False)
        if not turn.plan.create_lead:
            ev.note(f"no customer yet; {turn.plan.reason}")
            return None
        if not chat.has_contacts and not ev.texts.chats.without_contacts:
            ev.note("visitor left no phone or e-mail and chats without contacts are off: no lead")
            return None
        chat = with_card(self._look_up_visitor(ev, turn))  # a stranger's lead is named after the visitor
        lead = self._new_lead(ev, rules.chat_lead_name(chat), chat.visitor_phone, chat.visitor_email, extra)
        communication: tuple[int | None, CommunicationType] = (chat.communication_id, "chat")
        return self._create_lead(
            ev, turn.item, lead, search=chat.has_contacts, communication=communication, record=record
        )

    @staticmethod
    def _look_up_visitor(ev: _Event, turn: ChatTurn) -> ChatFacts:
        """The chat with its visitor's card (get.visitors) when it lacks the name; the card is kept with the
        chat's report facts, so no later event of the chat asks again."""
        looked_up = ev.visitors.look_up(turn.chat)
        if looked_up is not turn.chat:
            turn.chat = looked_up
            if looked_up.complete:
                ev.remember(turn.item, ChatProgress(facts=looked_up))
        return turn.chat

    def _later_fields(self, ev: _Event, turn: ChatTurn, extra: list[rules.FieldValue]) -> None:
        """Mapped values an event of a chat whose customer is already known carries (UTM or campaign known
        only at the chat's end, for a lead made at its start): written under the usual rule (`update_always`,
        or the field is empty). Values already applied for this chat cost nothing; new ones one customer
        read (to judge "empty"), at most one update and one state write."""
        applied = dict(turn.progress.fields_applied)
        new = [v for v in extra if applied.get(v.target) != _fingerprint(v)]
        if not new or turn.customer_id is None:
            return
        customer = ev.alfacrm.get_customer(turn.customer_id, turn.branch_id or ev.branch_id)
        if customer is None:
            ev.note(f"customer {turn.customer_id} not found in AlfaCRM: extra fields not written")
            return
        apply_extra_fields(ev.alfacrm, customer, new, branch_id=ev.branch_id)
        ev.remember(turn.item, ChatProgress(fields_applied=_applied(applied, new)))

    def _post_transcript(self, ev: _Event, turn: ChatTurn) -> None:
        if turn.plan.transcript and turn.customer_id is not None and not turn.progress.done("transcript"):
            messages = turn.chat.messages
            if messages is None and (ev.n.event == "chat_finished" or turn.waiting or ev.reads.calls == 0):
                messages = ev.reads.messages(turn.chat.chat_id)
            if not messages:
                return ev.note("no messages to post")
            parts = transcript_parts(turn.chat, messages, ev.tz)
            self._post_once(ev, turn.item, "transcript", turn.customer_id, turn.branch_id or ev.branch_id, parts)
        elif turn.plan.transcript and turn.customer_id is None:
            ev.note("transcript not posted: the chat has no AlfaCRM customer")
            if not turn.waiting:
                # the chat has ended: a lead a later event makes (a tag set after the end) gets the transcript
                ev.remember(turn.item, ChatProgress(transcript_waiting=True))
        return None

    # --- AlfaCRM writes, each once ---------------------------------------------------------------------------
    @staticmethod
    def _new_lead(
        ev: _Event, name: str, phone: str | None, email: str | None, extra: list[rules.FieldValue]
    ) -> NewLead:
        return NewLead(
            name=name,
            phone=phone,
            email=email,
            branch_id=ev.branch_id,
            defaults=ev.texts.lead_defaults,
            extra=tuple(extra),
        )

    @staticmethod
    def _existing(ev: _Event, phone: str | None, email: str | None, extra: list[rules.FieldValue]) -> Customer | None:
        customer = find_customer(
            ev.alfacrm, ev.spellings, branch_id=ev.branch_id, phone=phone, email=email, region=ev.region
        )
        if customer is not None:
            customer = apply_extra_fields(ev.alfacrm, customer, extra, branch_id=ev.branch_id)
        return customer

    @staticmethod
    def _create_lead(
        ev: _Event,
        item: str,
        lead: NewLead,
        *,
        search: bool,
        communication: tuple[int | None, CommunicationType],
        record: Recording,
    ) -> LeadMade:
        made = ev.leads().create(item, lead, search=search, communication=communication, record=record)
        ev.outcome.lead_created = made.created
        return made

    @staticmethod
    def _post_once(ev: _Event, item: str, step: str, customer_id: int, branch_id: int, parts: list[str]) -> None:
        claim = ev.claims.claim(item, step)
        if claim.status == "done":
            return
        client = ev.alfacrm
        try:
            posted: set[str] = set()
            if claim.retaken:
                # an earlier attempt may have posted some parts: never post one twice
                posted = {str(c.get("comment") or "") for c in client.comments(customer_id, branch_id=branch_id)}
            for part in parts:
                if part in posted:
                    continue
                client.add_comment(customer_id, part, branch_id=branch_id, user_id=ev.comment_author)
                ev.outcome.comments += 1
        except Exception as exc:
            ev.claims.fail(item, step, exc)
            raise
        ev.claims.finish(item, step, len(parts))


def _plan(settings: ChatsSettings, event: str, chat: ChatFacts, waiting: bool) -> rules.ChatPlan:
    """`rules.chat_plan`, plus the transcript of a chat that ended before it had a customer when this event
    creates its lead (the transcript is still only ever posted for an ended chat)."""
    plan = rules.chat_plan(settings, event, chat)
    if waiting and plan.create_lead and not plan.transcript:
        return rules.ChatPlan(True, True, plan.reason + "; the chat has ended: its transcript goes to the lead")
    return plan


def _fingerprint(value: rules.FieldValue) -> str:
    """A mapped value as remembered in the chat's progress: a short hash (a mapping may carry an e-mail)."""
    return hashlib.sha256(f"{value.target}\x00{value.value}".encode()).hexdigest()[:16]


def _applied(applied: dict[str, str], values: list[rules.FieldValue]) -> dict[str, str]:
    return {**applied, **{v.target: _fingerprint(v) for v in values}}


def _json(message: TextEventMessage | JsonObject | str | bytes) -> JsonValue:
    if isinstance(message, TextEventMessage):
        dumped: JsonObject = message.model_dump(mode="json")
        return dumped
    if isinstance(message, bytes | str):
        try:
            parsed: JsonValue = json.loads(message)
        except ValueError:
            return message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        return parsed
    return message


def _failure(ev: _Event, exc: ConnectorError) -> dict[str, object]:
    return {
        "integration_id": ev.integration.id,
        "event": ev.n.event,
        "key": ev.n.dedup_key,
        "error": exc.message,
        "code": exc.code,
    }


def _log(outcome: Outcome) -> Outcome:
    logger.info(
        f"text event {outcome.event}: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""),
        extra={
            "event": outcome.event,
            "status": outcome.status,
            "reason": outcome.reason,
            "customer_id": outcome.customer_id,
            "lead_created": outcome.lead_created,
            "comments": outcome.comments,
            "uis_calls": outcome.uis_calls,
            "alfacrm_calls": outcome.alfacrm_calls,
            "notes": outcome.notes,
        },
    )
    return outcome


__all__ = ["Outcome", "TextWorker"]
