"""What the deals side keeps in DynamoDB, as typed models (the store (de)serialises them, rules compute them),
and the names UIS sees (funnels, stages, user fields, ext ids).

Times are UTC ISO strings (`2025-03-03T07:00:00Z`, second precision), so they sort as text and survive
DynamoDB unchanged; money is a decimal string (`"4500.00"`), never a float.

- `CustomerSnapshot` (`CUST#<id>`): everything one AlfaCRM customer's deals are derived from — the facts
  the webhooks reported (with AlfaCRM's times), the last re-read, and a summary of the customer's payments.
- `DealDraft`: one UIS deal as the rules compute it from a snapshot (stage path, name, revenue, contact…).
- `DealRecord` (`DEAL#<funnel>#<ext_id>`): a draft plus its upload state (`DealUpload`: the rows UIS has
  already received, the signatures of what it was sent, pending/uploaded/parked).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# --- names UIS sees ---------------------------------------------------------------------------------
FIRST_SALE = "first_sale"
UPSELL = "upsell"
FUNNELS = (FIRST_SALE, UPSELL)
FUNNEL_NAMES = {FIRST_SALE: "Первая продажа", UPSELL: "Допродажи"}

NO_STATUS = "no_status"
SUCCESS = "success"
FAILED = "failed"
UPSELL_NEW = "new"
UPSELL_PAID = "paid"
UPSELL_CANCELLED = "cancelled"
# the closing stage of each funnel → its UIS stage status
CLOSING = {
    FIRST_SALE: {SUCCESS: "success", FAILED: "failed"},
    UPSELL: {UPSELL_PAID: "success", UPSELL_CANCELLED: "failed"},
}

FIELD_TEACHER = "teacher"
FIELD_BRANCH = "branch"
USER_FIELDS = {FIELD_TEACHER: "Учитель", FIELD_BRANCH: "Филиал"}


def first_sale_ext_id(customer_id: int) -> str:
    return f"customer-{customer_id}"


def upsell_ext_id(pay_id: int) -> str:
    return f"pay-{pay_id}"


def contact_ext_id(customer_id: int) -> str:
    return f"customer-{customer_id}"


def employee_ext_id(user_id: int) -> str:
    """The UIS deal employee (create.deal_employees) of an AlfaCRM user, a customer's `assigned_id`."""
    return f"user-{user_id}"


FactKind = Literal["new", "old"]
UploadState = Literal["pending", "uploaded", "parked"]
# a tracked customer field's value: `is_study` and `removed` are booleans, `lead_status_id` an id
TrackedValue = bool | int | None


class _State(BaseModel):
    # validators built at first use (`defer_build`, as AlfaModel): the admin API loads these for a few routes
    model_config = ConfigDict(extra="ignore", defer_build=True)


class Fact(_State):
    """A tracked field's value as one AlfaCRM event reported it.

    `new`: the field became `value` at `at` (from `fields_new`); `old`: it was `value` just before `at`
    (from `fields_old`). Facts are a set: the same delivery twice adds nothing, and any delivery order
    yields the same set — which is what makes shuffled deliveries converge.
    """

    at: str
    value: TrackedValue = None
    kind: FactKind = "new"


class Step(_State):
    """One stage transition: the deal entered `stage` at `at` (UTC ISO)."""

    stage: str
    at: str


class PayInfo(_State):
    """A payment, as far as deals care."""

    id: int
    customer_id: int | None = None
    income: str = "0"
    document_date: str | None = None  # ISO date
    teacher_id: int | None = None
    branch_id: int | None = None
    pay_item_id: int | None = None  # the AlfaCRM income item (tuition, goods…): `deals.upsell.pay_item_ids`
    confirmed: bool | None = None
    created_at: str  # the earliest AlfaCRM event time seen for this payment (its creation, normally)
    confirmed_at: str | None = None  # the earliest event that reported it confirmed
    deleted_at: str | None = None  # the delete event's time
    # older versions set this when a re-read found nothing; no longer set (an empty read is not a deletion),
    # kept so stored snapshots read the same until a re-read that finds the payment clears it
    gone_at: str | None = None
    income_at: str | None = None  # when the income last changed (an edit re-sends the revenue)
    read_at: str | None = None
    fields_at: dict[str, str] = Field(default_factory=dict)  # when each value was learnt (see rules)
    seen: list[str] = Field(default_factory=list)

    @property
    def removed_at(self) -> str | None:
        return self.deleted_at or self.gone_at


class CustomerSnapshot(_State):
    customer_id: int
    facts: dict[str, list[Fact]] = Field(default_factory=dict)
    # the last re-read of the tracked fields and when (wall clock, UTC) it was made
    current: dict[str, TrackedValue] = Field(default_factory=dict)
    # which tracked fields the re-read told (DynamoDB drops None map values, so `current` alone cannot say)
    current_keys: list[str] = Field(default_factory=list)
    read_at: str | None = None
    name: str | None = None
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    teacher_ids: list[int] = Field(default_factory=list)
    branch_ids: list[int] = Field(default_factory=list)
    assigned_id: int | None = None  # the responsible manager (an AlfaCRM user)
    lead_source_id: int | None = None
    created_at: str | None = None  # AlfaCRM's `created_at`, converted to UTC
    first_seen_at: str
    deleted_at: str | None = None
    seen: list[str] = Field(default_factory=list)  # event keys, for the reconciler's "already seen?"
    pays: dict[str, PayInfo] = Field(default_factory=dict)
    version: int = 0

    @property
    def display_name(self) -> str:
        """The name UIS shows for the customer's deals and contact."""
        return (self.name or "").strip() or f"Клиент {self.customer_id}"


class DealDraft(_State):
    """A deal as the rules compute it from the customer snapshot: what UIS should show."""

    funnel: str
    ext_id: str
    customer_id: int
    pay_id: int | None = None
    name: str
    created_at: str
    path: list[Step]  # computed from the snapshot, before merging with what UIS already has
    revenue: str | None = None
    contact_ext_id: str
    communication_id: int | None = None
    communication_type: str | None = None
    user_fields: dict[str, str] = Field(default_factory=dict)
    contact_sig: str | None = None  # first sale: the customer's phones/e-mails (a change re-syncs the contact)
    # the customer's responsible manager as a UIS deal employee, and its lead source's name (UIS's analysis by
    # employee and by source); the name is what create.deal_employees gets the first time
    employee_ext_id: str | None = None
    employee_name: str | None = None
    source: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.funnel, self.ext_id


class SentUpload(_State):
    """What one flush sent of a deal, and what the deal records once UIS has it."""

    uploaded: list[Step] = Field(default_factory=list)  # the deal's history with the sent rows
    sig: str
    contact_sig: str | None = None  # `contact_sig` of the deal that flush synced the contact of
    contact_error: str | None = None  # UIS refused the contact (create or update): its message
    at: str  # the flush's moment (UTC ISO)
    # the last row sent, as UIS holds it when the upload was applied (a read-back compares it)
    stage: str | None = None
    stage_time: str | None = None  # `modified_stage_date_time` as sent (account-local)


class DealUpload(_State):
    """Where a deal stands with UIS."""

    uploaded: list[Step] = Field(default_factory=list)  # the rows UIS has received, in order
    modified_at: str
    uploaded_sig: str | None = None
    uploaded_contact_sig: str | None = None  # `contact_sig` as of the last flush that synced the contact
    upload_state: UploadState = "pending"
    upload_error: str | None = None
    # flushes in a row whose contact sync UIS refused (the deal is parked with UIS's message at a few)
    contact_failures: int = 0
    # an upload whose answer was lost: UIS may hold it; the next flush reads back before sending anything
    in_doubt: SentUpload | None = None
    retry_at: str | None = None  # UIS refused it for now (a time "in the future"): not before this (UTC ISO)
    source_version: int = 0  # the snapshot version this deal was computed from
    version: int = 0


class DealRecord(DealDraft, DealUpload):
    """A stored deal: its draft's content and its upload state, in one item."""

    @classmethod
    def of(cls, draft: DealDraft, upload: DealUpload) -> DealRecord:
        return cls.model_validate({**draft.model_dump(), **upload.model_dump()})

    @property
    def upload(self) -> DealUpload:
        return DealUpload.model_validate(self.model_dump(include=set(DealUpload.model_fields)))


class DealRef(_State):
    """Names one deal (a parked deal's payload, the uploader's pending keys)."""

    funnel: str
    ext_id: str
