"""Every file in events/ is a real Lambda event for an existing handler; the API ones behave as a user expects.

`sam local invoke -e events/<file>` needs Docker, which we don't have here; these tests keep the files
valid by invoking the handlers with them. File names: `<function dir>[_<variant>].json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.builders import stored_integration
from tests.handlers import load_handler

ROOT = Path(__file__).resolve().parent.parent
EVENTS = sorted((ROOT / "events").glob("*.json"))
FUNCTION_DIRS = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists())


def function_of(path: Path) -> str:
    matches = [d for d in FUNCTION_DIRS if path.stem == d or path.stem.startswith(d + "_")]
    assert matches, f"{path.name} names no function in functions/"
    return max(matches, key=len)


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.name)
def test_event_file_names_an_existing_handler(path):
    event = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(event, dict) and event
    function_of(path)


API_EXPECTATIONS = {
    "alfacrm_webhook.json": ("DealEventsQueue", 200),
    "uis_webhook_post.json": ("TextEventsQueue", 200),
    "uis_webhook_get.json": ("TextEventsQueue", 200),
    "admin_api_list.json": (None, 200),
}


@pytest.mark.parametrize("name", sorted(API_EXPECTATIONS))
def test_api_events_reach_their_queue(name, sqs, queue_urls, lambda_context, store):
    stored_integration(store)
    event = json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))
    reply = load_handler(function_of(ROOT / "events" / name))(event, lambda_context)
    queue, status = API_EXPECTATIONS[name]
    assert reply["statusCode"] == status, reply.get("body")
    if queue:
        got = sqs.receive_message(QueueUrl=queue_urls[queue], MaxNumberOfMessages=10).get("Messages", [])
        assert len(got) == 1
        assert json.loads(got[0]["Body"])["integration_id"] == "0a1b2c3d"
    else:
        assert [i["id"] for i in json.loads(reply["body"])["items"]] == ["0a1b2c3d"]
