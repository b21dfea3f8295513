"""Every file in events/ is a real Lambda event for an existing handler; the API ones behave as a user expects.

`sam local invoke -e events/<file> --env-vars events/env.json` needs Docker, which we don't have here;
these tests keep the files valid by invoking the handlers with them and by checking them against
template.yaml (stage, resource paths with their `{id}`/`{secret}` templates, path parameters, queues).
File names: `<function dir>[_<variant>].json`; env.json is the `--env-vars` file (`make sam-env`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.api.builders import stored_integration
from tests.handlers import load_handler
from tools.localstack import samenv
from tools.localstack.template import Template

TEMPLATE = Template.load(Path(__file__).resolve().parent.parent / "template.yaml")
FUNCTION_OF_DIR = {fn.code_uri.strip("/").removeprefix("functions/"): lid for lid, fn in TEMPLATE.functions.items()}

ROOT = Path(__file__).resolve().parent.parent
EVENTS = sorted(p for p in (ROOT / "events").glob("*.json") if p.name != "env.json")
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
    "pages_ui.json": (None, 200),
    "pages_ui_file.json": (None, 200),
    "pages_widget.json": (None, 200),
    "pages_docs.json": (None, 200),
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
    elif name.startswith("admin_api"):
        assert [i["id"] for i in json.loads(reply["body"])["items"]] == ["0a1b2c3d"]
    else:
        assert reply["body"] and reply["headers"]["Content-Type"].split(";")[0] in {"text/html", "text/javascript"}


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.name)
def test_events_match_the_template(path):
    """What `sam local invoke` checks against template.yaml: the route, the stage, the queue."""
    event = json.loads(path.read_text(encoding="utf-8"))
    fn = FUNCTION_OF_DIR[function_of(path)]
    if "httpMethod" in event:
        routes = [
            r
            for r in TEMPLATE.routes
            if r.function_id == fn and r.path == event["resource"] and r.method in ("ANY", event["httpMethod"])
        ]
        assert routes, f"{path.name}: {event['httpMethod']} {event['resource']} is no route of {fn}"
        context = event["requestContext"]
        assert context["stage"] == TEMPLATE.stage_name()
        assert context["resourcePath"] == event["resource"]
        assert context["path"] == f"/{context['stage']}{event['path']}"
        match = routes[0].pattern.match(event["path"]) or routes[0].pattern.match(event["path"].rstrip("/"))
        assert match, f"{event['path']} does not match {event['resource']}"
        assert (event["pathParameters"] or {}) == match.groupdict()
        for key in ("id", "integration_id"):
            if key in match.groupdict():
                assert re.fullmatch(r"[0-9a-f]{1,64}", match.groupdict()[key])
    elif "Records" in event:
        [source] = [s for s in TEMPLATE.sqs_sources if s.function_id == fn]
        for record in event["Records"]:
            assert record["eventSourceARN"].endswith(f":{samenv.STACK_NAME}-{source.queue_id}")
    else:
        assert event["source"] == "aws.scheduler" and any(s.function_id == fn for s in TEMPLATE.schedules)


def test_every_function_has_an_event_file_and_env_json_is_current():
    covered = {FUNCTION_OF_DIR[function_of(p)] for p in EVENTS}
    assert covered == set(TEMPLATE.functions)
    committed = json.loads((ROOT / "events" / "env.json").read_text(encoding="utf-8"))
    assert committed == samenv.build(TEMPLATE), "events/env.json is stale: run `make sam-env`"
    assert committed["AdminApiFunction"]["STATE_TABLE"] == "local-StateTable"
