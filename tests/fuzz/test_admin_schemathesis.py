"""The admin API fuzzed from its OpenAPI document (schemathesis), in process: every operation of
docs/openapi.json under /integrations, with generated valid and invalid parameters and bodies, through the
handler as API Gateway would call it. Never a 5xx; every error reply in the contract's shape.

The admin runs with the AWS rules for hosts (public https names; DNS taken as public) and logs in to the
sandboxes whatever host a body names, so nothing leaves the process. Half the operations that take an
integration id get one that exists (its settings, look-ups and replay are reached), the rest a generated one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from connector.admin import Admin
from connector.alfacrm.client import AlfaCrmClient
from connector.retry import RateLimiter, RetryPolicy
from connector.runtime import container, install
from connector.settings import Integration
from connector.uis.client import UisClient
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from werkzeug.wrappers import Request

from tests.conftest import ADMIN_TOKEN, TEMPLATE, runtime
from tests.fuzz.report import examples, timing
from tests.handlers import load_module
from tools.localstack.events import LambdaContext, api_event, proxy_response, templated_gateway_error
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox
from tools.sandboxes.uis import DEFAULT_TOKEN, UisSandbox

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json").include(path_regex="^/integrations")
admin_module = load_module("admin_api")
ROUTES = [route for route in TEMPLATE.routes if route.function_id == "AdminApiFunction"]
CONTEXT = LambdaContext(function_name="test-AdminApiFunction", memory_limit_in_mb=512, timeout_seconds=29)
NO_RETRY = RetryPolicy(attempts=1, sleep=lambda seconds: None)


def admin_gateway(environ: dict[str, Any], start_response: Any) -> Any:
    """API Gateway in front of the admin handler: the template's routes, REST v1 proxy events."""
    request = Request(environ)
    for route in ROUTES:
        match = route.pattern.match(request.path)
        if match and route.method in ("ANY", request.method):
            event = api_event(request, route, request.path, match.groupdict(), stage="v1", server_port=443)
            with timing("admin API (schemathesis)").reply(f"{request.method} {route.path}: {request.path[:60]}"):
                result = admin_module.lambda_handler(event, CONTEXT)  # a raise fails the test, as a 502 would
            return proxy_response(result)(environ, start_response)
    return templated_gateway_error(TEMPLATE.gateway_responses, 403, "Missing Authentication Token")(
        environ, start_response
    )


class SandboxClients:
    def __init__(self, alfacrm: AlfaCrmSandbox, uis: UisSandbox) -> None:
        self.alfacrm_sandbox, self.uis_sandbox = alfacrm, uis

    def alfacrm(self, integration: Integration) -> AlfaCrmClient:
        http = httpx.Client(transport=httpx.WSGITransport(app=self.alfacrm_sandbox.app))
        return AlfaCrmClient(
            integration.alfacrm.hostname,
            integration.alfacrm.email,
            DEFAULT_API_KEY,
            http=http,
            retry=NO_RETRY,
            limiter=RateLimiter(0),
        )

    def uis(self, integration: Integration) -> UisClient:
        http = httpx.Client(transport=httpx.WSGITransport(app=self.uis_sandbox.app))
        return UisClient(integration.uis.api_url, DEFAULT_TOKEN, http=http)


@pytest.fixture
def known_integration(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    alfacrm, uis = AlfaCrmSandbox(burst_limit=10_000), UisSandbox()
    rt = runtime(clients=SandboxClients(alfacrm, uis))
    rt.env = rt.env.model_copy(update={"allow_insecure_hosts": False})  # the AWS rules for hosts
    # whatever host a body names, the logins reach the sandboxes (nothing leaves the process)
    rt.accounts.alfacrm_http = httpx.Client(transport=httpx.WSGITransport(app=alfacrm.app))
    rt.accounts.uis_http = httpx.Client(transport=httpx.WSGITransport(app=uis.app))
    install(rt)
    monkeypatch.setattr(admin_module, "admin", lambda: Admin(container(), check_dns=lambda host: True))
    body = {
        "name": "Школа",
        "alfacrm": {"hostname": "school.s20.online", "email": DEFAULT_EMAIL, "api_key": DEFAULT_API_KEY},
        "uis": {"api_url": "https://dataapi.uiscom.ru/v2.0", "access_token": DEFAULT_TOKEN},
    }
    created = admin_module.admin().create_integration(body, "https://api.example.ru")
    yield str(created["id"])


@schema.parametrize()
@settings(max_examples=examples(20))
def test_admin_api_never_answers_5xx_and_every_error_keeps_the_contract_shape(case: Any, known_integration: str):
    if "integration_id" in (case.path_parameters or {}) and len(str(case.path_parameters["integration_id"])) % 2:
        case.path_parameters["integration_id"] = known_integration
    response = case.call(app=admin_gateway, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    timing("admin API (schemathesis)").status(response.status_code)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), body
