"""No log line of the whole suite holds a credential, a webhook secret or a full phone number (issue 9).

tests/logscan.py (a plugin tests/conftest.py registers) keeps every captured line with the test that wrote
it and every credential the suite handed to the product; the scan below runs after every other test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.logscan import REGISTRY, Line, findings


def test_the_scan_finds_each_kind_of_leak_and_names_the_test_that_logged_it():
    credentials = {"sandbox-api-key-5f2b9c0e7a1d": "an AlfaCRM API key"}
    lines = [
        Line("tests/a.py::t1", "Captured stdout call", '{"level":"INFO","key":"sandbox-api-key-5f2b9c0e7a1d"}', True),
        Line("tests/a.py::t2", "Captured log call", "INFO connector.x:x.py:1 POST /hooks/uis/0a1b/" + "u" * 24, True),
        Line("tests/a.py::t3", "Captured stdout setup", '{"level":"INFO","message":"call +7 (916) 123-45-67"}', True),
        Line("tests/a.py::t4", "Captured log call", "INFO connector.x:x.py:1 phone 89161234567 called", True),
        # masked, a date, an id, a print of a tool: nothing to report
        Line("tests/a.py::ok", "Captured stdout call", '{"level":"INFO","phone":"***67","at":"2026-11-25 06"}', True),
        Line("tests/a.py::ok", "Captured log call", "INFO connector.x:x.py:1 chat 79160000 deal 1796119448801", True),
        Line("tests/a.py::ok", "Captured stdout call", "3) a chat from +7(916)123-45-67", False),
    ]
    assert findings(lines, credentials) == [
        "a full phone number in Captured log call of tests/a.py::t4",
        "a full phone number in Captured stdout setup of tests/a.py::t3",
        "a webhook URL with its secret in Captured log call of tests/a.py::t2",
        "an AlfaCRM API key in Captured stdout call of tests/a.py::t1",
    ]


def _whole_suite(config: pytest.Config) -> bool:
    tests = Path(__file__).resolve().parent
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args] or [tests]
    return paths == [tests] and not config.option.keyword and not config.option.markexpr


def test_the_whole_suite_logs_no_credential_webhook_secret_or_full_phone_number(request: pytest.FixtureRequest):
    if not _whole_suite(request.config):
        pytest.skip("the scan reads the lines of the whole suite: run it with every test (make test)")
    # not vacuous: the handlers logged, the product was handed credentials, webhook secrets among them
    assert len(REGISTRY.lines) > 1_000
    assert {
        "an AlfaCRM API key",
        "a UIS access token",
        "a webhook secret",
        "an AlfaCRM session token",
        "a school access token",
    } <= set(REGISTRY.credentials.values())
    assert findings(REGISTRY.lines, REGISTRY.credentials) == []
