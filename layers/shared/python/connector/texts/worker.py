"""The text worker use case: one text event (a UIS notification, a poller or Chat API event) → AlfaCRM.

    parse → integration active? → section on? → what may this event do (`rules.chat_plan`)?
          → complete the facts if a rule needs more (≤ 1 UIS call) → filters → customer (find, or create
            the lead once) → extra fields → comment / transcript once → (lost chat) the task module

Every AlfaCRM write is a claimed step of the chat's `CHAT#<id>` or the request's `REQ#<key>` progress item
(`TextStore.claim_step` before, `finish_step` after), so any number of deliveries make one lead and one
comment. A step whose earlier attempt may have reached AlfaCRM (a stale claim, a timeout) is checked in
AlfaCRM before it is written again. Creating a lead is also claimed per visitor (`TextStore.claim_contact`,
keyed by a hash of the E.164 phone, else the e-mail) for a minute, since two chats, or a chat and a request,
of one visitor are different items: the second worker retries (busy) or uses the lead just made (created).

Errors: retryable ones (AlfaCRM/UIS unavailable, UIS limits, a busy claim) propagate so SQS retries the
record; anything a retry cannot fix (AlfaCRM refusing a lead, a malformed event) is parked with the
message and the record succeeds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from connector.alfacrm.client import SEARCH_MAX_PAGES
from connector.alfacrm.models import Customer as CustomerModel
from connector.errors import BadRequest, ConcurrentUpdate, ConnectorError
from connector.observability import logger
from connector.phones import to_e164
from connector.texts import rules
from connector.texts.customers import (
    NewLead,
    apply_extra_fields,
    create_lead,
    customer_branch,
    find_customer,
)
from connector.texts.enrich import Enricher, chat_fields, request_fields
from connector.texts.models import ChatFacts, RequestFacts, Tag
from connector.texts.transcript import split, transcript_parts
from connector.uis.notifications import Notification, as_int, as_str, parse_message

if TYPE_CHECKING:
    from connector.alfacrm.client import AlfaCrmClient
    from connector.alfacrm.models import Customer
    from connector.ports import ClientFactory
    from connector.settings import ChatsSettings, Integration
    from connector.store import Store
    from connector.store.texts import TextStore

PARK_KIND = "text_event"


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
    """Per-event context: the integration's text settings, lazy clients and call counters."""

    def __init__(self, worker: TextWorker, integration: Integration, n: Notification, raw: Any) -> None:
        self.w = worker
        self.raw = raw  # the queue message as received: what a parked event replays
        self.integration = integration
        self.n = n
        self.texts = integration.settings.texts
        self.branch_id = self.texts.branch_id or integration.alfacrm.branch_id
        # AlfaCRM may require an author on communication/create: the settings' one, else the API user
        self.comment_author = self.texts.comment_author_id or integration.alfacrm.api_user_id
        self.region = integration.phone_region
        self.tz = integration.timezone
        self.uis = Enricher(
            lambda: worker.clients.uis(integration),
            tz=self.tz,
            anchor=n.received_at,
            chat_fields=chat_fields(self.texts.chats.extra_fields),
            request_fields=request_fields(self.texts.requests.extra_fields),
        )
        self._alfacrm: AlfaCrmClient | None = None
        self._alfacrm_before = 0
        self.outcome = Outcome("done", event=n.event)

    @property
    def alfacrm(self) -> AlfaCrmClient:
        if self._alfacrm is None:
            self._alfacrm = self.w.clients.alfacrm(self.integration)
            self._alfacrm_before = self._alfacrm.calls
        return self._alfacrm

    def finish(self) -> Outcome:
        self.outcome.uis_calls = self.uis.calls
        if self._alfacrm is not None:
            self.outcome.alfacrm_calls = self._alfacrm.calls - self._alfacrm_before
        return self.outcome

    def skip(self, reason: str) -> Outcome:
        self.outcome.status = "skipped"
        self.outcome.reason = reason
        return self.finish()

    def note(self, text: str) -> None:
        self.outcome.notes.append(text)


class TextWorker:
    def __init__(
        self,
        store: Store,
        clients: ClientFactory,
        *,
        clock: Callable[[], float] = time.time,
        stale_after: float | None = None,
    ) -> None:
        self.store = store
        self.texts = cast("TextStore", store.texts)
        self.clients = clients
        self.clock = clock
        self.stale_after = stale_after

    # --- entry ---------------------------------------------------------------------------------------------
    def handle(self, message: dict[str, Any] | str | bytes) -> Outcome:
        """One queue message → its AlfaCRM writes. Raises only retryable errors (the record is retried)."""
        try:
            n = parse_message(message)
        except BadRequest as exc:
            return self._park_unparsed(message, exc)
        integration = self.store.integrations.get(n.integration_id)
        if integration is None:
            logger.warning("text event for an unknown integration", extra={"integration_id": n.integration_id})
            return Outcome("skipped", "unknown integration", event=n.event)
        ev = _Event(self, integration, n, message)
        if not integration.active:
            return self._log(ev.skip("integration inactive"))
        try:
            result = self._request(ev) if n.is_request else self._chat(ev)
        except ConnectorError as exc:
            if exc.retryable:
                logger.warning(
                    "text event will be retried",
                    extra={
                        "integration_id": integration.id,
                        "event": n.event,
                        "key": n.dedup_key,
                        "error": exc.message,
                        "code": exc.code,
                    },
                )
                raise
            return self._log(self._park(ev, exc))
        return self._log(result)

    def _park(self, ev: _Event, exc: ConnectorError) -> Outcome:
        self.store.integrations.park(
            ev.integration.id, PARK_KIND, ev.n.dedup_key, payload=ev.raw, error=exc.message, code=exc.code
        )
        logger.error(
            "text event parked",
            extra={
                "integration_id": ev.integration.id,
                "event": ev.n.event,
                "key": ev.n.dedup_key,
                "error": exc.message,
                "code": exc.code,
            },
        )
        ev.outcome.status = "parked"
        ev.outcome.reason = exc.message
        return ev.finish()

    def _park_unparsed(self, message: Any, exc: BadRequest) -> Outcome:
        integration_id = message.get("integration_id") if isinstance(message, dict) else None
        if integration_id:
            key = f"unparsed#{int(self.clock())}"
            self.store.integrations.park(
                str(integration_id), PARK_KIND, key, payload=message, error=exc.message, code=exc.code
            )
        logger.warning("text event not understood", extra={"integration_id": integration_id, "error": exc.message})
        return Outcome("parked", exc.message)

    @staticmethod
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

    # --- requests ------------------------------------------------------------------------------------------
    def _request(self, ev: _Event) -> Outcome:
        settings = ev.texts.requests
        if not settings.enabled:
            return ev.skip("requests are off")
        req = ev.n.request_facts(ev.tz)
        # One request, one progress item, whichever id a delivery names it by. The item is keyed by the
        # request id (`REQ#om<offline_message_id>`: UIS's report always has it, and items stored before keep
        # working); `REQ#c<communication_id>` is an alias to it. A delivery lacking either id learns it from
        # the report (`rules.request_missing`: the one UIS call) before anything is written, then leaves the
        # alias, so a later delivery naming only the communication finds the item without a UIS call.
        item = f"REQ#{req.key}"
        progress = self.texts.progress(ev.integration.id, item)
        if progress.get("alias_of"):
            item = str(progress["alias_of"])
            progress = self.texts.progress(ev.integration.id, item)
        if _done(progress, "comment"):
            ev.outcome.customer_id = progress.get("customer_id")
            return ev.skip("already handled (duplicate delivery)")
        if rules.request_missing(settings, req):
            named = req
            req = ev.uis.complete_request(req)
            if named.offline_message_id is None and req.offline_message_id is not None and not progress:
                # named by its communication only, and nothing recorded under that name: the request's item
                item = f"REQ#{req.key}"
                progress = self.texts.progress(ev.integration.id, item)
            lacked_an_id = named.offline_message_id is None or named.communication_id is None
            if lacked_an_id and req.offline_message_id is not None and req.communication_id is not None:
                self.texts.alias(ev.integration.id, f"REQ#c{req.communication_id}", item)
            if _done(progress, "comment"):
                ev.outcome.customer_id = progress.get("customer_id")
                return ev.skip("already handled (duplicate delivery, named by its other id)")
        ok, why = rules.request_passes_filters(settings.filters, req)
        if not ok:
            return ev.skip(why)
        customer_id, branch = progress.get("customer_id"), progress.get("customer_branch_id")
        if customer_id is None:
            extra = rules.extra_field_values(settings.extra_fields, req)
            customer = self._existing(ev, req.visitor_phone, req.visitor_email, extra) if req.has_contacts else None
            if customer is None:
                if not settings.create_lead:
                    return ev.skip("no customer with this phone/e-mail and create_lead is off")
                lead = NewLead(
                    name=rules.request_lead_name(req),
                    phone=req.visitor_phone,
                    email=req.visitor_email,
                    branch_id=ev.branch_id,
                    defaults=ev.texts.lead_defaults,
                    extra=tuple(extra),
                )
                customer = self._create_lead(
                    ev, item, lead, search=req.has_contacts, communication=(req.communication_id, "offline_message")
                )
            customer_id, branch = customer.id, customer_branch(customer, ev.branch_id)
            self.texts.remember(ev.integration.id, item, {"customer_id": customer_id, "customer_branch_id": branch})
        ev.outcome.customer_id = customer_id
        comment = split(rules.request_comment(req, ev.tz))
        self._post_once(ev, item, "comment", int(customer_id), int(branch or ev.branch_id), comment)
        return ev.finish()

    # --- chats ---------------------------------------------------------------------------------------------
    def _chat(self, ev: _Event) -> Outcome:
        settings = ev.texts.chats
        n = ev.n
        if not settings.enabled:
            return ev.skip("chats are off")
        chat = self._chat_facts(ev)
        if chat is None:
            return ev.finish()
        item = f"CHAT#{chat.chat_id}"
        progress = self.texts.progress(ev.integration.id, item)
        stored = progress.get("facts")
        if stored:
            # an earlier event of this chat already read the report: no second call for the same facts
            chat = _with_mark(n, chat.merged_with_report(ChatFacts.model_validate(stored)))
        lost = n.event == "lost_chat"
        waiting = bool(progress.get("transcript_waiting"))
        plan = _plan(settings, n.event, chat, waiting)
        if not plan.acts and not lost:
            return ev.skip(plan.reason)
        lead_left = plan.create_lead and progress.get("customer_id") is None
        transcript_left = plan.transcript and not _done(progress, "transcript")
        if not lost and not lead_left and not transcript_left:
            ev.outcome.customer_id = progress.get("customer_id")
            return ev.skip("already handled (duplicate delivery)")
        # contacts are only needed to find or create the customer: a chat already attached needs none
        wants_customer = progress.get("customer_id") is None
        if rules.chat_missing(settings, chat, wants_customer=wants_customer):
            chat = _with_mark(n, ev.uis.complete_chat(chat))
            self.texts.remember(ev.integration.id, item, {"facts": chat.for_store()})
            plan = _plan(settings, n.event, chat, waiting)
            if not plan.acts and not lost:
                return ev.skip(plan.reason)
        elif chat.complete and not stored:
            # a poller report row: keep it, so later events of this chat need no report call
            self.texts.remember(ev.integration.id, item, {"facts": chat.for_store()})
        ok, why = rules.chat_passes_filters(settings.filters, chat)
        if not ok:
            return ev.skip(why)

        customer_id, branch = progress.get("customer_id"), progress.get("customer_branch_id")
        extra = rules.extra_field_values(settings.extra_fields, chat)
        if customer_id is None:
            customer = self._chat_customer(ev, item, chat, plan)
            if customer is not None:
                customer_id, branch = customer.id, customer_branch(customer, ev.branch_id)
                # the mapped values this event carried went into the create body or onto the found customer
                self.texts.remember(
                    ev.integration.id,
                    item,
                    {"customer_id": customer_id, "customer_branch_id": branch, "fields_applied": _applied({}, extra)},
                )
        elif extra:
            self._later_fields(ev, item, int(customer_id), int(branch or ev.branch_id), extra, progress)
        ev.outcome.customer_id = customer_id
        if progress.get("link_pending") and customer_id is not None and chat.communication_id is not None:
            # our lead was made before UIS named the chat's communication (a Chat API start): link it now
            self.texts.link_customer(ev.integration.id, int(customer_id), chat.communication_id, "chat")
            self.texts.remember(ev.integration.id, item, {"link_pending": False})

        if plan.transcript and customer_id is not None and not _done(progress, "transcript"):
            messages = chat.messages
            if messages is None and (n.event == "chat_finished" or waiting or ev.uis.calls == 0):
                messages = ev.uis.messages(chat.chat_id)
            if messages:
                self._post_once(
                    ev, item, "transcript", customer_id, branch or ev.branch_id, transcript_parts(chat, messages, ev.tz)
                )
            else:
                ev.note("no messages to post")
        elif plan.transcript and customer_id is None:
            ev.note("transcript not posted: the chat has no AlfaCRM customer")
            if not waiting:
                # the chat has ended: a lead a later event makes (a tag set after the end) gets the transcript
                self.texts.remember(ev.integration.id, item, {"transcript_waiting": True})

        if lost:
            from connector.texts.lost_chats import handle_lost_chat  # issue #5's module, loaded when needed

            handle_lost_chat(
                ev.integration,
                chat,
                store=self.store,
                clients=self.clients,
                customer_id=int(customer_id) if customer_id is not None else None,
                customer_branch_id=int(branch) if branch is not None else None,
            )
        if not ev.outcome.lead_created and not ev.outcome.comments:
            ev.outcome.reason = "; ".join(ev.outcome.notes) or "nothing left to write"
        return ev.finish()

    def _later_fields(
        self,
        ev: _Event,
        item: str,
        customer_id: int,
        branch_id: int,
        extra: list[rules.FieldValue],
        progress: dict[str, Any],
    ) -> None:
        """Mapped values an event of a chat whose customer is already known carries (UTM or campaign known
        only at the chat's end, for a lead made at its start): written under the usual rule (`update_always`,
        or the field is empty). Values already applied for this chat cost nothing; new ones one customer
        read (to judge "empty"), at most one update and one state write."""
        applied = dict(progress.get("fields_applied") or {})
        new = [v for v in extra if applied.get(v.target) != _fingerprint(v)]
        if not new:
            return
        customer = ev.alfacrm.get_customer(customer_id, branch_id)
        if customer is None:
            ev.note(f"customer {customer_id} not found in AlfaCRM: extra fields not written")
            return
        apply_extra_fields(ev.alfacrm, customer, new, branch_id=ev.branch_id)
        self.texts.remember(ev.integration.id, item, {"fields_applied": _applied(applied, new)})

    def _chat_facts(self, ev: _Event) -> ChatFacts | None:
        """The chat this event is about. A mark notification names no chat by default (UIS's body is
        call-oriented): with a `communication_id` it is looked up; otherwise it is not about a chat."""
        n = ev.n
        if as_int(n.params.get("chat_id")) is not None or n.is_report_row:
            return n.chat_facts(ev.tz)
        kind = as_str(n.params.get("communication_type"))
        communication_id = as_int(n.params.get("communication_id"))
        if n.event in {"set_mark", "unset_mark"}:
            if kind not in (None, "chat") or communication_id is None:
                ev.skip(
                    "the mark is not about a chat (add chat_id or communication_id to the notification)"
                    if kind in (None, "chat")
                    else f"the mark is about a {kind}, not a chat"
                )
                return None
            row = ev.uis.chat_row(communication_id=communication_id)
            params = {**n.params, "chat_id": row["id"]}
            named = n.model_copy(update={"params": params})
            return _with_mark(n, named.chat_facts(ev.tz).merged_with_report(ChatFacts.from_report_row(row, ev.tz)))
        raise BadRequest(f"{n.event} event without chat_id")

    def _chat_customer(self, ev: _Event, item: str, chat: ChatFacts, plan: rules.ChatPlan) -> Customer | None:
        settings = ev.texts.chats
        extra = rules.extra_field_values(settings.extra_fields, chat)
        if chat.has_contacts:
            customer = self._existing(ev, chat.visitor_phone, chat.visitor_email, extra)
            if customer is not None:
                return customer
        if not plan.create_lead:
            ev.note(f"no customer yet; {plan.reason}")
            return None
        if not chat.has_contacts and not settings.without_contacts:
            ev.note("visitor left no phone or e-mail and chats without contacts are off: no lead")
            return None
        lead = NewLead(
            name=rules.chat_lead_name(chat),
            phone=chat.visitor_phone,
            email=chat.visitor_email,
            branch_id=ev.branch_id,
            defaults=ev.texts.lead_defaults,
            extra=tuple(extra),
        )
        return self._create_lead(
            ev, item, lead, search=chat.has_contacts, communication=(chat.communication_id, "chat")
        )

    # --- AlfaCRM writes, each once ---------------------------------------------------------------------------
    def _existing(
        self, ev: _Event, phone: str | None, email: str | None, extra: list[rules.FieldValue]
    ) -> Customer | None:
        customer = find_customer(ev.alfacrm, branch_id=ev.branch_id, phone=phone, email=email, region=ev.region)
        if customer is not None:
            customer = apply_extra_fields(ev.alfacrm, customer, extra, branch_id=ev.branch_id)
        return customer

    def _claim(self, ev: _Event, item: str, step: str) -> Any:
        kwargs: dict[str, Any] = {"now": self.clock()}
        if self.stale_after is not None:
            kwargs["stale_after"] = self.stale_after
        claim = self.texts.claim_step(ev.integration.id, item, step, **kwargs)
        if claim.status == "busy":
            raise ConcurrentUpdate(f"{item}: another worker is writing its {step} right now")
        return claim

    def _create_lead(
        self, ev: _Event, item: str, lead: NewLead, *, search: bool, communication: tuple[int | None, str]
    ) -> Customer:
        claim = self._claim(ev, item, "lead")
        client = ev.alfacrm
        if claim.status == "done":
            found = client.get_customer(int(claim.result), ev.branch_id) if claim.result else None
            if found is not None:
                return found
            raise ConcurrentUpdate(f"{item}: lead {claim.result} recorded but not readable in AlfaCRM yet")
        contact = _contact(lead, ev.region) if search else None
        holding = False  # this worker holds the contact's lead claim
        made_by_other = False  # another event from this contact has just created the lead
        try:
            customer = self._recover_lead(ev, lead, search=search) if claim.retaken else None
            if customer is None and contact is not None:
                # another chat/request of this visitor may be creating its lead right now (parallel batches)
                held = self.texts.claim_contact(ev.integration.id, contact, owner=item, now=self.clock())
                if held.status == "busy":
                    raise ConcurrentUpdate(f"{item}: a lead for this visitor is being created by another event")
                if held.status == "created":
                    customer = self._made_by_other(ev, item, int(held.customer_id or 0), lead)
                    made_by_other = True
                holding = held.status == "claimed"
            created = customer is None
            if customer is None:
                customer = create_lead(client, lead, region=ev.region)
        except Exception as exc:
            error = exc.message if isinstance(exc, ConnectorError) else type(exc).__name__
            self.texts.fail_step(ev.integration.id, item, "lead", error)
            if holding and contact is not None:
                self.texts.release_contact(ev.integration.id, contact, owner=item, now=self.clock())
            raise
        self.texts.finish_step(ev.integration.id, item, "lead", customer.id)
        if holding and contact is not None:
            # kept for a minute with the lead's id: a worker whose search just missed it uses it
            self.texts.release_contact(
                ev.integration.id, contact, owner=item, customer_id=customer.id, now=self.clock()
            )
        if made_by_other:
            return customer
        communication_id, kind = communication
        if communication_id is not None:
            # the deals side puts this exact communication on the first-sale deal of a lead we created
            self.texts.link_customer(ev.integration.id, customer.id, communication_id, kind)
        else:
            # linked by a later event of this chat that names its communication
            self.texts.remember(ev.integration.id, item, {"link_pending": True})
        ev.outcome.lead_created = created
        logger.info(
            "lead created" if created else "lead found after a retried claim",
            extra={"integration_id": ev.integration.id, "customer_id": customer.id, "item": item},
        )
        return customer

    def _made_by_other(self, ev: _Event, item: str, customer_id: int, lead: NewLead) -> Customer:
        """The lead another event of this visitor created a moment ago: an existing customer for this one."""
        found = ev.alfacrm.get_customer(customer_id, ev.branch_id)
        if found is None:
            raise ConcurrentUpdate(f"{item}: lead {customer_id} of this visitor not readable in AlfaCRM yet")
        logger.info(
            "lead made by another event of this visitor",
            extra={"integration_id": ev.integration.id, "customer_id": customer_id, "item": item},
        )
        return apply_extra_fields(ev.alfacrm, found, lead.extra, branch_id=ev.branch_id)

    def _recover_lead(self, ev: _Event, lead: NewLead, *, search: bool) -> Customer | None:
        """An earlier attempt may have created the lead before dying: look before creating again."""
        if search:
            return find_customer(
                ev.alfacrm, branch_id=ev.branch_id, phone=lead.phone, email=lead.email, region=ev.region
            )
        # A visitor without contacts: only the name can find the lead, and a name is shared by strangers
        # (a client "Петров Илья" with his phone). The lead a dead attempt created is a lead with that exact
        # name, no phone, no e-mail and nothing posted on it yet (the comment steps come after the lead):
        # anything else is somebody else's card. Not found → a new lead (duplicates are accepted for
        # visitors without contacts; a transcript on a stranger's card is not).
        client = ev.alfacrm
        for item in client.iter_all(
            "customer",
            {"name": lead.name, "is_study": 2, "removed": 1},
            branch_id=ev.branch_id,
            max_pages=SEARCH_MAX_PAGES,
        ):
            if str(item.get("name") or "").strip() != lead.name:
                continue
            candidate = CustomerModel.model_validate(item)
            if candidate.is_study or candidate.phone or candidate.email:
                continue
            if client.comments(candidate.id, branch_id=customer_branch(candidate, ev.branch_id)):
                continue
            return candidate
        return None

    def _post_once(self, ev: _Event, item: str, step: str, customer_id: int, branch_id: int, parts: list[str]) -> None:
        claim = self._claim(ev, item, step)
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
            error = exc.message if isinstance(exc, ConnectorError) else type(exc).__name__
            self.texts.fail_step(ev.integration.id, item, step, error)
            raise
        self.texts.finish_step(ev.integration.id, item, step, len(parts))


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


def _contact(lead: NewLead, region: str) -> str | None:
    """What one visitor's lead claim is keyed by: the E.164 phone, else the e-mail (the de-duplication order)."""
    if lead.phone and lead.phone.strip():
        e164 = to_e164(lead.phone, region)
        if e164:
            return e164
    if lead.email and lead.email.strip():
        return lead.email.strip().lower()
    if lead.phone and lead.phone.strip():
        return "raw:" + "".join(ch for ch in lead.phone if ch.isdigit())
    return None


def _done(progress: dict[str, Any], step: str) -> bool:
    return (progress.get(f"step_{step}") or {}).get("state") == "done"


def _with_mark(n: Notification, chat: ChatFacts) -> ChatFacts:
    """A mark event's own tag wins over older facts: set → present, unset → absent."""
    tag = n.mark_tag
    if tag is None or n.event not in {"set_mark", "unset_mark"}:
        return chat
    others = [t for t in chat.tags if not _same_tag(t, tag)]
    if n.event == "set_mark":
        known = next((t for t in chat.tags if _same_tag(t, tag)), None)
        others.append(Tag(id=tag.id or (known.id if known else None), name=tag.name or (known.name if known else None)))
    return chat.model_copy(update={"tags": others})


def _same_tag(a: Tag, b: Tag) -> bool:
    return bool((a.id and a.id == b.id) or (a.name and b.name and a.matches(b.name)))


def handle_text_event(
    message: dict[str, Any] | str | bytes,
    *,
    store: Store | None = None,
    clients: ClientFactory | None = None,
) -> Outcome:
    """One text-queue message → its AlfaCRM writes. Raises only retryable errors (the record is retried)."""
    if store is None:
        from connector.store import default_store

        store = default_store()
    if clients is None:
        from connector.ports import default_clients

        clients = default_clients
    return TextWorker(store, clients).handle(message)


__all__ = ["Outcome", "RequestFacts", "TextWorker", "handle_text_event"]
