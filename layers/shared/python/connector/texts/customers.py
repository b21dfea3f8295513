"""Finding and creating AlfaCRM customers for UIS chats and requests.

De-duplication (architecture.md, "Text rules"): by E.164 phone first, then by e-mail, across leads and
clients, archived included (the client's `find_customers` passes `is_study=2, removed=1` and verifies each
candidate on our side, since AlfaCRM's own phone matching is unknown). `branch_ids` is merged, never
replaced: AlfaCRM's `update` replaces the whole list.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.alfacrm.client import AlfaCrmClient
from connector.alfacrm.models import Customer
from connector.errors import AlfaCrmError
from connector.memo import Memo
from connector.models.lookups import PhoneSearch
from connector.observability import logger
from connector.phones import to_e164
from connector.runtime import Runtime
from connector.settings import LeadDefaults
from connector.store.accounts import AccountStore
from connector.texts.rules import FieldValue, fields_for_existing, fields_for_new_lead


def _pick(found: list[Customer]) -> Customer | None:
    """Several matches: the active one before the archived, then the oldest (the first the school knew)."""
    if not found:
        return None
    return sorted(found, key=lambda c: (c.is_archived, c.id))[0]


class PhoneSpellings:
    """What phone searches taught about an AlfaCRM account (`PhoneSearch`: the spelling it stores), beyond one
    client: kept per account in the store and in the runtime's memory, so a cold container searches with the
    account's spelling at once. A client that knows nothing yet starts from the memory, else from one store
    read (once per container and account); a search that taught something new writes it back (rarely: once
    the spelling is known it stays)."""

    def __init__(self, accounts: AccountStore, memory: Memo[tuple[str, str], PhoneSearch]) -> None:
        self.accounts = accounts
        self.memory = memory

    @classmethod
    def of(cls, rt: Runtime) -> PhoneSpellings:
        return cls(rt.store.accounts, rt.caches.phone_searches)

    def find(self, client: AlfaCrmClient, *, branch_id: int, phone: str, region: str) -> list[Customer]:
        before = self._known(client)
        found = client.find_customers(branch_id=branch_id, phone=phone, region=region)
        self._keep(client, before)
        return found

    def probe(self, client: AlfaCrmClient, created: Customer, *, branch_id: int, region: str) -> None:
        """After creating a lead with a phone: learn the account's matching from it, once per account (one
        search), so that every later new visitor costs one search instead of one per spelling."""
        before = self._known(client)
        if before.substring or before.probed:
            return
        try:
            client.probe_phone_matching(created, branch_id=branch_id, region=region)
        except AlfaCrmError as exc:
            # the lead is made; an unanswered probe only means the spellings stay (the next lead probes again)
            logger.warning("phone matching probe failed", extra={"code": exc.code})
            return
        self._keep(client, before)

    def _known(self, client: AlfaCrmClient) -> PhoneSearch:
        if client.phone_search is None:
            known = self.memory.get(client.account)
            if known is None:
                known = self.accounts.phone_search(client.account) or PhoneSearch()
                self.memory.put(client.account, known)
            client.remember_phone_search(known)
        return client.phone_search or PhoneSearch()

    def _keep(self, client: AlfaCrmClient, before: PhoneSearch) -> None:
        learned = client.phone_search
        if learned is not None and learned != before:
            self.accounts.put_phone_search(client.account, learned)
            self.memory.put(client.account, learned)


def find_customer(
    client: AlfaCrmClient,
    spellings: PhoneSpellings,
    *,
    branch_id: int,
    phone: str | None,
    email: str | None,
    region: str = "RU",
) -> Customer | None:
    """The customer (lead or client, archived included) with this phone, else with this e-mail.

    `+7(916)123-45-67`, `89161234567` and `+79161234567` are the same number (compared as E.164); the phone
    search starts from the spelling the account is known to store (`PhoneSpellings`).
    """
    if phone and phone.strip():
        found = _pick(spellings.find(client, branch_id=branch_id, phone=phone, region=region))
        if found is not None:
            return found
    if email and email.strip():
        return _pick(client.find_customers(branch_id=branch_id, email=email.strip(), region=region))
    return None


@dataclass(frozen=True)
class NewLead:
    """What a new lead is made of (before the account's extra fields)."""

    name: str
    phone: str | None
    email: str | None
    branch_id: int
    defaults: LeadDefaults
    extra: tuple[FieldValue, ...] = ()

    def fields(self, region: str = "RU") -> dict[str, object]:
        """The `customer/create` body: a lead (`is_study` 0), a person (`legal_type` 1), in the branch."""
        fields = fields_for_new_lead(self.extra)
        mapped_branches = [b for b in fields.ids.get("branch_ids", []) if b != self.branch_id]
        fields.ids["branch_ids"] = [self.branch_id, *mapped_branches]
        fields.values.update({"name": self.name, "is_study": 0, "legal_type": 1})
        if self.phone:
            phones = [to_e164(self.phone, region) or self.phone.strip()]
            mapped = fields.lists.get("phone", [])
            fields.lists["phone"] = phones + [p for p in mapped if to_e164(p, region) not in phones]
        if self.email:
            wanted = self.email.strip()
            mapped = fields.lists.get("email", [])
            fields.lists["email"] = [wanted] + [e for e in mapped if e.lower() != wanted.lower()]
        for name in ("lead_status_id", "lead_source_id", "assigned_id"):
            value = getattr(self.defaults, name)
            if value is not None:
                fields.values[name] = value
        return fields.body()


def create_lead(client: AlfaCrmClient, lead: NewLead, *, region: str = "RU") -> Customer:
    """Create the lead; an AlfaCRM 200-with-errors reply raises AlfaCrmValidationError with AlfaCRM's words."""
    return client.create_customer(lead.fields(region), lead.branch_id)


def current_values(customer: Customer) -> dict[str, object]:
    """The customer's fields by AlfaCRM name (custom ones as `custom_<code>`), to judge "empty"."""
    values: dict[str, object] = customer.model_dump(exclude={"custom"})
    values.update(customer.model_extra or {})
    values.update({(k if k.startswith("custom_") else f"custom_{k}"): v for k, v in customer.custom.items()})
    return values


def apply_extra_fields(
    client: AlfaCrmClient, customer: Customer, extra: tuple[FieldValue, ...] | list[FieldValue], *, branch_id: int
) -> Customer:
    """Write mapped fields on an existing customer: only `update_always` ones or those still empty.

    No call when nothing changes. The update goes through the customer's own branch when it is not in
    ours (AlfaCRM addresses a record through a branch it belongs to).
    """
    updates = fields_for_existing(extra, current_values(customer))
    if not updates:
        return customer
    return client.update_customer(customer.id, updates, customer_branch(customer, branch_id))


def customer_branch(customer: Customer, branch_id: int) -> int:
    """The branch to address this customer through: ours when it belongs to it, else its first one."""
    if not customer.branch_ids or branch_id in customer.branch_ids:
        return branch_id
    return customer.branch_ids[0]
