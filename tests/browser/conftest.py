"""Browser tests: headless Debian Chromium driven by Playwright, against one local stack per module.

Chromium missing: skipped on a developer's machine, a failure in CI (`CI=true`), so a CI run can never pass
without having run them. `.ci/run` installs the `chromium` package; Playwright comes with the dev group.
Screenshots go to docs/screenshots/ with `UPDATE_SCREENSHOTS=1` (`make screenshots`), else to a temporary
folder (taken either way, so the code that takes them is exercised).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from connector.runtime import install

from tests.conftest import ADMIN_TOKEN, REGION, STACK_NAME, _empty_table, runtime

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (uv sync installs the dev group)")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"{CHROMIUM} not found (apt-get install -y chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(autouse=True)
def clean_aws() -> Iterator[None]:
    """The module's stack keeps its state across the module's tests (the root fixture would empty it)."""
    yield


@pytest.fixture(scope="module")
def stack(_aws_resources: dict[str, dict[str, str]], dynamodb: Any, secretsmanager: Any) -> Iterator[Any]:
    """One local stack with both sandboxes and the demo integration for the whole module."""
    from tools.localstack import LocalStack

    # new containers: the demo is created before the first test installs its runtime, and the previous
    # test's would seal with a data key it remembers from a table since emptied (CREDKEY never written)
    install(runtime())
    local = LocalStack(
        sandbox=True, stack_name=STACK_NAME, region=REGION, admin_token=ADMIN_TOKEN, run_schedules=False, out=print
    )
    local.start()
    yield local
    local.stop()
    for name in _aws_resources["tables"].values():
        _empty_table(dynamodb, name)
    keep = set(_aws_resources["secret_names"].values())
    for page in secretsmanager.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        for secret in page["SecretList"]:
            if secret["Name"] not in keep:
                secretsmanager.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh context (own cache and sessionStorage) per test; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="ru-RU")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.page_errors = errors
    yield tab
    context.close()
    assert not errors, errors
