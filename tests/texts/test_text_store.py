"""The text store's claims, against the moto table."""

from __future__ import annotations

from connector.store import Store


def test_a_finished_step_is_reported_done_with_its_result_not_busy(store: Store):
    # Given a step claimed and finished (the lead 42 was created)
    texts = store.texts
    assert texts.claim_step("int9", "CHAT#1", "lead", now=1000.0).status == "claimed"
    texts.finish_step("int9", "CHAT#1", "lead", 42)
    # When a redelivery claims it again
    again = texts.claim_step("int9", "CHAT#1", "lead", now=1001.0)
    # Then it is told the step is done and which lead it made (the failed condition's old item is read)
    assert (again.status, again.result) == ("done", 42)


def test_a_contact_claim_is_busy_then_names_the_lead_then_expires(store: Store):
    texts = store.texts
    assert texts.claim_contact("int9", "+79161234567", "CHAT#1", now=1000.0).status == "claimed"
    assert texts.claim_contact("int9", "+79161234567", "REQ#om1", now=1001.0).status == "busy"
    texts.release_contact("int9", "+79161234567", "CHAT#1", customer_id=7, now=1002.0)
    created = texts.claim_contact("int9", "+79161234567", "REQ#om1", now=1003.0)
    assert (created.status, created.customer_id) == ("created", 7)
    # a minute later the contact is free again (DynamoDB's TTL deletes late: checked in code)
    assert texts.claim_contact("int9", "+79161234567", "REQ#om1", now=1100.0).status == "claimed"
    # a failed create drops its own claim only
    texts.release_contact("int9", "+79161234567", "CHAT#1", now=1101.0)
    assert texts.claim_contact("int9", "+79161234567", "CHAT#2", now=1102.0).status == "busy"
    texts.release_contact("int9", "+79161234567", "REQ#om1", now=1103.0)
    assert texts.claim_contact("int9", "+79161234567", "CHAT#2", now=1104.0).status == "claimed"
