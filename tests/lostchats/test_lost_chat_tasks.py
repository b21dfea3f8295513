"""Exactly one AlfaCRM task per lost chat, whichever source reports it and however often."""

from __future__ import annotations

import contextlib
from datetime import date

from tests.lostchats.conftest import MANAGER_IDS, World, settings_doc

ANNA_PHONE = "79161234567"  # the AlfaCRM sandbox holds "Смирнова Анна Сергеевна" with +7(916)123-45-67


def lost_chat(world: World, *, notify: bool, **spec: object) -> int:
    spec.setdefault("visitor_name", "Анна")
    spec.setdefault("visitor_phone_number", ANNA_PHONE)
    spec.setdefault("chat_channel_id", 302)  # WhatsApp школы
    chat = world.uis.start_chat(**spec)
    world.advance(2)
    world.uis.lose_chat(chat["id"], notify=notify)
    return int(chat["id"])


def test_notification_only_creates_one_task_linked_assigned_and_due(world: World) -> None:
    # Given an integration with lost-chat tasks, and a known customer who lost a chat (UIS notified)
    integration = world.integration()
    chat_id = lost_chat(world, notify=True)
    # When the notification reaches the worker
    assert world.deliver_notifications(integration) == ["created"]
    # Then AlfaCRM holds one task: the rendered title, the customer, the managers, due tomorrow, branch 1
    [task] = world.alfacrm_tasks()
    assert task["title"] == f"Потерянный чат: Анна {ANNA_PHONE} (WhatsApp школы)"
    anna = next(c for c in world.alfacrm.state()["customers"] if "Смирнова" in c["name"])
    assert task["customer_ids"] == [anna["id"]]
    assert task["assigned_ids"] == MANAGER_IDS
    assert task["branch_ids"] == [1]
    assert task["due_date"] in {"15.03.2025", "2025-03-15", str(date(2025, 3, 15))}
    assert f"Чат UIS №{chat_id}" in task["text"]
    assert "Канал: WhatsApp школы" in task["text"]


def test_the_same_notification_three_times_makes_one_task(world: World) -> None:
    integration = world.integration()
    lost_chat(world, notify=True)
    sent = list(world.outbox.sent)
    world.outbox.sent.extend(sent * 2)  # UIS (or the intake's redelivery) repeats it twice more
    assert world.deliver_notifications(integration) == ["created", "done", "done"]
    assert len(world.alfacrm_tasks()) == 1


def test_poller_only_creates_one_task(world: World) -> None:
    # Given a lost chat whose notification never came
    integration = world.integration()
    chat_id = lost_chat(world, notify=False)
    # When the poller runs (twice: the second run re-reads the overlap) and the worker drains the queue
    world.poll()
    world.advance(5)
    world.poll()
    assert world.drain_queue(integration) == ["created"]
    # Then one task, one lost_chat event
    # (the report has no visitor name: the customer found by phone gives it)
    assert [t["title"] for t in world.alfacrm_tasks()] == [
        f"Потерянный чат: Смирнова Анна Сергеевна {ANNA_PHONE} (WhatsApp школы)"
    ]
    assert [e["payload"]["id"] for e in world.queued("lost_chat")] == [chat_id]


def test_notification_first_then_poller_makes_one_task(world: World) -> None:
    integration = world.integration()
    lost_chat(world, notify=True)
    world.deliver_notifications(integration)
    world.poll()
    world.drain_queue(integration)
    # the poller saw the task done and announced nothing
    assert world.queued("lost_chat")[1:] == []
    assert len(world.alfacrm_tasks()) == 1


def test_poller_first_then_late_notification_makes_one_task(world: World) -> None:
    integration = world.integration()
    lost_chat(world, notify=True)
    late = list(world.outbox.sent)
    world.outbox.sent.clear()
    world.poll()
    assert world.drain_queue(integration) == ["created"]
    world.outbox.sent.extend(late)  # the notification arrives after all
    assert world.deliver_notifications(integration) == ["done"]
    assert len(world.alfacrm_tasks()) == 1


def test_a_lost_chat_outside_the_channel_filter_creates_nothing(world: World) -> None:
    # Given tasks only for the site widget, and a chat lost on WhatsApp
    integration = world.integration(settings_doc(filters={"sites": [], "channels": ["comagic"], "tags": []}))
    lost_chat(world, notify=True)
    # When both sources report it
    outcomes = world.deliver_notifications(integration)
    world.poll()
    outcomes += world.drain_queue(integration)
    # Then no task
    assert all(o.startswith("skipped: channel") for o in outcomes) and outcomes
    assert world.alfacrm_tasks() == []


def test_an_unknown_visitor_gets_a_task_without_a_customer(world: World) -> None:
    integration = world.integration(settings_doc(create_lead={"enabled": False, "on": "chat_finished", "tags": []}))
    lost_chat(world, notify=True, visitor_name=None, visitor_phone_number="79990001122")
    world.deliver_notifications(integration)
    [task] = world.alfacrm_tasks()
    assert task["customer_ids"] == []
    assert task["title"] == "Потерянный чат: 79990001122 (WhatsApp школы)"


def test_a_claim_held_by_a_live_worker_defers_and_a_dead_ones_is_taken_over(world: World) -> None:
    # Given a worker that claimed the chat's task and died before calling AlfaCRM
    integration = world.integration()
    lost_chat(world, notify=True)
    chat_id = world.uis.state()["chats"][-1]["id"]
    texts = world.store.texts
    texts.claim_lost_task(integration.id, chat_id, token="dead", now=world.clock.epoch(), stale_after=900)
    sent = list(world.outbox.sent)
    # When the notification is handled while that claim is fresh, Then it is deferred (retryable)
    from connector.texts.lost_chats import LostChatTaskBusy

    try:
        world.deliver_notifications(integration)
        raise AssertionError("a fresh claim must defer")
    except LostChatTaskBusy as busy:
        assert busy.retryable
    assert world.alfacrm_tasks() == []
    # When it comes back after the claim went stale, Then the task is created once
    world.advance(16)
    world.outbox.sent[:] = sent
    assert world.deliver_notifications(integration) == ["created"]
    assert len(world.alfacrm_tasks()) == 1


def test_a_holder_that_died_after_creating_the_task_is_not_repeated(world: World) -> None:
    # Given a worker that created the task in AlfaCRM and died before recording it (claim left "sending")
    integration = world.integration()
    lost_chat(world, notify=True)
    sent = list(world.outbox.sent)
    assert world.deliver_notifications(integration) == ["created"]
    chat_id = world.uis.state()["chats"][-1]["id"]
    texts = world.store.texts
    done = texts.lost_task(integration.id, chat_id)
    texts.update_lost_task(integration.id, chat_id, done, state="sending", claimed_at=world.clock.epoch())
    # When the notification is redelivered after the claim went stale
    world.advance(16)
    world.outbox.sent[:] = sent
    # Then the task is found in AlfaCRM and not created again
    outcomes = world.deliver_notifications(integration)
    assert len(world.alfacrm_tasks()) == 1
    assert outcomes == ["recovered"]


def test_a_holder_that_died_after_creating_a_task_named_after_the_customer_is_not_repeated(world: World) -> None:
    from connector.texts.facts import report_chat_facts

    # Given a lost chat only the poller saw (its report row has no visitor name: the task took the customer's)
    integration = world.integration()
    chat_id = lost_chat(world, notify=False)
    world.poll()
    assert world.drain_queue(integration) == ["created"]
    [task] = world.alfacrm_tasks()
    assert "Смирнова Анна Сергеевна" in task["title"]
    # and a holder that died right after AlfaCRM created it (the claim left in "sending")
    texts = world.store.texts
    done = texts.lost_task(integration.id, chat_id)
    texts.update_lost_task(integration.id, chat_id, done, state="sending", claimed_at=world.clock.epoch())
    # When the same report row is handled again after the claim went stale
    world.advance(16)
    row = next(r for r in world.report_rows() if r["id"] == chat_id)
    outcome = world.tasks().handle(integration, report_chat_facts(row, "Europe/Moscow"))
    # Then the task is found in AlfaCRM, not created a second time
    assert outcome == "recovered" and len(world.alfacrm_tasks()) == 1


def test_polled_lost_chats_of_strangers_get_their_names_from_get_visitors_in_one_call(world: World) -> None:
    """A visitor's name and e-mail are in no chat report (report/get_chats_report); get.visitors has them
    (person/get_visitors). Three lost chats found by the poller, none known to AlfaCRM: one get.visitors call,
    and each task title says who it was."""
    integration = world.integration()
    for name, phone in (("Ира", "79260000001"), ("Кирилл", "79260000002"), ("Зоя", "79260000003")):
        lost_chat(world, notify=False, visitor_name=name, visitor_phone_number=phone)
    world.poll()
    world.drain_queue(integration)
    titles = sorted(t["title"] for t in world.alfacrm_tasks())
    assert titles == [
        "Потерянный чат: Зоя 79260000003 (WhatsApp школы)",
        "Потерянный чат: Ира 79260000001 (WhatsApp школы)",
        "Потерянный чат: Кирилл 79260000002 (WhatsApp школы)",
    ]
    assert [c["method"] for c in world.uis.rpc_log].count("get.visitors") == 1


def test_without_the_visitors_component_a_polled_lost_chat_still_gets_its_task(world: World) -> None:
    """No «Data API для настройки»: the connector says so (once) and falls back to what the chat report has."""
    integration = world.integration()
    world.uis.set_components(disabled=["data_api_setup"])
    lost_chat(world, notify=False, visitor_name="Ира", visitor_phone_number="79260000001")
    lost_chat(world, notify=False, visitor_name="Зоя", visitor_phone_number="79260000003")
    world.poll()
    assert world.drain_queue(integration) == ["created", "created"]
    assert len(world.alfacrm_tasks()) == 2 and world.store.integrations.parked(integration.id) == []
    # asked once, not once per chat: the answer is remembered
    assert [r["method"] for r in world.uis.refused] == ["get.visitors"]


def test_a_copy_handled_while_a_task_create_whose_answer_was_lost_may_still_land_makes_one_task(
    world: World,
) -> None:
    """AlfaCRM answered the task's create 504 and carries it out a moment later (PHP goes on after the
    gateway's timeout): a second copy of the notification handled at once must not read AlfaCRM before that
    write lands and create the task again. It waits one AlfaCRM read timeout, then reads back."""
    from connector.errors import AlfaCrmUnavailable
    from connector.texts.lost_chats import LostChatTaskBusy

    integration = world.integration()
    lost_chat(world, notify=True)
    sent = list(world.outbox.sent)
    world.alfacrm.answer_504_then_apply("task")
    # the first copy: the create is answered 504
    try:
        world.deliver_notifications(integration)
        raise AssertionError("the lost answer must reach the worker (an SQS retry)")
    except AlfaCrmUnavailable as lost:
        assert getattr(lost, "ambiguous", False)
    # the second copy, at once (another container): AlfaCRM holds no task yet
    world.outbox.sent[:] = sent
    with contextlib.suppress(LostChatTaskBusy):  # tried again later (SQS)
        world.deliver_notifications(integration)
    assert world.alfacrm.land_late_writes() == 1  # the first create lands
    # the retries, one read timeout later: the task is found, not made again
    world.advance(1)
    world.outbox.sent[:] = sent
    outcomes = world.deliver_notifications(integration)
    assert len(world.alfacrm_tasks()) == 1
    assert outcomes == ["recovered"]
