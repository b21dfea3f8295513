"""pytest plugin: every log line and every stdout/stderr line of the suite, kept with the test that wrote it,
and every credential the suite handed to the product, so tests/test_logscan.py (run last) can show that no
line holds a credential, a webhook secret or a full phone number (issue 9).

What is kept: the sections pytest captures for each test phase (stdout, stderr, log records). What counts
as a credential: the fixed test and sandbox credentials below, plus each value that passed through the
product while the suite ran — the api_key and access_token of every AlfaCRM and UIS client made, every
AlfaCRM session token a login returned, every set of credentials stored (with both webhook secrets), the
plaintext data key that seals them, every school access token issued and every local stack's admin token.

Which lines are the product's: on Lambda a log line is a record of the connector's loggers, the JSON line
Powertools' logger prints (masked by connector.observability), or a metric line (EMF). pytest's rendering of a
Powertools record shows the unmasked message (the masking is the JSON formatter's), so those renderings are
skipped for the Powertools logger and kept for every other logger (on Lambda those reach the runtime's handler as
they are). werkzeug's access lines come from the local stack's and the sandboxes' servers (API Gateway's
access log names the route, never the path): skipped. Other stdout lines are prints of tests and tools:
scanned for credentials and secrets, not for phones (the demo narrates its customers' phones).
"""

from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

POWERTOOLS_LOGGER = "alfacrm-uis-connector"
TOOLING_LOGGERS = ("werkzeug",)
_LOG_LINE = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(?P<logger>[\w.-]+):")
# a webhook URL with its secret: /hooks/<kind>/<integration id>/<secret of ≥ 16 URL-safe characters>
HOOK_URL = re.compile(r"/hooks/(?:alfacrm|uis)/[^/\s\"']+/(?P<secret>[A-Za-z0-9_-]{16,})")
# a full Russian mobile number, as typed or as digits (a masked one is ***67)
PHONE = re.compile(r"(?<![\w.+-])(?:\+7|8|7)[\s(-]*9\d\d[\s)-]*\d{3}[\s-]*\d\d[\s-]*\d\d(?![\w-])")
MIN_SECRET = 8  # shorter values (test keys like "k-123") would match unrelated text


@dataclass(frozen=True)
class Line:
    nodeid: str
    section: str  # "Captured stdout call", "Captured log setup", …
    text: str
    product: bool  # a log line the product writes in AWS (not a print of a test or a tool)


@dataclass
class Registry:
    lines: list[Line] = field(default_factory=list)
    credentials: dict[str, str] = field(default_factory=dict)  # value → what it is
    tests_run: int = 0

    def credential(self, value: Any, what: str) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET:
            self.credentials.setdefault(value, what)


REGISTRY = Registry()


def findings(lines: list[Line], credentials: dict[str, str]) -> list[str]:
    """Each line holding a credential, a webhook URL with its secret, or (in a product line) a full phone."""
    out = []
    for line in lines:
        for value, what in credentials.items():
            if value in line.text:
                out.append(f"{what} in {line.section} of {line.nodeid}")
        if HOOK_URL.search(line.text):
            out.append(f"a webhook URL with its secret in {line.section} of {line.nodeid}")
        if line.product and PHONE.search(line.text):
            out.append(f"a full phone number in {line.section} of {line.nodeid}")
    return sorted(set(out))


def _lines(nodeid: str, section: str, content: str) -> list[Line]:
    out = []
    is_log = section.startswith("Captured log")
    logger = ""
    for text in content.splitlines():
        match = _LOG_LINE.match(text) if is_log else None
        if match:
            logger = match.group("logger")  # continuation lines (a traceback) belong to the record above
        if is_log and (logger == POWERTOOLS_LOGGER or logger.startswith(TOOLING_LOGGERS)):
            continue
        product = is_log or text.lstrip().startswith(('{"level":', '{"_aws":'))  # a log line or a metric (EMF)
        out.append(Line(nodeid, section, text, product))
    return out


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        REGISTRY.tests_run += 1
    for title, content in report.sections:
        if title.startswith("Captured") and title.endswith(f" {report.when}"):
            REGISTRY.lines.extend(_lines(report.nodeid, title, content))


def _recording(cls: Any, name: str, record: Any) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        record(self, args, kwargs, result)
        return result

    setattr(cls, name, wrapper)


def pytest_sessionstart(session: pytest.Session) -> None:
    from connector import access, secrets
    from connector.alfacrm.client import AlfaCrmClient
    from connector.uis.client import UisClient

    from tests.api.builders import ALFA_SECRET, UIS_SECRET
    from tests.conftest import ADMIN_TOKEN
    from tools.localstack import LocalStack
    from tools.sandboxes import alfacrm, uis

    fixed = {
        ADMIN_TOKEN: "the admin token",
        alfacrm.DEFAULT_API_KEY: "an AlfaCRM API key",
        alfacrm.MANAGER_API_KEY: "an AlfaCRM API key",
        uis.DEFAULT_TOKEN: "a UIS access token",
        ALFA_SECRET: "a webhook secret",
        UIS_SECRET: "a webhook secret",
    }
    for value, what in fixed.items():
        REGISTRY.credential(value, what)

    def client_credentials(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        if isinstance(self, AlfaCrmClient):
            REGISTRY.credential(kwargs.get("api_key", args[2] if len(args) > 2 else None), "an AlfaCRM API key")
        else:
            REGISTRY.credential(kwargs.get("access_token", args[1] if len(args) > 1 else None), "a UIS access token")

    _recording(AlfaCrmClient, "__init__", client_credentials)
    _recording(UisClient, "__init__", client_credentials)
    _recording(
        AlfaCrmClient, "login", lambda self, args, kwargs, token: REGISTRY.credential(token, "an AlfaCRM session token")
    )
    _recording(
        LocalStack, "__init__", lambda self, args, kwargs, _: REGISTRY.credential(self.admin_token, "the admin token")
    )

    def stored_credentials(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any], _: Any) -> None:
        creds = kwargs.get("creds", args[1] if len(args) > 1 else None)
        REGISTRY.credential(creds.alfacrm_api_key, "an AlfaCRM API key")
        REGISTRY.credential(creds.uis_access_token, "a UIS access token")
        REGISTRY.credential(creds.alfacrm_webhook_secret, "a webhook secret")
        REGISTRY.credential(creds.uis_webhook_secret, "a webhook secret")

    _recording(secrets.Secrets, "store_credentials", stored_credentials)

    def data_key(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any], key: bytes) -> None:
        # the plaintext data key that seals every school's credentials, in each spelling a log line could use
        for spelling in (base64.b64encode(key).decode("ascii"), key.hex(), repr(key)[2:-1]):
            REGISTRY.credential(spelling, "the credentials' data key")

    _recording(secrets.Secrets, "_data_key", data_key)
    issue = access.issue

    @functools.wraps(issue)
    def issue_access(*args: Any, **kwargs: Any) -> Any:
        issued = issue(*args, **kwargs)
        REGISTRY.credential(issued.get("token"), "a school access token")
        return issued

    access.issue = issue_access  # type: ignore[assignment]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The scan runs after every other test of the session."""
    scans = [item for item in items if item.nodeid.startswith("tests/test_logscan.py::test_the_whole_suite")]
    for item in scans:
        items.remove(item)
    items.extend(scans)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REGISTRY.lines:
        terminalreporter.write_sep("-", "log scan")
        terminalreporter.write_line(
            f"{len(REGISTRY.lines)} captured lines of {REGISTRY.tests_run} tests scanned for "
            f"{len(REGISTRY.credentials)} credentials, webhook URLs with secrets and full phone numbers"
        )
