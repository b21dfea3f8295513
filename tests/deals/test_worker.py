"""The deal worker against moto and the AlfaCRM sandbox: what a manager does in AlfaCRM becomes the deals
`GET /integrations/{id}/deals` shows."""

from __future__ import annotations

import random

from connector.alfacrm.models import WebhookEvent
from connector.deals import snapshots
from connector.deals.views import deals_view
from connector.deals.worker import handle_deal_event
from connector.store import Store
from connector.store.deals import DealStore

from tests.api.builders import stored_integration
from tests.conftest import runtime
from tests.deals.builders import INTEGRATION_ID, message, utc, webhook
from tests.deals.conftest import DEAL_SETTINGS


def history(view):
    return [(h["stage"], h["at"]) for h in view["history"]]


def by_id(store, integration_id=INTEGRATION_ID, funnel=None):
    return {d["ext_id"]: d for d in deals_view(store, integration_id, funnel)}


def test_a_lead_moving_through_statuses_becomes_a_first_sale_deal(alfacrm, captured, deliver, store, clock):
    # Given a manager creates a lead and moves it through two statuses
    lead = alfacrm.ui_create_customer(
        {"name": "Петров Илья", "is_study": 0, "lead_status_id": 1, "phone": ["89161234567"]}
    )
    clock.advance(3600)
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 2})
    clock.advance(1800)
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 3})
    # When the deal worker processes the three webhooks
    outcomes = [deliver(body) for body in captured.take()]
    # Then the deal shows the path with AlfaCRM's times and waits for upload
    assert [o.status for o in outcomes] == ["done"] * 3
    deal = by_id(store)[f"customer-{lead['id']}"]
    assert history(deal) == [
        ("1", utc("2025-03-03 09:00:00")),
        ("2", utc("2025-03-03 10:00:00")),
        ("3", utc("2025-03-03 10:30:00")),
    ]
    assert deal["upload"] == {"state": "pending", "error": None}
    assert deal["funnel"] == "first_sale" and deal["contact_ext_id"] == f"customer-{lead['id']}"


def test_each_ordinary_event_costs_one_alfacrm_read(alfacrm, captured, deliver, clients):
    lead = alfacrm.ui_create_customer({"name": "Петров Илья", "is_study": 0, "lead_status_id": 1})
    deliver(captured.take()[0])  # warms the look-up cache (teachers, branches) and logs in
    for status in (2, 3, 7):
        alfacrm.ui_update_customer(lead["id"], {"lead_status_id": status})
        before = alfacrm.stats["requests"]
        deliver(captured.take()[0])
        assert alfacrm.stats["requests"] - before == 1


def test_the_same_delivery_three_times_changes_nothing_after_the_first(alfacrm, captured, deliver, store):
    lead = alfacrm.ui_create_customer({"name": "Петров Илья", "is_study": 0, "lead_status_id": 1})
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 2})
    bodies = captured.take()
    first = [deliver(b) for b in bodies]
    snapshot = store.deals.get_customer(INTEGRATION_ID, lead["id"])
    view = by_id(store)
    for _ in range(2):
        repeated = [deliver(b) for b in bodies]
        assert [o.changed for o in repeated] == [[], []]
    assert all(o.changed for o in first)
    assert store.deals.get_customer(INTEGRATION_ID, lead["id"]) == snapshot
    assert by_id(store) == view


def test_shuffled_deliveries_end_in_the_same_deals_as_ordered_ones(alfacrm, captured, deliver, store, clock):
    # Given a school day: leads moving, one failing, two converting, payments, an extra payment, a deletion
    a = alfacrm.ui_create_customer({"name": "Анна", "is_study": 0, "lead_status_id": 1, "teacher_ids": [1]})
    b = alfacrm.ui_create_customer({"name": "Борис", "is_study": 0, "lead_status_id": 1})
    clock.advance(600)
    alfacrm.ui_update_customer(a["id"], {"lead_status_id": 3})
    alfacrm.ui_update_customer(b["id"], {"lead_status_id": 5})
    clock.advance(600)
    alfacrm.ui_update_customer(a["id"], {"is_study": 1})
    first = alfacrm.ui_create_pay({"customer_id": a["id"], "income": "4500", "teacher_id": 1})
    clock.advance(600)
    extra = alfacrm.ui_create_pay({"customer_id": a["id"], "income": "1200", "document_date": "2025-03-04"})
    wrong = alfacrm.ui_create_pay({"customer_id": a["id"], "income": "700", "document_date": "2025-03-05"})
    clock.advance(60)
    alfacrm.ui_delete_pay(wrong["id"])
    bodies = captured.take()
    # When one integration gets them in order and another shuffled, with duplicates
    stored_integration(store, integration_id="shuffled", settings=DEAL_SETTINGS)
    for body in bodies:
        deliver(body)
    shuffled = bodies * 2
    random.Random(7).shuffle(shuffled)
    for body in shuffled:
        deliver(body, integration_id="shuffled")
    # Then both hold the same deals
    ordered, mixed = by_id(store), by_id(store, "shuffled")
    assert ordered == mixed
    assert [s for s, _ in history(ordered[f"customer-{a['id']}"])] == ["1", "3", "success"]
    assert [s for s, _ in history(ordered[f"customer-{b['id']}"])] == ["1", "failed"]
    assert ordered[f"customer-{a['id']}"]["revenue"] == 4500
    assert [s for s, _ in history(ordered[f"pay-{extra['id']}"])] == ["new", "paid"]
    assert [s for s, _ in history(ordered[f"pay-{wrong['id']}"])] == ["new", "paid", "cancelled"]
    assert f"pay-{first['id']}" not in ordered
    # And the create of the payment deleted before any delivery (its re-read found nothing) is parked in both;
    # replayed, it dates the cancelled deal from the payment's creation in both
    for integration_id in (INTEGRATION_ID, "shuffled"):
        for item in store.integrations.parked(integration_id):
            assert item.kind == "deal_event" and item.payload["event"]["entity_id"] == wrong["id"]
            assert deliver(item.payload["event"], integration_id=integration_id).status == "done"
    ordered, mixed = by_id(store), by_id(store, "shuffled")
    assert ordered == mixed
    assert history(ordered[f"pay-{wrong['id']}"])[0] == ("new", utc("2025-03-03 09:30:00"))


def test_two_events_for_one_customer_at_once_lose_nothing(store, integration):
    # Given two workers read the same snapshot version
    t0, t1 = utc("2025-03-03 10:00:00"), utc("2025-03-03 11:00:00")
    create = WebhookEvent.model_validate(webhook("Customer", 7, "create", new={"lead_status_id": 1}))
    update = WebhookEvent.model_validate(
        webhook("Customer", 7, new={"lead_status_id": 2}, old={"lead_status_id": 1}, at="2025-03-03 11:00:00")
    )
    raced = []

    def first_worker(current):
        if not raced:  # the other worker writes between our read and our write
            raced.append(True)
            store.deals.update_customer(
                INTEGRATION_ID,
                7,
                lambda c: snapshots.observe_customer(
                    c or snapshots.new_snapshot(7, t1), update, None, at=t1, read_at=t0, tz="Europe/Moscow"
                ),
            )
        base = current or snapshots.new_snapshot(7, t0)
        return snapshots.observe_customer(base, create, None, at=t0, read_at=t0, tz="Europe/Moscow")

    # When the first worker's conditional write loses the race
    snap, written = store.deals.update_customer(INTEGRATION_ID, 7, first_worker)
    # Then it re-read and re-applied: both events' facts are kept
    assert written and snap.version == 2
    assert sorted((f.at, f.value, f.kind) for f in snap.facts["lead_status_id"]) == [
        (t0, 1, "new"),
        (t1, 1, "old"),
        (t1, 2, "new"),
    ]


def test_a_pay_webhook_without_branch_id_is_reread_through_the_branch_in_its_fields(alfacrm, captured, deliver, store):
    # Given a client of the second branch and an old-style webhook that names the branch only in fields_new
    client = alfacrm.ui_create_customer({"name": "Ким Олег", "is_study": 1}, branch_id=2)
    alfacrm.ui_create_pay({"customer_id": client["id"], "income": "3000"}, branch_id=2)
    bodies = captured.take()
    pay_body = {k: v for k, v in bodies[1].items() if k != "branch_id"}
    assert pay_body["fields_new"]["branch_id"] == 2
    # When the worker handles the payment first (the customer's own webhook is late)
    outcome = deliver(pay_body)
    # Then the payment and the customer were read through branch 2 and the first sale carries the revenue
    assert outcome.status == "done"
    deal = by_id(store)[f"customer-{client['id']}"]
    assert deal["revenue"] == 3000 and deal["stage"] == "success"


def test_customers_created_by_the_connectors_api_user_are_deals(alfacrm, captured, deliver, store):
    lead = alfacrm.ui_create_customer({"name": "Из чата", "is_study": 0, "lead_status_id": 1}, user_id=3)
    body = captured.take()[0]
    assert body["user_id"] == 3
    assert deliver(body).status == "done"
    assert f"customer-{lead['id']}" in by_id(store)


def test_other_entities_and_switched_off_integrations_do_nothing(alfacrm, captured, deliver, store):
    assert deliver(webhook("Communication", 11, "create", new={"comment": "Перезвонить"})).status == "ignored"
    stored_integration(store, integration_id="inactive", active=False, settings=DEAL_SETTINGS)
    stored_integration(store, integration_id="no-deals", settings={"deals": {"enabled": False}})
    lead = alfacrm.ui_create_customer({"name": "Петров", "is_study": 0})
    body = captured.take()[0]
    assert deliver(body, integration_id="inactive").status == "skipped"
    assert deliver(body, integration_id="no-deals").status == "skipped"
    assert deliver(body, integration_id="unknown").status == "skipped"
    assert by_id(store, "inactive") == {} and by_id(store, "no-deals") == {}
    assert lead["id"]


def test_what_alfacrm_refuses_is_parked_and_transient_failures_are_raised(alfacrm, captured, deliver, store):
    import pytest
    from connector.errors import AlfaCrmUnavailable

    # Given a webhook naming a branch AlfaCRM does not have (404 on the re-read)
    lead = alfacrm.ui_create_customer({"name": "Петров", "is_study": 0})
    body = {**captured.take()[0], "branch_id": 99}
    # Then it is parked with the message kept for a replay
    assert deliver(body).status == "parked"
    parked = store.integrations.parked(INTEGRATION_ID)
    assert [(p.kind, p.payload["event"]["entity_id"]) for p in parked] == [("deal_event", lead["id"])]
    # And AlfaCRM being down is raised, so SQS redelivers the record
    alfacrm.fail_next(503, count=10)
    with pytest.raises(AlfaCrmUnavailable):
        deliver({**body, "branch_id": 1})
    # And a body that is not an AlfaCRM webhook is parked too
    assert deliver({"hello": "world"}).status == "parked"


def test_a_customer_listed_only_in_the_integrations_branch_is_reread_there_and_not_failed(
    alfacrm, captured, deliver, store, clock
):
    """Given a lead of branch 1 (the integration's branch) whose update webhook names branch 2, where AlfaCRM
    does not list it, when the worker handles that webhook, then it reads the lead again through the
    integration's branch (one extra read) and the deal moves to the new status: not to failed."""
    lead = alfacrm.ui_create_customer({"name": "Жанна", "is_study": 0, "lead_status_id": 1})
    deliver(captured.take()[0])
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 2}, branch_id=2)
    [body] = captured.take()
    assert body["branch_id"] == 2
    before = alfacrm.stats["requests"]

    outcome = deliver(body)

    assert outcome.status == "done"
    assert alfacrm.stats["requests"] - before == 2
    deal = by_id(store)[f"customer-{lead['id']}"]
    assert history(deal) == [("1", utc("2025-03-03 09:00:00")), ("2", utc("2025-03-03 09:10:00"))]


def test_a_customer_reread_that_finds_nothing_parks_the_event_and_leaves_the_deal_as_it_was(
    alfacrm, captured, deliver, store, clock
):
    """Given a lead's deal in "1", when an update webhook's re-read finds the lead in neither the branch the
    event names nor the integration's branch (a read that raced AlfaCRM's save), then the event is parked
    (visible, replayable) and the deal is untouched — no failed stage; a replay once AlfaCRM lists the lead
    again moves the deal on, with no failed-then-reopened history."""
    lead = alfacrm.ui_create_customer({"name": "Зоя", "is_study": 0, "lead_status_id": 1})
    deliver(captured.take()[0])
    shown = by_id(store)[f"customer-{lead['id']}"]
    clock.advance(600)
    alfacrm.ui_update_customer(lead["id"], {"lead_status_id": 2}, branch_id=2)
    [body] = captured.take()
    record = alfacrm.customers.pop(lead["id"])  # not listed anywhere for a moment
    before = alfacrm.stats["requests"]

    outcome = deliver(body)

    assert outcome.status == "parked"
    assert alfacrm.stats["requests"] - before == 2  # the event's branch, then the integration's
    assert by_id(store)[f"customer-{lead['id']}"] == shown
    [parked] = store.integrations.parked(INTEGRATION_ID)
    assert parked.kind == "deal_event" and parked.payload["event"] == body
    # And a replay once the lead is listed again moves the deal on
    alfacrm.customers[lead["id"]] = record
    assert deliver(parked.payload["event"]).status == "done"
    deal = by_id(store)[f"customer-{lead['id']}"]
    assert history(deal) == [("1", utc("2025-03-03 09:00:00")), ("2", utc("2025-03-03 09:10:00"))]


def test_a_payment_reread_that_finds_nothing_parks_the_event_and_cancels_nothing(
    alfacrm, captured, deliver, store, clock
):
    """Given a client with a first payment, when a second payment's create webhook is re-read before AlfaCRM
    lists the payment, then the event is parked and no upsell deal appears (let alone a cancelled one); its
    replay makes the upsell deal paid."""
    client = alfacrm.ui_create_customer({"name": "Инга", "is_study": 1})
    alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4000", "document_date": "2025-03-01"})
    for body in captured.take():
        deliver(body)
    clock.advance(600)
    second = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "1500", "document_date": "2025-03-02"})
    [body] = captured.take()
    record = alfacrm.pays.pop(second["id"])

    outcome = deliver(body)

    assert outcome.status == "parked"
    assert f"pay-{second['id']}" not in by_id(store)
    assert [p.kind for p in store.integrations.parked(INTEGRATION_ID)] == ["deal_event"]
    alfacrm.pays[second["id"]] = record
    assert deliver(body).status == "done"
    assert [s for s, _ in history(by_id(store)[f"pay-{second['id']}"])] == ["new", "paid"]


def test_a_create_webhook_processed_after_the_payments_delete_webhook_still_dates_the_deal(
    alfacrm, captured, deliver, store, clock
):
    """Given a second payment created and deleted a minute later, when the delete webhook is processed before
    the create webhook (whose re-read then finds nothing), then the empty read is explained by the delete
    already seen: the create is folded in (not parked) and the upsell deal runs from its creation to its
    cancellation."""
    client = alfacrm.ui_create_customer({"name": "Ирина", "is_study": 1})
    alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4000", "document_date": "2025-03-01"})
    for body in captured.take():
        deliver(body)
    wrong = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "700", "document_date": "2025-03-02"})
    clock.advance(60)
    alfacrm.ui_delete_pay(wrong["id"])
    create, delete = captured.take()

    assert deliver(delete).status == "done"
    assert deliver(create).status == "done"

    assert store.integrations.parked(INTEGRATION_ID) == []
    assert history(by_id(store)[f"pay-{wrong['id']}"]) == [
        ("new", utc("2025-03-03 09:00:00")),
        ("paid", utc("2025-03-03 09:00:00")),
        ("cancelled", utc("2025-03-03 09:01:00")),
    ]


class DealsReadBeforeAnotherWorker(DealStore):
    """A deal store whose read of a customer's deals lets another worker run right after it (once)."""

    meanwhile = None

    def get_deals(self, integration_id, keys):
        found = super().get_deals(integration_id, keys)
        hook, self.meanwhile = self.meanwhile, None
        if hook is not None:
            hook()
        return found


def withdrawn_upsell_race(alfacrm, captured, deliver, store, clients, now, clock, *, edit_income):
    """A client's pending (never uploaded) upsell stops being one when the first payment is deleted; while the
    worker handling that delete holds the deals it read, another worker handles newer events: an earlier
    payment (the upsell is one again) and, with `edit_income`, an income edit of the upsell's payment."""
    client = alfacrm.ui_create_customer({"name": "Инна", "is_study": 1})
    first = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4000", "document_date": "2025-03-01"})
    second = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "1500", "document_date": "2025-03-02"})
    for body in captured.take():
        deliver(body)
    clock.advance(60)
    alfacrm.ui_delete_pay(first["id"])
    [delete] = captured.take()
    alfacrm.ui_create_pay({"customer_id": client["id"], "income": "3000", "document_date": "2025-02-28"})
    if edit_income:
        alfacrm.ui_update_pay(second["id"], {"income": "1600"})
    newer = captured.take()
    racing = Store(store.table)
    racing.deals = DealsReadBeforeAnotherWorker(store.table)
    racing.deals.meanwhile = lambda: [deliver(body) for body in newer]
    handle_deal_event(runtime(store=racing, clients=clients, now=now), message(delete))
    return client, second


def test_an_upsell_rewritten_by_a_newer_snapshot_survives_a_stale_workers_delete(
    alfacrm, captured, deliver, store, clients, now, clock
):
    """Given the race above with the upsell's income edited by the newer worker, when the stale worker goes on
    to delete the upsell it saw as withdrawn, then its delete (conditional on the version it read) loses:
    the deals view keeps the upsell with the edited income."""
    client, second = withdrawn_upsell_race(alfacrm, captured, deliver, store, clients, now, clock, edit_income=True)

    deals = by_id(store)
    assert f"pay-{second['id']}" in deals
    assert deals[f"pay-{second['id']}"]["revenue"] == 1600
    assert [s for s, _ in history(deals[f"pay-{second['id']}"])] == ["new", "paid"]
    assert deals[f"customer-{client['id']}"]["revenue"] == 3000


def test_an_upsell_a_newer_snapshot_keeps_unchanged_survives_a_stale_workers_delete(
    alfacrm, captured, deliver, store, clients, now, clock
):
    """Given the race above where the newer worker found the upsell already right (so wrote nothing), when
    the stale worker deletes it, then it notices the customer's snapshot moved on and recomputes from it:
    the deals view still has the upsell."""
    client, second = withdrawn_upsell_race(alfacrm, captured, deliver, store, clients, now, clock, edit_income=False)

    deals = by_id(store)
    assert f"pay-{second['id']}" in deals
    assert deals[f"pay-{second['id']}"]["revenue"] == 1500
    assert deals[f"customer-{client['id']}"]["revenue"] == 3000


def test_an_upsell_uploaded_while_a_worker_withdraws_it_ends_cancelled_in_uis(
    alfacrm, captured, deliver, store, clients, now, clock, flush, uis
):
    """Given a client's second payment pending as an upsell deal, when the first payment is deleted and the
    uploader sends the upsell (as paid) between the worker's read of the deals and its delete of that
    never-uploaded upsell, then the delete (conditional on the version read) loses, the worker re-reads the
    now-uploaded deal and takes it to "cancelled": UIS does not count the payment twice."""
    client = alfacrm.ui_create_customer({"name": "Инна", "is_study": 1})
    first = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4000", "document_date": "2025-03-01"})
    second = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "1500", "document_date": "2025-03-02"})
    for body in captured.take():
        deliver(body)
    clock.advance(60)
    alfacrm.ui_delete_pay(first["id"])
    [delete] = captured.take()
    racing = Store(store.table)
    racing.deals = DealsReadBeforeAnotherWorker(store.table)
    racing.deals.meanwhile = flush

    handle_deal_event(runtime(store=racing, clients=clients, now=now), message(delete))

    assert [s for s, _ in history(by_id(store)[f"pay-{second['id']}"])] == ["new", "paid", "cancelled"]
    clock.advance(60)
    flush()
    assert uis.deals[f"pay-{second['id']}"]["stage_ext_id"] == "cancelled"
    assert uis.deals[f"customer-{client['id']}"]["revenue"] == 1500


def test_a_create_parked_as_not_listed_is_cleared_when_the_payments_delete_arrives(
    alfacrm, captured, deliver, store, clock
):
    """Given a payment created and deleted a minute later, when the create webhook is re-read after the
    deletion (parked: AlfaCRM lists it nowhere) and the delete webhook comes next, then the parked create is
    folded in and leaves the parked list, and the upsell deal runs from its creation to its cancellation."""
    client = alfacrm.ui_create_customer({"name": "Олег", "is_study": 1})
    alfacrm.ui_create_pay({"customer_id": client["id"], "income": "4000", "document_date": "2025-03-01"})
    for body in captured.take():
        deliver(body)
    wrong = alfacrm.ui_create_pay({"customer_id": client["id"], "income": "700", "document_date": "2025-03-02"})
    clock.advance(60)
    alfacrm.ui_delete_pay(wrong["id"])
    create, delete = captured.take()

    assert deliver(create).status == "parked"
    assert [p.code for p in store.integrations.parked(INTEGRATION_ID)] == ["not_listed"]
    assert deliver(delete).status == "done"

    assert store.integrations.parked(INTEGRATION_ID) == []
    assert history(by_id(store)[f"pay-{wrong['id']}"]) == [
        ("new", utc("2025-03-03 09:00:00")),
        ("paid", utc("2025-03-03 09:00:00")),
        ("cancelled", utc("2025-03-03 09:01:00")),
    ]
