"""Stage paths: where a customer's first-sale deal and a payment's upsell deal stood, and when. Pure.

Decisions where AlfaCRM leaves room (documented, tested):
- a re-read value that no event explains (a lost or still-travelling webhook) is applied at the time of the
  re-read; once the event arrives its own time replaces that guess (facts win over inferences);
- a client (`is_study` 1) is a won first sale whatever its status; an archived, refused (`lead_reject_id`
  set, with or without an archive flag) or deleted *lead* is failed, and back in process once the reason is
  cleared;
- what UIS already has is frozen (`merge_history`): it rejects a row older than a deal's last uploaded stage.
"""

from __future__ import annotations

from collections.abc import Mapping

from connector.deals.snapshots import TRACKED, min_time
from connector.models.deals import (
    FAILED,
    NO_STATUS,
    SUCCESS,
    UPSELL_CANCELLED,
    UPSELL_NEW,
    UPSELL_PAID,
    CustomerSnapshot,
    Fact,
    PayInfo,
    Step,
    TrackedValue,
)
from connector.settings import DealsSettings


def stage_of(values: Mapping[str, TrackedValue], settings: DealsSettings) -> str:
    """Where a customer stands in "Первая продажа", from its tracked fields' values."""
    is_study, status_id = values.get("is_study"), values.get("lead_status_id")
    if is_study:
        return SUCCESS  # a client: converted (or created as a client) = a won first sale
    if status_id is not None and status_id in settings.first_sale.success_status_ids:
        return SUCCESS
    if status_id is not None and status_id in settings.first_sale.failure_status_ids:
        return FAILED
    if values.get("removed") or values.get("lead_reject_id") is not None:
        return FAILED  # a lead archived, refused with a reason or deleted while in progress
    return NO_STATUS if status_id is None else str(status_id)


_SET_BY_CHANGES = frozenset({"lead_reject_id"})
_DEFAULTS: dict[str, TrackedValue] = {
    "is_study": False,
    "lead_status_id": None,
    "removed": False,
    "lead_reject_id": None,
}


def _value_at(facts: list[Fact], x: str, current: TrackedValue, has_current: bool, name: str) -> TrackedValue:
    """The field's value at time `x` as the facts tell it.

    The latest `new` fact at or before `x`; else the value just before the first later change (its `old`
    fact, or its `new` value when nothing older is known); else the last re-read value.
    """
    before = [f for f in facts if f.kind == "new" and f.at <= x]
    if before:
        last_at = before[-1].at
        same_time = [f.value for f in before if f.at == last_at]
        # two changes within one second: prefer the one the re-read confirms, else a stable choice
        if has_current and current in same_time:
            return current
        return same_time[-1]
    later = [f for f in facts if f.at > x]
    if later:
        first_at = later[0].at
        olds = [f.value for f in later if f.at == first_at and f.kind == "old"]
        if olds:
            return olds[0]
        # a lead is created without a refusal reason: one only ever arrives by a later change
        return _DEFAULTS[name] if name in _SET_BY_CHANGES else later[0].value
    return current if has_current else _DEFAULTS[name]


def customer_path(snap: CustomerSnapshot, settings: DealsSettings) -> list[Step]:
    """The first-sale deal's stage path: a step wherever the merged stage changes."""
    fact_times = [f.at for facts in snap.facts.values() for f in facts]
    created = min_time(snap.created_at, snap.first_seen_at, *fact_times) or snap.first_seen_at
    points = sorted({created, *fact_times})
    steps: list[Step] = []

    def values_at(x: str) -> dict[str, TrackedValue]:
        return {
            name: _value_at(snap.facts.get(name, []), x, snap.current.get(name), name in snap.current_keys, name)
            for name in TRACKED
        }

    last: dict[str, TrackedValue] = {}
    for x in points:
        last = values_at(x)
        stage = stage_of(last, settings)
        if not steps or steps[-1].stage != stage:
            steps.append(Step(stage=stage, at=x))
    # A re-read newer than a field's last fact shows a change no event has explained (yet: a webhook lost or
    # still travelling): apply it at the re-read's time. When that event arrives, its fact explains the value
    # with AlfaCRM's own time and this inferred step disappears.
    if snap.read_at:
        final = dict(last)
        for name in TRACKED:
            facts = snap.facts.get(name, [])
            if name in snap.current_keys and (not facts or snap.read_at > facts[-1].at):
                final[name] = snap.current.get(name)
        stage = stage_of(final, settings)
        if stage != steps[-1].stage:
            steps.append(Step(stage=stage, at=max(snap.read_at, points[-1])))
    return steps


def pay_path(pay: PayInfo) -> list[Step]:
    """An upsell deal: new at creation, paid when confirmed (at once, normally), cancelled when deleted."""
    steps = [Step(stage=UPSELL_NEW, at=pay.created_at)]
    if pay.confirmed is not False:
        steps.append(Step(stage=UPSELL_PAID, at=max(pay.confirmed_at or pay.created_at, pay.created_at)))
    removed = pay.removed_at
    if removed:
        steps.append(Step(stage=UPSELL_CANCELLED, at=max(removed, steps[-1].at)))
    return steps


# --- history merging ------------------------------------------------------------------------------------
def merge_history(uploaded: list[Step], path: list[Step]) -> list[Step]:
    """The deal's history: what UIS already has (frozen) followed by the path's later transitions.

    UIS rejects a row older than the deal's last uploaded stage, so transitions the path places at or before
    that moment are not sent; if the path ends elsewhere, the deal moves there at the last uploaded time.
    """
    if not path:
        return list(uploaded)
    if not uploaded:
        out: list[Step] = []
        for step in path:
            if not out or out[-1].stage != step.stage:
                out.append(step)
        return out
    out = list(uploaded)
    frozen_at = uploaded[-1].at
    for step in path:
        if step.at > frozen_at and step.stage != out[-1].stage:
            out.append(step)
    if out[-1].stage != path[-1].stage:
        out.append(Step(stage=path[-1].stage, at=out[-1].at))
    return out
