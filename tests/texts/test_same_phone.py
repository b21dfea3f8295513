"""Two events from one visitor processed at the same time (parallel SQS batches) make ONE lead.

The per-chat / per-request claims cannot see each other: two chats, or a chat and a request, from the same
phone are different items. A short per-contact claim around find-or-create makes the second worker wait
(a retryable error: SQS redelivers it) or use the lead the first one has just made.
"""

from __future__ import annotations

import hashlib

from connector.errors import ConnectorError

from tests.texts.conftest import World, texts_settings

PHONE = "79261231111"


def both_on():
    return texts_settings(chats={"create_lead": {"enabled": True, "on": "chat_finished", "tags": []}})


def ended_chat(world: World, phone: str) -> None:
    chat = world.uis.start_chat(chat_channel_type="comagic", visitor_name="Павел", visitor_phone_number=phone)
    world.uis.take_chat(chat["id"], employee_id=11)
    world.uis.post_message(chat["id"], "Да, в субботу в 11:00", source="operator")
    world.uis.finish_chat(chat["id"])


def test_a_chat_and_a_request_from_one_phone_at_the_same_time_make_one_lead(world: World):
    # Given chats and requests on; a chat from +7 926 123-11-11 ends while the same visitor sends a form
    world.integration(both_on())
    world.notify("chat_finished", "offline_message")
    ended_chat(world, "+7 926 123-11-11")
    world.uis.submit_request(visitor_name="Павел", visitor_phone_number="89261231111", text="Запишите на пробный")
    chat_msg, request_msg = world.messages()
    # When the request's worker runs while the chat's worker is creating the lead (both missed the customer)
    client = world.clients._alfacrm
    original = client.create_customer
    retried: list[dict] = []

    def create_while_the_request_runs(*args, **kwargs):
        if not retried:
            retried.append(request_msg)
            try:
                world.run(request_msg)
            except ConnectorError as exc:
                assert exc.retryable  # SQS redelivers it later
            else:
                retried.pop()
        return original(*args, **kwargs)

    client.create_customer = create_while_the_request_runs  # type: ignore[method-assign]
    world.run(chat_msg)
    client.create_customer = original  # type: ignore[method-assign]
    for msg in retried:  # the redelivery
        world.run(msg)
    # Then one lead, holding the chat's transcript and the request's comment
    [lead] = world.new_customers()
    assert lead["phone"] == ["+79261231111"]
    comments = world.comments(lead["id"])
    assert len(comments) == 2
    assert any("Запишите на пробный" in c for c in comments) and any("Да, в субботу" in c for c in comments)


def test_the_second_worker_uses_the_lead_made_between_its_search_and_its_claim(world: World):
    # Given two requests from one phone; the second's search finds nothing, then the first runs to the end
    world.integration(both_on())
    world.notify("offline_message")
    world.uis.submit_request(visitor_name="Ирина", visitor_phone_number=PHONE, visitor_email=None, text="Первая")
    world.uis.submit_request(visitor_name="Ирина", visitor_phone_number=PHONE, visitor_email=None, text="Вторая")
    first, second = world.messages()
    client = world.clients._alfacrm
    original = client.find_customers
    state = {"raced": False}

    def search_then_the_other_finishes(*args, **kwargs):
        found = original(*args, **kwargs)
        if not state["raced"]:
            state["raced"] = True
            world.run(first)  # creates the lead and releases its claim before the second one claims
        return found

    client.find_customers = search_then_the_other_finishes  # type: ignore[method-assign]
    outcome = world.run(second)
    client.find_customers = original  # type: ignore[method-assign]
    # Then the second request lands on the first one's lead: one lead, both comments
    [lead] = world.new_customers()
    assert not outcome.lead_created and outcome.customer_id == lead["id"]
    comments = world.comments(lead["id"])
    assert any("Первая" in c for c in comments) and any("Вторая" in c for c in comments) and len(comments) == 2


def test_the_contact_claim_names_no_phone_and_costs_nothing_for_a_known_customer(world: World):
    world.integration(both_on())
    world.notify("offline_message")
    claims = {"n": 0}
    original = world.store.texts.claim_contact

    def counting(*args, **kwargs):
        claims["n"] += 1
        return original(*args, **kwargs)

    world.store.texts.claim_contact = counting  # type: ignore[method-assign]
    # When a new visitor's request makes a lead, and a second request from that phone reuses it
    world.uis.submit_request(visitor_name="Ирина", visitor_phone_number=PHONE, text="Первая")
    world.deliver()
    world.uis.submit_request(visitor_name="Ирина", visitor_phone_number="8 926 123-11-11", text="Вторая")
    [reused] = world.deliver()
    # Then one claim, for the creation only
    assert claims["n"] == 1 and not reused.lead_created and len(world.new_customers()) == 1
    # and the state table keys the claim by a hash: no phone or e-mail in it
    items = list(world.store.table.query("INT#int1", "LEADCLAIM#"))
    assert len(items) == 1
    text = str(items[0])
    assert "9261231111" not in text and "irina" not in text.lower()
    assert items[0]["sk"] != "LEADCLAIM#" + hashlib.sha256(b"+79261231111").hexdigest()  # salted per integration
