"""`make probe` against the sandboxes: a faithful account confirms every assumption; a contradicting one is
reported, and only an explicit flag writes to a UIS contact."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from connector.alfacrm.client import AlfaCrmClient
from connector.retry import RateLimiter, RetryPolicy
from connector.uis.client import UisClient

from tools import probe
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox, ManualClock
from tools.sandboxes.uis import DEFAULT_TOKEN, UisSandbox

ALFA = "http://alfacrm.probe"
UIS = "http://uis.probe/v2.0"


@pytest.fixture
def sandboxes() -> Iterator[tuple[AlfaCrmSandbox, UisSandbox, AlfaCrmClient, UisClient]]:
    clock = ManualClock()
    alfacrm = AlfaCrmSandbox(clock=clock, sender=lambda *a: 200, burst_limit=1000)
    uis = UisSandbox(sender=lambda *a: 200)
    http_a = httpx.Client(transport=httpx.WSGITransport(app=alfacrm.app), base_url=ALFA)
    http_u = httpx.Client(transport=httpx.WSGITransport(app=uis.app))
    a = AlfaCrmClient(ALFA, DEFAULT_EMAIL, DEFAULT_API_KEY, http=http_a, limiter=RateLimiter(0))
    u = UisClient(UIS, DEFAULT_TOKEN, http=http_u, retry=RetryPolicy(attempts=1))
    alfacrm.ui_update_customer(2, {"lead_status_id": 3})  # something in the change log
    clock.advance(60)
    alfacrm.ui_update_customer(2, {"lead_status_id": 4})
    yield alfacrm, uis, a, u
    http_a.close()
    http_u.close()


def verdicts(rows: list[probe.Row]) -> dict[str, str]:
    return {r.assumption: r.verdict for r in rows}


def test_a_faithful_account_confirms_every_assumption_cheaply(sandboxes):
    _alfacrm, uis, a, u = sandboxes
    rows = probe.run(a, u, probe.Options(phone="+7 916 123-45-67"))
    assert {r.verdict for r in rows} <= {probe.HOLDS, probe.SKIPPED}, probe.render(rows)
    assert [r.assumption for r in rows if r.verdict == probe.SKIPPED] == [
        "update.deal_contacts takes one contact at the top level and refuses a `contacts` list"
    ]
    phone = next(r for r in rows if "spellings" in r.assumption or "finds a phone" in r.assumption)
    assert phone.answer.startswith("found with: national digits")
    # about one call per check: UIS points for account, four component probes and two reports
    assert uis.points_spent == 7
    assert uis.contacts == {} and uis.deals == {}  # read-only


def test_what_an_account_contradicts_is_reported(sandboxes):
    alfacrm, uis, a, u = sandboxes
    alfacrm.configure({"archive_flag_in_records": True, "phone_search": "exact", "with_user_index": False})
    uis.set_components(disabled=["sales_funnel"])
    rows = probe.run(a, u, probe.Options(phone="+7 916 000-00-00"))
    failed = {r.assumption for r in rows if r.verdict == probe.FAILS}
    assert "customer records carry no archive flag (lead_reject_id tells a refusal)" in failed
    assert "the API user is among the users (default comment author)" in failed
    assert "components allow the deal methods (upload.deals_history, …)" in failed
    assert any("finds a phone" in f for f in failed)
    assert "«Воронки продаж» (sales_funnel)" in probe.render(rows)


def test_the_contact_update_shape_is_checked_only_with_the_flag_and_leaves_the_contact_as_it_was(sandboxes):
    _alfacrm, uis, _a, u = sandboxes
    u.create_deal_contacts([{"ext_id": "probe-test", "name": "Тест", "emails": ["t@example.ru"]}])
    rows = probe.run(None, u, probe.Options(contact="probe-test", write_contact=True))
    [row] = [r for r in rows if r.assumption.startswith("update.deal_contacts")]
    assert row.verdict == probe.HOLDS and "refused (unexpected_parameters)" in row.answer
    assert uis.contacts["probe-test"]["name"] == "Тест" and uis.contacts["probe-test"]["emails"] == ["t@example.ru"]


def test_without_credentials_the_probe_says_what_to_set():
    assert probe.main([], env={}) == 2
