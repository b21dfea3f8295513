"""Issue 12.7: what each handler loads at init (`import app`), counted in modules, never timed.

Each handler is imported in a fresh interpreter with the function's template environment, as Lambda's init
does; the test names the connector modules a handler must not load before its first invocation needs them:
the clients (`connector.accounts` builds them at first use), the other pipeline's use cases and stores, and
the admin's execution-log views. tools/coldstart.py measures what the rest costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TEMPLATE
from tools.localstack import samenv

LAYER = ROOT / "layers" / "shared" / "python"

_LOADED = r"""
import sys, json
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import app
print(json.dumps(sorted(n for n in sys.modules if n == "connector" or n.startswith("connector."))))
"""

CLIENTS = ("connector.accounts", "connector.alfacrm.client", "connector.uis.client", "connector.uis.points")
DEALS = ("connector.deals", "connector.store.deals", "connector.models.deals", "connector.uis.deal_rows")
TEXTS = ("connector.texts", "connector.store.texts", "connector.models.texts", "connector.uis.notifications")
ADMIN_VIEWS = ("connector.health", "connector.replay", "connector.lifecycle", "connector.admin")

# function folder → modules (and their submodules) its init must not import
MUST_NOT_LOAD: dict[str, tuple[str, ...]] = {
    "alfacrm_webhook": CLIENTS + DEALS + TEXTS + ADMIN_VIEWS,
    "uis_webhook": CLIENTS + DEALS + TEXTS + ADMIN_VIEWS,
    "pages": CLIENTS + DEALS + TEXTS + ADMIN_VIEWS + ("connector.models.messages", "connector.alfacrm"),
    "deal_worker": ("connector.accounts", "connector.store.deals", *TEXTS, "connector.replay", "connector.admin"),
    "deal_uploader": (
        "connector.accounts",
        "connector.alfacrm.client",
        "connector.models.messages",
        *TEXTS,
        *ADMIN_VIEWS,
    ),
    "reconciler": ("connector.accounts", "connector.store.deals", *TEXTS, *ADMIN_VIEWS),
    "text_worker": ("connector.accounts", *DEALS, "connector.replay", "connector.admin"),
    "chat_poller": ("connector.accounts", "connector.alfacrm.client", *DEALS, *ADMIN_VIEWS),
    # a tick reads the work index and sends work items: neither pipeline, no client
    "scheduler": CLIENTS + DEALS + TEXTS + ADMIN_VIEWS,
    "jobs": ("connector.accounts", "connector.alfacrm.client", "connector.deals", "connector.texts", "connector.admin"),
    # the replay reads parked text events (uis.text_queue) without the notification parser and its models
    "admin_api": ("connector.accounts", "connector.alfacrm.client", *TEXTS),
}


def _environment(folder: str) -> dict[str, str]:
    template = TEMPLATE
    function_id = next(lid for lid, fn in template.functions.items() if fn.code_uri.strip("/").endswith(folder))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    env.update(AWS_REGION="eu-central-1", AWS_DEFAULT_REGION="eu-central-1", AWS_LAMBDA_FUNCTION_NAME=function_id)
    env.update(samenv.build(template)[function_id])
    return env


def loaded_at_init(folder: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-B", "-c", _LOADED, str(ROOT / "functions" / folder), str(LAYER)],
        env=_environment(folder), capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_every_handler_is_named() -> None:
    assert sorted(MUST_NOT_LOAD) == sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").is_file())


@pytest.mark.parametrize("folder", sorted(MUST_NOT_LOAD))
def test_init_loads_only_what_the_handler_needs_at_once(folder: str) -> None:
    loaded = loaded_at_init(folder)
    assert "connector.runtime" in loaded  # the handler was imported for real
    forbidden = MUST_NOT_LOAD[folder]
    unwanted = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert unwanted == [], f"{folder} imports at init what it needs only later (or never): {unwanted}"


_BUILT = r"""
import sys, json
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import app
from pydantic import BaseModel
mods = ("connector.models.deals", "connector.models.sync", "connector.models.events", "connector.models.messages")
built = [f"{m}.{n}" for m in mods for n, c in vars(sys.modules[m]).items()
         if isinstance(c, type) and issubclass(c, BaseModel) and c.__module__ == m and c.__pydantic_complete__]
print(json.dumps(built))
"""


def test_admin_init_leaves_route_models_unbuilt() -> None:
    # built at first validation (`defer_build`): the admin API needs these on a few routes only
    folder = "admin_api"
    done = subprocess.run(
        [sys.executable, "-B", "-c", _BUILT, str(ROOT / "functions" / folder), str(LAYER)],
        env=_environment(folder), capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    # the SQS envelopes subclass Powertools' SqsRecordModel (the workers parse with them), not the bases here
    envelopes = ["connector.models.messages.DealEventRecord", "connector.models.messages.JobRecord"]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == envelopes
