"""The scheduled jobs fan out per school: a tick reads only the work index (one query), one work item per
school with work; when more are due than a page, every shard handed on at once, a full shard page by page; a
failing school backing off on its own schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from connector import fanout
from connector.store.work import AT_ONCE, SETTLE_GUARD_SECONDS, SHARDS, shard_of
from connector.timeutil import from_iso

from tests.schools.conftest import Schools


def ids_in_one_shard(count: int, shard: int = 0) -> list[str]:
    found = [f"{n:08x}" for n in range(10_000) if shard_of(f"{n:08x}") == shard]
    return found[:count]


def test_a_tick_sends_one_work_item_per_school_with_pending_deals_and_reads_nothing_else(schools: Schools) -> None:
    # Given two schools with a new lead each, and 40 schools with nothing to upload
    busy = ["b0000001", "b0000002"]
    for iid in busy:
        schools.add(iid)
        schools.new_lead(iid)
    for n in range(40):
        schools.add(f"1d1e{n:04x}")
    # When the upload schedule ticks
    calls = schools.rt.store.calls
    report = schools.tick("upload")
    # Then one work item per busy school is queued, each in its own message group (the school)
    queued = schools.queued("upload")
    assert sorted(m["integration_id"] for m in queued) == busy
    assert {m["group"] for m in queued} == set(busy)
    assert report.schools == 2 and report.handed_on == 0
    # And the tick cost one index query, whatever the number of idle schools
    assert schools.rt.store.calls - calls == 1
    # And the workers upload each school's deal to that school's UIS
    outcomes = schools.drain("upload")
    assert {o.integration_id: o.status for o in outcomes} == dict.fromkeys(busy, "done")
    assert all(len(schools.uploaded(iid)) == 1 for iid in busy)


def test_an_idle_school_costs_the_tick_nothing(schools: Schools) -> None:
    # Given one school and the same school among 200 idle ones
    schools.add("a0000001")
    calls = schools.rt.store.calls
    schools.tick("upload")
    alone = schools.rt.store.calls - calls
    for n in range(200):
        schools.add(f"1d1e{n:04x}")
    calls = schools.rt.store.calls
    schools.tick("upload")
    # Then the tick's reads are the same (the idle schools are in no index partition)
    assert schools.rt.store.calls - calls == alone == 1
    assert schools.queued("upload") == []


def test_more_due_than_a_page_hands_every_shard_on_at_once(schools: Schools, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given seven schools due for an upload, five of them in shard 0, and a probe page of three
    monkeypatch.setattr(fanout, "PAGE_SIZE", 3)
    five, two = ids_in_one_shard(5), ids_in_one_shard(2, shard=1)
    for iid in five + two:
        schools.add(iid)
        schools.rt.store.work.mark(iid, "upload")
    # When the tick runs, its one query finds more due than a page: it sends no school itself
    calls = schools.rt.store.calls
    report = schools.tick("upload")
    assert (report.schools, report.handed_on) == (0, SHARDS)
    assert schools.rt.store.calls - calls == 1
    # And hands every shard on at once, each in its own message group (the shards are read in parallel)
    pages = [m for m in schools.queued("upload") if m["kind"] == "page"]
    assert sorted(p["shard"] for p in pages) == list(range(SHARDS))
    assert len({p["group"] for p in pages}) == SHARDS
    # Then the workers send every school once, each shard page sending only its own shard's schools
    outcomes = schools.drain("upload", limit=1000)
    dispatched = [o.detail for o in outcomes if o.status == "dispatched"]
    assert sorted(d["schools"] for d in dispatched if d["schools"]) == [2, 5]
    assert sorted(o.integration_id for o in outcomes if o.integration_id) == sorted(five + two)


def test_a_full_shard_is_handed_on_page_by_page(schools: Schools, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given five schools of one shard due for an upload, a probe page of one and shard pages of two
    monkeypatch.setattr(fanout, "PAGE_SIZE", 1)
    monkeypatch.setattr(fanout, "SHARD_PAGE_SIZE", 2)
    five = ids_in_one_shard(5)
    for iid in five:
        schools.add(iid)
        schools.rt.store.work.mark(iid, "upload")
    # When the tick runs and the workers take what it sends
    report = schools.tick("upload")
    assert report.handed_on == SHARDS
    outcomes = schools.drain("upload", limit=1000)
    # Then shard 0 went page by page (two, two, one), none sending more than a page and the next one
    busy = [o.detail for o in outcomes if o.status == "dispatched" and (o.detail["schools"] or o.detail["handed_on"])]
    assert busy == [
        {"schools": 2, "handed_on": True},
        {"schools": 2, "handed_on": True},
        {"schools": 1, "handed_on": False},
    ]
    assert sorted(o.integration_id for o in outcomes if o.integration_id) == sorted(five)


def test_a_second_tick_while_a_school_waits_queues_it_once(schools: Schools) -> None:
    # Given a school whose work item is still waiting on the queue
    schools.add("a0000001")
    schools.new_lead("a0000001")
    schools.tick("upload")
    # When the schedule ticks again before a worker took it
    schools.tick("upload")
    # Then the queue holds one work item (same school, same due time: deduplicated)
    assert len(schools.queued("upload")) == 1


def test_a_failing_school_backs_off_on_its_own_schedule_and_never_holds_up_another(schools: Schools) -> None:
    # Given two schools with a new lead each; school A's UIS refuses its token (revoked in the cabinet)
    schools.add("a0000001")
    schools.add("b0000002")
    schools.uis["a0000001"].set_token("token-a0000001", "access_token_blocked")
    schools.new_lead("a0000001")
    schools.new_lead("b0000002")
    waits: list[timedelta] = []
    for minute in range(12):
        # When the upload schedule ticks every minute and the workers run what it sends
        if minute % 3 == 0:
            schools.new_lead("b0000002", name=f"Лид {minute}")
        schools.tick("upload")
        outcomes = {o.integration_id: o for o in schools.drain("upload")}
        failed = outcomes.get("a0000001")
        if failed is not None:
            entry = schools.rt.store.work.get("a0000001", "upload")
            assert entry is not None and entry.due and entry.last_error
            waits.append(from_iso(entry.due) - schools.now())
        schools.clock.advance(60)
    # Then A ran at minutes 0, 1, 3, 7 only: each failure doubles its wait (1, 2, 4, 8 minutes)
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    # And B's every lead reached its UIS meanwhile
    assert len(schools.uploaded("b0000002")) == 5
    assert schools.uploaded("a0000001") == set()


def test_an_upload_entry_goes_once_nothing_is_pending_and_stays_after_a_fresh_mark(schools: Schools) -> None:
    # Given a school whose lead was just uploaded
    schools.add("a0000001")
    schools.new_lead("a0000001")
    schools.tick("upload")
    [outcome] = schools.drain("upload")
    # Then the entry stays, due at the next tick (the mark is younger than the guard: a deal marked then may
    # not be in the GSI yet)
    entry = schools.rt.store.work.get("a0000001", "upload")
    assert outcome.status == "done" and entry is not None
    assert entry.due is not None and from_iso(entry.due) == schools.now().replace(microsecond=0) + fanout.NEXT_TICK
    # When the guard has passed and the worker looks again (the store's wall clock moved on)
    real = schools.rt.store.work.clock
    schools.rt.store.work.clock = lambda: real() + SETTLE_GUARD_SECONDS + 1
    schools.clock.advance(SETTLE_GUARD_SECONDS + 1)
    schools.tick("upload")
    [again] = schools.drain("upload")
    # Then nothing was pending: the entry is gone, and the next tick reads nothing of this school
    assert again.detail["state"] == "idle"
    assert schools.rt.store.work.get("a0000001", "upload") is None
    # And a new lead makes the school due at once again
    schools.new_lead("a0000001", name="Новый лид")
    entry = schools.rt.store.work.get("a0000001", "upload")
    assert entry is not None and entry.due == AT_ONCE


def test_the_deal_worker_marks_a_school_due_once_per_burst(schools: Schools) -> None:
    # Given a school and a burst of ten new leads handled by one container
    schools.add("a0000001")
    marks: list[float | None] = []
    for n in range(10):
        schools.new_lead("a0000001", name=f"Лид {n}")
        entry = schools.rt.store.work.get("a0000001", "upload")
        marks.append(entry.marked_at if entry else None)
    # Then ten deals are pending, and the work index was written once (the container remembers its mark)
    assert len(schools.rt.store.deals.pending_keys("a0000001")) == 10
    assert marks[0] is not None and set(marks) == {marks[0]}
