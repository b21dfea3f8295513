"""Backfill on connect: the school's existing customers and payments become deals with their real times,
in chunks that resume from a stored cursor, beside live webhooks without doubling anything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from connector.deals import backfill, backfill_state
from connector.deals.uploader import FlushReport
from connector.models.work import BackfillRange, BackfillState
from connector.runtime import Runtime
from connector.settings import Integration
from connector.timeutil import local_to_utc, to_iso

from tests.deals.builders import TZ
from tests.deals.conftest import Captured
from tools.sandboxes.alfacrm import AlfaCrmSandbox, ManualClock

DAY = 86400


def utc(local: str) -> str:
    return to_iso(local_to_utc(datetime.fromisoformat(local), TZ))


@pytest.fixture
def history(alfacrm: AlfaCrmSandbox, clock: ManualClock, captured: Captured) -> dict[str, Any]:
    """A school's last two months in AlfaCRM, before it connected (its webhooks went nowhere)."""
    clock.advance(-60 * DAY)
    client = alfacrm.ui_create_customer({"name": "Смирнова Анна", "is_study": 0, "lead_status_id": 1})
    clock.advance(DAY)
    alfacrm.ui_update_customer(client["id"], {"is_study": 1})
    first = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4500", "document_date": "2025-01-05"})
    clock.advance(10 * DAY)
    lead = alfacrm.ui_create_customer({"name": "Петров Илья", "is_study": 0, "lead_status_id": 2})
    clock.advance(DAY)
    other_branch = alfacrm.ui_create_customer({"name": "Коваленко Олег", "is_study": 0}, branch_id=2)
    clock.advance(20 * DAY)
    second = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "3000", "document_date": "2025-02-10"})
    many = [alfacrm.ui_create_customer({"name": f"Лид {n}", "is_study": 0})["id"] for n in range(120)]
    clock.advance(28 * DAY)
    captured.take()  # delivered to nobody: the integration did not exist yet
    return {"client": client, "lead": lead, "other_branch": other_branch, "pays": [first, second], "many": many}


def customer_log(alfacrm: AlfaCrmSandbox) -> int:
    """Change-log entries of customers the backfill reads: the sandbox lists its whole log in every branch."""
    return 2 * sum(1 for entry in alfacrm.log if entry["entity"] == "Customer")


def run_to_end(rt: Runtime, integration: Integration, *, pages_per_chunk: int = 1000) -> list[BackfillState]:
    states = []
    for _ in range(100):
        budget = iter([300_000] * pages_per_chunk + [0])
        state = backfill.run_chunk(rt, integration, remaining_ms=lambda: next(budget))
        states.append(state)
        if state.state != "running":
            return states
    raise AssertionError("the backfill did not end")


def test_existing_customers_and_payments_become_deals_with_their_real_times(
    rt: Runtime,
    integration: Integration,
    history: dict[str, Any],
    flush: Callable[..., FlushReport],
    uis: Any,
    alfacrm: AlfaCrmSandbox,
) -> None:
    # Given the school's history in AlfaCRM and nothing of it in the connector
    assert rt.store.deals.list_deals(integration.id) == []
    # When a backfill runs to its end
    backfill_state.start(rt, integration, BackfillRange())
    [state] = run_to_end(rt, integration)
    # Then it read every record (both branches) and the customers' change log, and says so
    assert state.state == "done" and state.done == state.total == 123 + 2 + customer_log(alfacrm)
    assert state.progress()["eta_s"] is None
    deals = {d.ext_id: d for d in rt.store.deals.list_deals(integration.id)}
    # And each customer's deal starts at its AlfaCRM creation time, its stages at the log's times: the client
    # was a lead (status 1) for a day before converting
    client = history["client"]
    first_sale = deals[f"customer-{client['id']}"]
    assert first_sale.created_at == utc(client["created_at"])
    converted = utc((datetime.fromisoformat(client["created_at"]) + timedelta(days=1)).isoformat())
    assert [(s.stage, s.at) for s in first_sale.path] == [("1", first_sale.created_at), ("success", converted)]
    assert first_sale.revenue == "4500.00"
    assert deals[f"customer-{history['lead']['id']}"].path[-1].stage == "2"
    assert f"customer-{history['other_branch']['id']}" in deals
    # And the second payment is an upsell dated on its document date
    upsell = deals[f"pay-{history['pays'][1]['id']}"]
    assert upsell.created_at == utc("2025-02-10T00:00:00") and upsell.revenue == "3000.00"
    # And the next upload takes them all to UIS
    assert flush().uploaded == len(deals) == 123 + 1
    assert uis.deals[f"customer-{client['id']}"]["revenue"] == 4500


def test_chunks_resume_from_the_stored_cursor_and_read_no_page_twice(
    rt: Runtime, integration: Integration, history: dict[str, Any], alfacrm: AlfaCrmSandbox
) -> None:
    # Given a backfill whose chunks each have time for one page only
    backfill_state.start(rt, integration, BackfillRange())
    before = alfacrm.stats["customer/index"] + alfacrm.stats["pay/index"] + alfacrm.stats["log/index"]
    states = run_to_end(rt, integration, pages_per_chunk=1)
    # Then it took one chunk per page and progressed every time, ending with every record read
    assert [s.state for s in states[:-1]] == ["running"] * (len(states) - 1) and states[-1].state == "done"
    dones = [s.done for s in states]
    assert dones == sorted(dones) and dones[-1] == 125 + customer_log(alfacrm)
    # (the plan reads each list's first page once for the totals; each page after that exactly once:
    # branch 1 customers 3 pages, branch 2 one, payments one per branch; the log 3 pages per branch)
    pages = alfacrm.stats["customer/index"] + alfacrm.stats["pay/index"] + alfacrm.stats["log/index"] - before
    assert pages == 6 + (3 + 1 + 1 + 1) + (3 + 3)
    assert len(rt.store.deals.list_deals(integration.id)) == 123 + 1


def test_a_backfill_beside_live_webhooks_doubles_nothing(
    rt: Runtime,
    integration: Integration,
    history: dict[str, Any],
    alfacrm: AlfaCrmSandbox,
    captured: Captured,
    deliver: Callable[..., Any],
    flush: Callable[..., FlushReport],
    uis: Any,
) -> None:
    # Given a backfill half way, and a manager changing a customer it has not reached yet
    backfill_state.start(rt, integration, BackfillRange())
    budget = iter([300_000, 0])
    backfill.run_chunk(rt, integration, remaining_ms=lambda: next(budget))
    late = history["many"][-1]
    alfacrm.ui_update_customer(late, {"lead_status_id": 3})
    for body in captured.take():
        deliver(body)  # the live webhook is processed first
    live = rt.store.deals.get_deal(integration.id, "first_sale", f"customer-{late}")
    assert live is not None and live.path[-1].stage == "3"
    # When the backfill goes on to the end and the deals are uploaded
    run_to_end(rt, integration)
    flush()
    # Then the live customer's deal is the webhook's (not overwritten by the list), uploaded once
    after = rt.store.deals.get_deal(integration.id, "first_sale", f"customer-{late}")
    assert after is not None and after.path == live.path and after.version == live.version + 1
    sent = [s["stage_ext_id"] for s in uis.deals[f"customer-{late}"]["path"] if not s["is_generated"]]
    assert sent == [s.stage for s in live.path] == ["no_status", "3"]
    # And a second backfill over the same history changes nothing at all
    versions = {d.key: d.version for d in rt.store.deals.list_deals(integration.id)}
    backfill_state.start(rt, integration, BackfillRange())
    run_to_end(rt, integration)
    assert {d.key: d.version for d in rt.store.deals.list_deals(integration.id)} == versions


def test_a_date_range_imports_only_what_it_covers(
    rt: Runtime, integration: Integration, history: dict[str, Any], alfacrm: AlfaCrmSandbox
) -> None:
    # Given a range covering the second month only
    start = datetime.fromisoformat(history["lead"]["created_at"]).date()
    span = BackfillRange(date_from=start, date_to=date(2025, 2, 28))
    backfill_state.start(rt, integration, span)
    [state] = run_to_end(rt, integration)
    # Then the earlier client and its payments are read but not imported
    keys = {d.ext_id for d in rt.store.deals.list_deals(integration.id)}
    assert f"customer-{history['client']['id']}" not in keys and not any(k.startswith("pay-") for k in keys)
    assert f"customer-{history['lead']['id']}" in keys
    assert state.done == 125 + customer_log(alfacrm) and state.imported == len(keys) == 123 - 1


def test_a_running_backfill_is_not_restarted_and_a_failing_one_gives_up(
    rt: Runtime, integration: Integration, history: dict[str, Any], alfacrm: AlfaCrmSandbox
) -> None:
    started = backfill_state.start(rt, integration, BackfillRange())
    assert backfill_state.start(rt, integration, BackfillRange(date_from=date(2025, 2, 1))) == started
    # When AlfaCRM keeps failing, each chunk counts a failure (the fan-out backs off) until it gives up
    alfacrm.fail_next(503, count=10_000)
    for n in range(1, backfill.MAX_FAILURES):
        with pytest.raises(Exception, match=r"503|unavailable"):
            backfill.run_chunk(rt, integration, remaining_ms=lambda: 300_000)
        assert rt.store.backfill.get(integration.id).failures == n  # type: ignore[union-attr]
    state = backfill.run_chunk(rt, integration, remaining_ms=lambda: 300_000)
    assert state.state == "failed" and state.error
    # And it can be started again
    alfacrm.fail_next(200, count=0)
    assert backfill_state.start(rt, integration, BackfillRange()).state == "running"
