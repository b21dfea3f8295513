"""Deal drafts and records: a customer snapshot → its deals (`derive_deals`), a draft → the stored deal
(`apply_draft`), and what UIS still lacks of it. Pure.

- `derive_deals`: the customer's first-sale deal and (when upsells are on) one upsell deal per payment after
  the first. The first payment (earliest `document_date`, then lowest id, among non-deleted payments) is
  the first sale's revenue; every payment ordered after it is an upsell deal — deleted ones end "cancelled".
  Only revenue counts: a positive payment, and — when `deals.upsell.pay_item_ids` names pay items — one of
  those items (a goods sale or a refund item is neither the first sale's revenue nor an upsell; a payment
  whose item is not known yet counts, as before the setting existed).
- `apply_draft`: rows UIS already has are frozen, times never go backwards, and a deal is pending when UIS
  lacks a transition or a changed value (`needs_upload`); `rows_to_send` says which rows.
- `orphan`: an upsell whose payment stopped being one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from connector.deals.paths import customer_path, merge_history, pay_path
from connector.deals.snapshots import is_deal_payment
from connector.models.deals import (
    FIELD_BRANCH,
    FIELD_TEACHER,
    FIRST_SALE,
    UPSELL,
    UPSELL_CANCELLED,
    CustomerSnapshot,
    DealDraft,
    DealRecord,
    DealUpload,
    PayInfo,
    Step,
    contact_ext_id,
    employee_ext_id,
    first_sale_ext_id,
    upsell_ext_id,
)
from connector.settings import DealsSettings
from connector.uis.deal_rows import money

if TYPE_CHECKING:
    from connector.models.texts import CustomerLink


@dataclass(frozen=True)
class Directory:
    """Names for ids, from the cached AlfaCRM look-ups."""

    teachers: Mapping[int, str] = field(default_factory=dict)
    branches: Mapping[int, str] = field(default_factory=dict)
    users: Mapping[int, str] = field(default_factory=dict)
    sources: Mapping[int, str] = field(default_factory=dict)

    def teacher_names(self, ids: Iterable[int]) -> str:
        return ", ".join(self.teachers.get(i, f"#{i}") for i in ids)

    def branch_names(self, ids: Iterable[int]) -> str:
        return ", ".join(self.branches.get(i, f"#{i}") for i in ids)

    def people(self, snap: CustomerSnapshot) -> dict[str, str]:
        """The draft fields naming the customer's manager (as a UIS deal employee) and its lead source."""
        out: dict[str, str] = {}
        if snap.assigned_id is not None:
            out["employee_ext_id"] = employee_ext_id(snap.assigned_id)
            out["employee_name"] = self.users.get(snap.assigned_id) or f"Сотрудник #{snap.assigned_id}"
        source = self.sources.get(snap.lead_source_id) if snap.lead_source_id is not None else None
        if source:
            out["source"] = source
        return out


def _pay_order(pay: PayInfo) -> tuple[str, int]:
    return pay.document_date or "9999-12-31", pay.id


def first_payment(snap: CustomerSnapshot, settings: DealsSettings) -> PayInfo | None:
    live = [p for p in deal_payments(snap, settings) if not p.removed_at]
    return min(live, key=_pay_order) if live else None


def deal_payments(snap: CustomerSnapshot, settings: DealsSettings) -> list[PayInfo]:
    """The customer's payments that are revenue (positive, of a chosen pay item when the settings name any)."""
    items = set(settings.upsell.pay_item_ids)
    return [
        p
        for p in snap.pays.values()
        if p.customer_id == snap.customer_id
        and is_deal_payment(p)
        and (not items or p.pay_item_id is None or p.pay_item_id in items)
    ]


def contact_sig(snap: CustomerSnapshot) -> str:
    """The customer's phones and e-mails as AlfaCRM holds them: when they change, the first-sale deal becomes
    pending so the uploader replaces the UIS contact's lists (the name is the deal's name already)."""
    raw = json.dumps([list(snap.phones), list(snap.emails)], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _fields(teacher: str, branch: str) -> dict[str, str]:
    return {name: value for name, value in ((FIELD_TEACHER, teacher), (FIELD_BRANCH, branch)) if value}


def derive_deals(
    snap: CustomerSnapshot,
    settings: DealsSettings,
    directory: Directory,
    link: CustomerLink | None = None,
) -> list[DealDraft]:
    """The customer's first-sale deal and (when enabled) one upsell deal per payment after the first."""
    first = first_payment(snap, settings)
    drafts = [_first_sale(snap, settings, directory, first, link)]
    if settings.upsell.enabled and first is not None:
        # the first payment itself, and deleted ones ordered before it, are no upsells
        later = [p for p in sorted(deal_payments(snap, settings), key=_pay_order) if _pay_order(p) > _pay_order(first)]
        drafts += [_upsell(snap, pay, directory) for pay in later]
    return drafts


def _first_sale(
    snap: CustomerSnapshot,
    settings: DealsSettings,
    directory: Directory,
    first: PayInfo | None,
    link: CustomerLink | None,
) -> DealDraft:
    path = customer_path(snap, settings)
    return DealDraft(
        funnel=FIRST_SALE,
        ext_id=first_sale_ext_id(snap.customer_id),
        customer_id=snap.customer_id,
        pay_id=None,
        name=snap.display_name,
        created_at=path[0].at,
        path=path,
        revenue=first.income if first else None,
        contact_ext_id=contact_ext_id(snap.customer_id),
        communication_id=link.communication_id if link else None,
        communication_type=link.communication_type if link else None,
        user_fields=_fields(directory.teacher_names(snap.teacher_ids), directory.branch_names(snap.branch_ids)),
        contact_sig=contact_sig(snap),
    ).model_copy(update=directory.people(snap))


def _upsell(snap: CustomerSnapshot, pay: PayInfo, directory: Directory) -> DealDraft:
    """A payment after the first; its teacher and branch, else the customer's."""
    steps = pay_path(pay)
    teacher = directory.teacher_names([pay.teacher_id] if pay.teacher_id else snap.teacher_ids)
    branch = directory.branch_names([pay.branch_id] if pay.branch_id else snap.branch_ids)
    return DealDraft(
        funnel=UPSELL,
        ext_id=upsell_ext_id(pay.id),
        customer_id=snap.customer_id,
        pay_id=pay.id,
        name=f"Оплата №{pay.id} — {snap.display_name}",
        created_at=steps[0].at,
        path=steps,
        revenue=pay.income,
        contact_ext_id=contact_ext_id(snap.customer_id),
        user_fields=_fields(teacher, branch),
    ).model_copy(update=directory.people(snap))


# --- deal records -------------------------------------------------------------------------------------
def signature(deal: DealRecord, *, with_contact: bool = True) -> str:
    """What UIS shows besides the stage: a change here re-sends the current stage's row. Rows sent without
    their contact (UIS refused to create it) sign without it, so the row goes again once the contact exists."""
    shown: list[object] = [
        deal.name,
        deal.created_at,
        money(deal.revenue),
        deal.contact_ext_id if with_contact else None,
        deal.communication_id,
        deal.communication_type,
        sorted(deal.user_fields.items()),
    ]
    if deal.employee_ext_id or deal.source:
        # only when present: deals stored before these fields keep their signature (no mass re-send)
        shown += [deal.employee_ext_id, deal.source]
    raw = json.dumps(shown, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def history(deal: DealRecord) -> list[Step]:
    return merge_history(deal.uploaded, deal.path)


def needs_upload(deal: DealRecord) -> bool:
    return needs_rows(deal) or contact_changed(deal)


def needs_rows(deal: DealRecord) -> bool:
    """UIS lacks a transition or a value its rows carry."""
    return len(history(deal)) > len(deal.uploaded) or signature(deal) != deal.uploaded_sig


def contact_changed(deal: DealRecord) -> bool:
    """The customer's phones or e-mails changed since the last upload: the contact (not the deal's rows) is due."""
    return deal.contact_sig is not None and deal.contact_sig != deal.uploaded_contact_sig


def _content(deal: DealRecord) -> tuple[object, ...]:
    return (
        [s.model_dump() for s in deal.path],
        deal.name,
        deal.created_at,
        money(deal.revenue),
        deal.contact_ext_id,
        deal.communication_id,
        deal.communication_type,
        sorted(deal.user_fields.items()),
        deal.customer_id,
        deal.contact_sig,
        deal.employee_ext_id,
        deal.employee_name,
        deal.source,
    )


def apply_draft(existing: DealRecord | None, draft: DealDraft, *, at: str, source_version: int) -> DealRecord | None:
    """The stored deal updated by a draft, or None when nothing changes (a repeated delivery)."""
    created = draft.created_at
    if existing is not None and existing.uploaded:
        # UIS knows the deal's creation time already; never move it after its first row
        created = min(existing.created_at, existing.uploaded[0].at)
    if existing is not None:
        upload = existing.upload.model_copy(update={"source_version": max(source_version, existing.source_version)})
    else:
        upload = DealUpload(modified_at=max(at, draft.path[-1].at), source_version=source_version)
    updated = DealRecord.of(draft.model_copy(update={"created_at": created}), upload)
    if existing is not None:
        if _content(existing) == _content(updated):
            return None
        if signature(existing) != signature(updated):
            # modified_date_time moves forward only
            updated.modified_at = max(existing.modified_at, at, updated.path[-1].at)
    updated.modified_at = max(updated.modified_at, history(updated)[-1].at)
    if needs_upload(updated):
        updated.upload_state = "pending"
    return updated


def orphan(deal: DealRecord, *, at: str) -> tuple[str, DealRecord]:
    """An upsell deal whose payment is no longer an upsell (it became the first, or stopped being a deal).

    → ("delete", deal) when UIS never received it; ("keep", deal) when it already ends cancelled;
    ("update", deal ending cancelled) otherwise.
    """
    if not deal.uploaded:
        return "delete", deal
    if deal.path and deal.path[-1].stage == UPSELL_CANCELLED:
        return "keep", deal
    updated = deal.model_copy(deep=True)
    updated.path = [*deal.path, Step(stage=UPSELL_CANCELLED, at=max(at, deal.path[-1].at if deal.path else at))]
    updated.modified_at = max(deal.modified_at, updated.path[-1].at)
    updated.upload_state = "pending"
    return "update", updated


def rows_to_send(deal: DealRecord, *, force: bool = False) -> list[Step]:
    """The transitions UIS has not received; or, for a change that does not move the stage (or a forced
    re-send), the current stage again with its original time."""
    steps = history(deal)
    new = steps[len(deal.uploaded) :]
    if not new and (force or signature(deal) != deal.uploaded_sig):
        new = steps[-1:]
    return new
