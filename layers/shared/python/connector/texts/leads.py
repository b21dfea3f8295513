"""Creating a chat's or request's AlfaCRM lead exactly once, however many deliveries and workers race.

The claim protocol, in the order `LeadCreator.create` runs it:
1. the communication's `lead` step (`CHAT#<id>` / `REQ#<key>`, `TextStore.claim_step`): busy → retry later;
   done → the lead it recorded; a claim taken over from a dead attempt (which may have created the lead)
   → look for that lead in AlfaCRM first;
2. the visitor's contact claim (`LEADCLAIM#<salted hash of the E.164 phone, else the e-mail>`, a minute):
   two chats, or a chat and a request, of one visitor are different items and could both miss the
   customer; busy → retry later; created → the lead another event has just made is this one's customer;
3. create; finish the step with the lead's id and release the contact claim with it (a worker whose search
   ran just before that lead existed uses it instead of making a second); link the UIS communication to
   the lead (`CUSTCOMM#`) so its first-sale deal carries it — or, when UIS has not named it yet (a Chat API
   start), note `link_pending` for a later event of the chat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from connector.alfacrm import client as alfacrm_client
from connector.alfacrm.client import SEARCH_MAX_PAGES, AlfaCrmClient
from connector.alfacrm.models import Customer
from connector.errors import ConcurrentUpdate, ConnectorError
from connector.models.raw import JsonValue
from connector.models.texts import ChatProgress, CustomerLink, RequestProgress
from connector.observability import logger
from connector.phones import to_e164
from connector.store.texts import StepClaim, TextStore
from connector.texts.customers import (
    NewLead,
    PhoneSpellings,
    apply_extra_fields,
    create_lead,
    customer_branch,
    find_customer,
)

CommunicationType = Literal["chat", "offline_message"]


class StepClaims:
    """One integration's claimed AlfaCRM writes: claimed before the call, finished (or failed) after it."""

    def __init__(
        self, texts: TextStore, integration_id: str, *, clock: Callable[[], float], stale_after: float | None
    ) -> None:
        self.texts = texts
        self.integration_id = integration_id
        self.clock = clock
        self.stale_after = stale_after

    def claim(self, item: str, step: str) -> StepClaim:
        """Claimed (possibly `retaken`) or done; busy is a retry later (ConcurrentUpdate)."""
        if self.stale_after is None:
            claim = self.texts.claim_step(self.integration_id, item, step, now=self.clock())
        else:
            claim = self.texts.claim_step(
                self.integration_id, item, step, now=self.clock(), stale_after=self.stale_after
            )
        if claim.status == "busy":
            raise ConcurrentUpdate(f"{item}: another worker is writing its {step} right now")
        return claim

    def finish(
        self, item: str, step: str, result: JsonValue, *, progress: ChatProgress | RequestProgress | None = None
    ) -> None:
        self.texts.finish_step(self.integration_id, item, step, result, progress=progress)

    def fail(self, item: str, step: str, exc: Exception) -> None:
        """Another attempt may claim the step at once, except after a write whose answer was lost: AlfaCRM may
        still be carrying it out (PHP goes on after the gateway's 504 or our read timeout), and a read-back
        made now would miss it and write it twice, so the step waits one read timeout first."""
        error = exc.message if isinstance(exc, ConnectorError) else type(exc).__name__
        settle = alfacrm_client.landing_window(exc)
        self.texts.fail_step(self.integration_id, item, step, error, now=self.clock(), settle=settle)


# what the communication's progress item records about its customer, written with the finished lead step
Recording = Callable[[Customer], ChatProgress | RequestProgress]


@dataclass(frozen=True)
class LeadMade:
    customer: Customer
    created: bool  # a new lead (not one an earlier attempt or another event of this visitor made)
    recorded: bool  # `record`'s fields went into the progress item with the lead step


class LeadCreator:
    """The lead of one chat or request (the module doc's protocol), in the integration's branch."""

    def __init__(
        self, claims: StepClaims, alfacrm: AlfaCrmClient, spellings: PhoneSpellings, *, branch_id: int, region: str
    ) -> None:
        self.claims = claims
        self.texts = claims.texts
        self.integration_id = claims.integration_id
        self.alfacrm = alfacrm
        self.spellings = spellings
        self.branch_id = branch_id
        self.region = region

    def create(
        self,
        item: str,
        lead: NewLead,
        *,
        search: bool,
        communication: tuple[int | None, CommunicationType],
        record: Recording | None = None,
    ) -> LeadMade:
        claim = self.claims.claim(item, "lead")
        if claim.status == "done":
            found = self.alfacrm.get_customer(int(str(claim.result)), self.branch_id) if claim.result else None
            if found is None:
                raise ConcurrentUpdate(f"{item}: lead {claim.result} recorded but not readable in AlfaCRM yet")
            return LeadMade(found, created=False, recorded=False)
        contact = visitor_contact(lead, self.region) if search else None
        holding = False  # this worker holds the contact's lead claim
        made: Customer | None = None  # the lead another event of this visitor has just created
        try:
            customer = self._recover(lead, search=search) if claim.retaken else None
            if customer is None and contact is not None:
                holding, made = self._claim_contact(item, contact, lead)
            created = customer is None and made is None
            customer = customer or made or create_lead(self.alfacrm, lead, region=self.region)
        except Exception as exc:
            self.claims.fail(item, "lead", exc)
            if holding and contact is not None:
                self.texts.release_contact(self.integration_id, contact, owner=item, now=self.claims.clock())
            raise
        self._done(item, customer, contact if holding else None, record)
        if made is not None:
            return LeadMade(made, created=False, recorded=record is not None)
        self._link(item, customer, communication)
        if created and lead.phone:
            self.spellings.probe(self.alfacrm, customer, branch_id=self.branch_id, region=self.region)
        logger.info(
            "lead created" if created else "lead found after a retried claim",
            extra={"integration_id": self.integration_id, "customer_id": customer.id, "item": item},
        )
        return LeadMade(customer, created=created, recorded=record is not None)

    def _claim_contact(self, item: str, contact: str, lead: NewLead) -> tuple[bool, Customer | None]:
        """Another chat/request of this visitor may be creating its lead right now (parallel batches):
        → (whether this worker now holds the visitor's claim, the lead another event has just made)."""
        held = self.texts.claim_contact(self.integration_id, contact, owner=item, now=self.claims.clock())
        if held.status == "busy":
            raise ConcurrentUpdate(f"{item}: a lead for this visitor is being created by another event")
        if held.status == "created":
            return False, self._made_by_other(item, int(held.customer_id or 0), lead)
        return True, None

    def _done(self, item: str, customer: Customer, held_contact: str | None, record: Recording | None) -> None:
        self.claims.finish(item, "lead", customer.id, progress=record(customer) if record else None)
        if held_contact is not None:
            # kept for a minute with the lead's id: a worker whose search just missed it uses it
            self.texts.release_contact(
                self.integration_id, held_contact, owner=item, customer_id=customer.id, now=self.claims.clock()
            )

    def _link(self, item: str, customer: Customer, communication: tuple[int | None, CommunicationType]) -> None:
        communication_id, kind = communication
        if communication_id is not None:
            # the deals side puts this exact communication on the first-sale deal of a lead we created
            link = CustomerLink(communication_id=communication_id, communication_type=kind)
            self.texts.link_customer(self.integration_id, customer.id, link)
        else:
            # linked by a later event of this chat that names its communication
            self.texts.remember(self.integration_id, item, ChatProgress(link_pending=True))

    def _made_by_other(self, item: str, customer_id: int, lead: NewLead) -> Customer:
        """The lead another event of this visitor created a moment ago: an existing customer for this one."""
        found = self.alfacrm.get_customer(customer_id, self.branch_id)
        if found is None:
            raise ConcurrentUpdate(f"{item}: lead {customer_id} of this visitor not readable in AlfaCRM yet")
        logger.info(
            "lead made by another event of this visitor",
            extra={"integration_id": self.integration_id, "customer_id": customer_id, "item": item},
        )
        return apply_extra_fields(self.alfacrm, found, lead.extra, branch_id=self.branch_id)

    def _recover(self, lead: NewLead, *, search: bool) -> Customer | None:
        """An earlier attempt may have created the lead before dying: look before creating again."""
        if search:
            return find_customer(
                self.alfacrm,
                self.spellings,
                branch_id=self.branch_id,
                phone=lead.phone,
                email=lead.email,
                region=self.region,
            )
        # A visitor without contacts: only the name can find the lead, and a name is shared by strangers
        # (a client "Петров Илья" with his phone). The lead a dead attempt created is a lead with that exact
        # name, no phone, no e-mail and nothing posted on it yet (the comment steps come after the lead):
        # anything else is somebody else's card. Not found → a new lead (duplicates are accepted for
        # visitors without contacts; a transcript on a stranger's card is not).
        for record in self.alfacrm.iter_all(
            "customer",
            {"name": lead.name, "is_study": 2, "removed": 1},
            branch_id=self.branch_id,
            max_pages=SEARCH_MAX_PAGES,
        ):
            if str(record.get("name") or "").strip() != lead.name:
                continue
            candidate = Customer.model_validate(record)
            if candidate.is_study or candidate.phone or candidate.email:
                continue
            if self.alfacrm.comments(candidate.id, branch_id=customer_branch(candidate, self.branch_id)):
                continue
            return candidate
        return None


def visitor_contact(lead: NewLead, region: str) -> str | None:
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
