"""What a flush records on a deal about UIS: uploaded, parked, in doubt, or to be retried later.

Every mark is a conditional write on the deal's version; on a lost race the deal is read again and the mark
decided on the fresh copy, so a change the worker made during the upload stays pending.
"""

from __future__ import annotations

from collections.abc import Mapping

from connector.deals import drafts
from connector.models.deals import UPSELL, DealRecord, DealRef, SentUpload
from connector.models.parked import ParkedItem
from connector.observability import logger
from connector.runtime import Runtime
from connector.settings import Integration
from connector.store.base import on_conflict

WRITE_ATTEMPTS = 6
# flushes in a row whose contact UIS refuses before the deal is parked with UIS's message
CONTACT_ATTEMPTS = 3


def _key(deal: DealRecord) -> str:
    return f"{deal.funnel}#{deal.ext_id}"


def mark_uploaded(rt: Runtime, integration: Integration, deal: DealRecord, sent: SentUpload) -> None:
    """Record what UIS now has; stay pending if the deal changed since it was read.

    A contact UIS refused is not recorded as synced: the deal stays pending with UIS's message (the next
    flush tries the contact again) and is parked after `CONTACT_ATTEMPTS` flushes in a row.
    The worker deletes an upsell deal UIS never received when its payment stops being an upsell; if that
    happened while this upload carried the deal, UIS has it now: it is kept and taken to "cancelled".
    """

    def step(attempt: int) -> DealRecord | None:
        base, gone = deal, False
        if attempt:
            fresh = rt.store.deals.get_deal(integration.id, deal.funnel, deal.ext_id)
            if fresh is None and deal.funnel != UPSELL:
                return None
            gone, base = fresh is None, fresh or deal
        refused = sent.contact_error is not None and base.contact_sig is not None
        updated = base.model_copy(
            update={
                "uploaded": list(sent.uploaded),
                "uploaded_sig": sent.sig,
                "uploaded_contact_sig": base.uploaded_contact_sig if refused else sent.contact_sig,
                "upload_error": sent.contact_error if refused else None,
                "contact_failures": base.contact_failures + 1 if refused else 0,
                "in_doubt": None,
                "retry_at": None,
            }
        )
        if refused and updated.contact_failures >= CONTACT_ATTEMPTS:
            updated.upload_state = "parked"
        else:
            updated.upload_state = "pending" if drafts.needs_upload(updated) else "uploaded"
        if gone:
            _, updated = drafts.orphan(updated, at=sent.at or updated.modified_at)
            updated.version = 0  # re-created: only if the worker has not written it again meanwhile
        return rt.store.deals.save_deal(integration.id, updated)

    saved = on_conflict(step, attempts=WRITE_ATTEMPTS, what=f"deal {_key(deal)} (marked uploaded)")
    if saved is None:
        return
    if saved.upload_state == "parked":
        _parked(rt, integration, saved, saved.upload_error or "", "uis_contact_refused")
    elif saved.upload_error is None and deal.upload_error is not None:
        rt.store.integrations.unpark(integration.id, "deal", _key(deal))


def park(rt: Runtime, integration: Integration, deal: DealRecord, error: str, code: str) -> None:
    """The deal leaves the upload queue with UIS's message, visible and replayable (`mark_pending`)."""
    update = {"upload_state": "parked", "upload_error": error, "in_doubt": None, "retry_at": None}
    if _update(rt, integration, deal, update, "parked"):
        _parked(rt, integration, deal, error, code)


def mark_in_doubt(rt: Runtime, integration: Integration, deal: DealRecord, sent: SentUpload) -> None:
    """The upload carrying the deal was sent and its answer lost: the next flush reads back what UIS holds."""
    _update(rt, integration, deal, {"in_doubt": sent}, "in doubt")


def mark_not_held(rt: Runtime, integration: Integration, deal: DealRecord) -> None:
    """The read-back found UIS without the upload: the rows are still to send."""
    _update(rt, integration, deal, {"in_doubt": None}, "read back")


def retry_later(rt: Runtime, integration: Integration, deal: DealRecord, error: str, at: str) -> None:
    """UIS refused the deal for now (a time "in the future" to its clock): pending, not sent before `at`."""
    _update(rt, integration, deal, {"upload_error": error, "retry_at": at}, "retried later")
    logger.warning("deal upload postponed", extra={"integration_id": integration.id, "deal": _key(deal)})


def _update(rt: Runtime, integration: Integration, deal: DealRecord, update: Mapping[str, object], what: str) -> bool:
    def step(attempt: int) -> bool:
        read = rt.store.deals.get_deal(integration.id, deal.funnel, deal.ext_id) if attempt else deal
        if read is None:
            return False
        rt.store.deals.save_deal(integration.id, read.model_copy(update=dict(update)))
        return True

    return on_conflict(step, attempts=WRITE_ATTEMPTS, what=f"deal {_key(deal)} ({what})")


def _parked(rt: Runtime, integration: Integration, deal: DealRecord, error: str, code: str) -> None:
    payload = DealRef(funnel=deal.funnel, ext_id=deal.ext_id).model_dump(mode="json")
    parked = ParkedItem(kind="deal", key=_key(deal), payload=payload, error=error, code=code)
    rt.store.integrations.park(integration.id, parked)
    logger.warning("deal parked", extra={"integration_id": integration.id, "deal": _key(deal), "code": code})
    rt.events.record(integration.id, source="uploader", kind="deal", key=_key(deal), outcome="parked", reason=error)
