"""Issue 9, defect 2: every text event the intake accepts ends done, skipped, parked under its own key, or in a
dead-letter queue — none is acknowledged and then lost.

A property over random UIS notifications (hypothesis): each is posted to the UIS intake as UIS would (GET query
or POST body, the event named in the URL or not), whatever the intake accepts is taken off the real text queue
and run through the text worker like SQS would (a retryable failure is delivered again, up to the queues'
maxReceiveCount, then counts as dead-lettered). Then

    accepted = done + skipped + parked + dead-lettered

and every parked event is its own parked item: two different events never share a key, so none overwrites
another (a fuzz run once acknowledged 316 events and left 4 parked items: `cNone`, `chatNone#lost_chat`).
The same notification delivered twice is one event.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import count

from connector.errors import BadRequest, ConnectorError, NotFound
from connector.intake import accept_uis, hash_secret
from connector.models.messages import TEXT_EVENTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEMPLATE
from tests.texts.conftest import World

SECRET = "s" * 32
MAX_RECEIVES = int(TEMPLATE.queues["TextEventsQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"])
_ids = count(1)

nothing = st.sampled_from([None, "", "null", "{{chat_id}}"])
# An id field is absent, one of UIS's spellings of "nothing", or the notification's own number in one of the
# spellings UIS uses: two notifications never name the same chat, request or communication, so each one that
# names one is a different event; one that names none is told apart by what it says.
ID_FIELDS = ("chat_id", "communication_id", "offline_message_id", "id")
id_form = st.one_of(nothing, st.sampled_from(["int", "str", "float"]))
phone = st.one_of(nothing, st.sampled_from(["79161234567", "+7 (916) 765-43-21", "12", "not a phone"]))
text = st.one_of(nothing, st.text(max_size=12))
fields = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(ID_FIELDS, id_form),
        "tag_id": st.one_of(nothing, st.integers(1, 3)),
        "tag_name": text,
        "status": st.sampled_from(["finished", "lost", None]),
        "visitor_phone_number": phone,
        "visitor_email": st.sampled_from(["a@b.ru", "", "broken@"]),
        "visitor_name": text,
        "visitor_message": text,
        "form_type": st.sampled_from(["standard", "callback", None]),
        "site_domain_name": st.sampled_from(["school.ru", "other.ru", None]),
        "chat_channel_type": st.sampled_from(["whatsapp", "comagic", None]),
        "messages": st.sampled_from(["[]", '[{"text": "Привет", "source": "visitor"}]', "просто текст", None]),
    },
)
notification = st.fixed_dictionaries(
    {
        "event": st.one_of(st.none(), st.sampled_from(sorted(TEXT_EVENTS))),
        "method": st.sampled_from(["GET", "POST"]),
        "fields": fields,
    }
)


def _own_ids(n: dict, number: int) -> dict:
    """The notification's id fields filled with its own number (10·n + k), spelled as the form says."""
    out = dict(n["fields"])
    for k, name in enumerate(ID_FIELDS):
        form = out.get(name)
        value = 10 * number + k
        if form in ("int", "str", "float"):
            out[name] = {"int": value, "str": str(value), "float": f"{value}.0"}[form]
    return {**n, "fields": out}


def _post(world: World, iid: str, n: dict) -> bool:
    """One notification to the intake as UIS sends it; → whether it was accepted (200, queued)."""
    values = {k: v for k, v in n["fields"].items() if v is not None}
    query = {"event": n["event"]} if n["event"] else {}
    try:
        if n["method"] == "GET":
            query |= {k: str(v) for k, v in values.items()}
            accepted = accept_uis(world.rt, iid, SECRET, method="GET", body=b"", query=query)
        else:
            body = json.dumps(values).encode()
            accepted = accept_uis(world.rt, iid, SECRET, method="POST", body=body, query=query)
    except (BadRequest, NotFound):
        return False  # a 4xx: UIS is told, nothing was acknowledged
    return accepted.queued


def _drain(world: World, sqs, url: str) -> list[str]:
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _deliver(world: World, body: str) -> str:
    """The body through the worker as SQS would deliver it: again after a retryable failure, up to the DLQ."""
    for _ in range(MAX_RECEIVES):
        try:
            return world.worker().handle(body).status
        except ConnectorError as exc:
            assert exc.retryable, f"a non-retryable error escaped the worker: {exc!r}"
    return "dead_lettered"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(notification, min_size=1, max_size=12))
def test_every_accepted_text_event_ends_done_skipped_parked_or_dead_lettered(world, sqs, queue_urls, batch):
    # Given an active integration with requests and chats on (a fresh one per example)
    iid = f"acct{next(_ids)}"
    integration = world.integration(iid=iid)
    world.store.integrations.t.update_fields(
        f"INT#{iid}", "META", {"uis_webhook_secret_hash": hash_secret(SECRET)}
    )  # the intake checks the URL secret
    world.store.integrations.get(iid, fresh=True)
    # When UIS sends the notifications, and the worker takes what the intake queued
    accepted = sum(_post(world, integration.id, _own_ids(n, i)) for i, n in enumerate(batch, 1))
    bodies = _drain(world, sqs, queue_urls["TextEventsQueue"])
    assert len(bodies) == accepted
    ends = [(_deliver(world, body), _says(body)) for body in bodies]
    # Then each accepted event has exactly one end, and every parked event is its own parked item
    outcomes = Counter(status for status, _ in ends)
    assert set(outcomes) <= {"done", "skipped", "parked", "dead_lettered"}
    assert sum(outcomes.values()) == accepted
    parked_events = {says for status, says in ends if status == "parked"}
    parked_items = world.store.integrations.parked(iid)
    assert len(parked_items) == len(parked_events), [p.key for p in parked_items]


def _says(body: str) -> tuple:
    """What a delivery says (the same notification sent by GET and by POST says the same: one event)."""
    message = json.loads(body)
    return message.get("event"), tuple(sorted((k, str(v)) for k, v in message["payload"].items()))
