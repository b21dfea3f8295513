"""One school's hung or failing account must not delay another's work: every external call's time is bounded
below the worker's timeout, and every event carries its school as the message group (fair queues)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from connector.alfacrm import client as alfacrm_client
from connector.retry import RetryPolicy
from connector.runtime import container
from connector.uis import client as uis_client

from tests.api.builders import stored_integration
from tests.handlers import load_handler
from tools.localstack.template import Template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Template.load(ROOT / "template.yaml")
# which external APIs each queue worker calls
CALLS = {
    "DealWorkerFunction": ("alfacrm",),
    "TextWorkerFunction": ("alfacrm", "uis"),
    "DealUploaderFunction": ("uis",),
    "ChatPollerFunction": ("uis",),
    "ReconcilerFunction": ("alfacrm", "uis"),
}
TIMEOUTS = {"alfacrm": alfacrm_client.TIMEOUT, "uis": uis_client.TIMEOUT}


@pytest.mark.parametrize("function", sorted(CALLS))
def test_every_tries_of_an_external_call_end_before_the_worker_times_out(function: str) -> None:
    """A hung account (it answers nothing) costs its own worker at most tries × (connect + read) seconds, and
    that ends within the worker's timeout: the message is never re-run while the first run still hangs."""
    timeout = TEMPLATE.functions[function].timeout
    attempts = RetryPolicy().attempts
    for api in CALLS[function]:
        per_try = (TIMEOUTS[api].connect or 0) + (TIMEOUTS[api].read or 0)
        assert attempts * per_try < timeout, (function, api, attempts, per_try, timeout)


def _group_ids(sqs: Any, url: str) -> list[str]:
    reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    return [m["Attributes"].get("MessageGroupId") for m in reply.get("Messages", [])]


def test_every_event_carries_its_school_as_message_group(sqs: Any, queue_urls: dict[str, str], lambda_context) -> None:
    """Standard queues with a message group per school are Amazon SQS fair queues: one school's burst (a mass
    import in AlfaCRM) does not hold back another school's events."""
    stored_integration(container().store)
    for name in ("alfacrm_webhook.json", "uis_webhook_post.json"):
        event = json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))
        assert load_handler(name.split("_webhook")[0] + "_webhook")(event, lambda_context)["statusCode"] == 200
    assert _group_ids(sqs, queue_urls["DealEventsQueue"]) == ["0a1b2c3d"]
    assert _group_ids(sqs, queue_urls["TextEventsQueue"]) == ["0a1b2c3d"]
