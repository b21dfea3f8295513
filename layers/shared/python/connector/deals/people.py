"""Who a deal's rows name, made known to UIS before the rows go: the customer's contact and its manager.

- Contacts (`UIS#contact#<ext_id>`: a hash of what UIS was sent): ONE `create.deal_contacts` per ≤1000 new
  ones — all or nothing, and UIS's error names a field (`contacts.emails`), never which contact, so a refused
  batch is halved until the refused ones are alone (refused calls cost no points) — and one
  `update.deal_contacts` per changed one (UIS updates one contact per call, ca_contact/update_deal_contacts).
  A contact UIS lacks goes to the other call once (created earlier with the state lost → update; gone from
  UIS → create). A refused contact is never recorded as synced: it is tried again at the next flush.
- Employees (`UIS#employee#<ext_id>`, written once created): one `create.deal_employees` per manager UIS has
  not got yet (ca_employee/create_deal_employees takes one), so rows can name it by `employee_ext_id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from connector.errors import UisValidationError
from connector.models.deals import DealRecord, contact_ext_id
from connector.models.raw import JsonObject
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.uis import deal_rows
from connector.uis.client import MAX_CONTACTS, UisClient


@dataclass
class ContactSync:
    """What a flush's contact sync left: contacts UIS does not have (their deals go without one) and the
    refusals UIS gave (by contact ext_id; create or update)."""

    absent: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)


def sync_contacts(
    rt: Runtime, integration: Integration, deals: list[DealRecord], *, uis: UisClient, now: datetime
) -> ContactSync:
    """Create new and update changed contacts of these deals' customers."""
    customer_ids = sorted({d.customer_id for d in deals})
    if not customer_ids:
        return ContactSync()
    snaps = rt.store.deals.get_customers(integration.id, customer_ids)
    tz = integration.uis_timezone
    contacts = {
        contact_ext_id(cid): deal_rows.contact_payload(snap, region=integration.phone_region, tz=tz, now=now)
        for cid, snap in snaps.items()
    }
    result = ContactSync(absent={contact_ext_id(c) for c in customer_ids if c not in snaps})
    known = rt.store.deals.contact_hashes(integration.id, contacts)
    queued = {
        True: [c for e, c in contacts.items() if e not in known],
        False: [c for e, c in contacts.items() if e in known and known[e] != deal_rows.contact_hash(c)],
    }
    synced: dict[str, str] = {}
    moved_once: set[str] = set()
    while queued[True] or queued[False]:
        for create in (True, False):
            pending, queued[create] = queued[create], []
            while pending:
                chunk, pending = pending[:MAX_CONTACTS], pending[MAX_CONTACTS:]
                done, moved, refused = _contacts_call(uis, chunk, create=create)
                synced.update({str(c["ext_id"]): deal_rows.contact_hash(c) for c in done})
                result.refused.update(refused)
                if create:
                    result.absent |= set(refused)
                # once only, so a contact UIS bounces between the two calls ends refused, not in a loop
                for contact, why in moved:
                    ext_id = str(contact["ext_id"])
                    if ext_id in moved_once:
                        result.refused[ext_id] = why
                        result.absent.add(ext_id)
                    else:
                        moved_once.add(ext_id)
                        queued[not create].append(contact)
    if synced:
        rt.store.deals.put_contact_hashes(integration.id, synced)
    if result.refused:
        logger.warning("uis refused contacts", extra={"integration_id": integration.id, "count": len(result.refused)})
    return result


def _contacts_call(
    uis: UisClient, contacts: list[JsonObject], *, create: bool
) -> tuple[list[JsonObject], list[tuple[JsonObject, str]], dict[str, str]]:
    """Create these contacts in one call (a refused batch halved until the refused ones are alone), or update
    them one call each. → (synced, to move to the other call with why, refused ext_id → UIS's message)."""
    if not create:
        done: list[JsonObject] = []
        moved: list[tuple[JsonObject, str]] = []
        refused: dict[str, str] = {}
        for contact in contacts:
            try:
                uis.update_deal_contact(contact)
                done.append(contact)
            except UisValidationError as exc:
                if exc.mnemonic == "entity_not_found" and str(exc.field or "") == "ext_id":
                    moved.append((contact, exc.message))  # gone from UIS: create it again
                else:
                    refused[str(contact["ext_id"])] = exc.message
        return done, moved, refused
    try:
        uis.create_deal_contacts(contacts)
        return contacts, [], {}
    except UisValidationError as exc:
        if len(contacts) > 1:
            middle = len(contacts) // 2
            first = _contacts_call(uis, contacts[:middle], create=True)
            second = _contacts_call(uis, contacts[middle:], create=True)
            return first[0] + second[0], first[1] + second[1], {**first[2], **second[2]}
        if exc.mnemonic == "duplicate_entity" and str(exc.field or "").endswith("ext_id"):
            return [], [(contacts[0], exc.message)], {}  # created earlier (sync state lost): update it
        return [], [], {str(contacts[0]["ext_id"]): exc.message}


def sync_employees(
    rt: Runtime, integration: Integration, deals: list[DealRecord], *, uis: UisClient, again: bool = False
) -> set[str]:
    """The managers these deals name, as UIS deal employees: those UIS has, after creating the missing ones
    (`again`: all of them, when UIS refused a row's employee as unknown — deleted in the cabinet).
    One UIS refuses to create is left off its deals' rows (logged), never their reason to fail."""
    wanted = {d.employee_ext_id: d.employee_name or d.employee_ext_id for d in deals if d.employee_ext_id}
    if not wanted:
        return set()
    known = set() if again else rt.store.deals.uis_employees(integration.id, wanted)
    created: list[str] = []
    for ext_id, name in wanted.items():
        if ext_id in known:
            continue
        try:
            uis.create_deal_employee(ext_id, name)
        except UisValidationError as exc:
            if exc.mnemonic != "duplicate_entity":
                logger.warning(
                    "uis refused a deal employee",
                    extra={"integration_id": integration.id, "employee": ext_id, "code": exc.mnemonic},
                )
                continue
        created.append(ext_id)
    if created:
        rt.store.deals.put_uis_employees(integration.id, created)
    return known | set(created)
