"""Admin API (contract.md): integrations, settings, look-ups, deals view, parked items and replay."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from connector import access, admin_edge
from connector.admin import Admin
from connector.errors import ConnectorError
from connector.health import integration_health
from connector.http import (
    error_body,
    error_response,
    json_reply,
    public_base_url,
    route_miss,
    strict_json_body,
    undecodable_body,
)
from connector.lifecycle import Removal
from connector.observability import logger, metrics, tracer
from connector.runtime import container
from connector.settings import CreateIntegrationInput, CredentialsInput, ReplayInput, SettingsDocument, json_path

app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=strict_json_body)

IntegrationId = Annotated[str, Path(description="Integration id", pattern=r"^[0-9a-f]{1,64}$")]
AlfaLookup = Annotated[
    str, Path(description="lead-statuses | lead-sources | branches | users | teachers | customer-fields")
]
UisLookup = Annotated[str, Path(description="sites | chat-channels | tags")]
MAX_EVENTS = 200


def admin() -> Admin:
    return Admin(container())


@app.exception_handler(ConnectorError)
def _domain_error(exc: ConnectorError) -> Response[dict[str, Any]]:
    if exc.retryable:
        logger.warning("upstream failure", extra={"code": exc.code, "reason": exc.message})
    return error_response(exc)


@app.not_found
def _no_route(exc: NotFoundError) -> Response[Any]:
    return route_miss(app)


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response[Any]:
    err = exc.errors()[0]
    if err.get("type") == "json_invalid":
        # not a bad field but a body that is not JSON (strict_json_body says what is wrong): name no field
        reason = (err.get("ctx") or {}).get("error") or "body is not valid JSON"
        return error_body(400, "invalid_json", reason)
    loc = tuple(err.get("loc", ()))
    if loc and loc[0] in {"body", "query", "path"}:
        loc = loc[1:]
    path = json_path(loc) or "body"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return json_reply(422, {"error": {"code": "validation_failed", "message": f"{path}: {msg}", "field": path}})


@app.exception_handler(ServiceError)
def _service_error(exc: ServiceError) -> Response[Any]:
    # Powertools' own HTTP errors, in the contract's shape rather than its {"statusCode", "message"}
    status = HTTPStatus(exc.status_code) if exc.status_code in HTTPStatus._value2member_map_ else None
    code = status.phrase.lower().replace(" ", "_").replace("-", "_") if status else "http_error"
    return error_body(exc.status_code, code, str(exc.msg))


@app.post("/integrations", summary="Create an integration (both logins are tried first)")
def create_integration(body: Annotated[CreateIntegrationInput, Body(embed=False)]) -> Response[dict[str, Any]]:
    raw = app.current_event.json_body
    return json_reply(201, admin().create_integration(raw, public_base_url(app.current_event.raw_event)))


@app.get("/integrations", summary="List integrations (no secrets)")
def list_integrations() -> dict[str, Any]:
    return admin().list_integrations()


@app.get("/integrations/<integration_id>", summary="One integration (no secrets) with UIS points spent")
def get_integration(integration_id: IntegrationId) -> dict[str, Any]:
    return admin().get_integration(integration_id)


@app.get("/integrations/<integration_id>/webhooks", summary="The two webhook URLs (with their secrets)")
def get_webhooks(integration_id: IntegrationId) -> dict[str, Any]:
    return admin().webhooks(integration_id, public_base_url(app.current_event.raw_event))


@app.put("/integrations/<integration_id>/settings", summary="Replace the settings document")
def put_settings(integration_id: IntegrationId, body: Annotated[SettingsDocument, Body(embed=False)]) -> dict[str, Any]:
    return admin().put_settings(integration_id, app.current_event.json_body)


@app.post("/integrations/<integration_id>/activate", summary="Activate (creates the UIS funnels)")
def activate(integration_id: IntegrationId) -> dict[str, Any]:
    return admin().set_active(integration_id, True)


@app.post("/integrations/<integration_id>/deactivate", summary="Deactivate (webhooks still answer 200)")
def deactivate(integration_id: IntegrationId) -> dict[str, Any]:
    return admin().set_active(integration_id, False)


@app.get("/integrations/<integration_id>/alfacrm/<name>", summary="AlfaCRM look-ups for the settings form")
def alfacrm_lookup(integration_id: IntegrationId, name: AlfaLookup) -> dict[str, Any]:
    return admin().alfacrm_lookup(integration_id, name)


@app.get("/integrations/<integration_id>/uis/<name>", summary="UIS look-ups for the settings form")
def uis_lookup(integration_id: IntegrationId, name: UisLookup) -> dict[str, Any]:
    return admin().uis_lookup(integration_id, name)


@app.get("/integrations/<integration_id>/deals", summary="Deals as uploaded to UIS")
def deals(
    integration_id: IntegrationId,
    funnel: Annotated[str | None, Query(description="first_sale | upsell")] = None,
) -> dict[str, Any]:
    return admin().deals(integration_id, funnel)


@app.get("/integrations/<integration_id>/parked", summary="Items that failed for a reason a retry won't fix")
def parked(integration_id: IntegrationId) -> dict[str, Any]:
    return admin().parked(integration_id)


@app.post(
    "/integrations/<integration_id>/replay",
    summary="Re-drive parked items (all, or those named by `keys`) and dead letters (a long redrive goes on in the"
    " background)",
)
def replay(
    integration_id: IntegrationId, body: Annotated[ReplayInput | None, Body(embed=False)] = None
) -> dict[str, Any]:
    keys = body.keys if body is not None else None
    return admin().replay(integration_id, keys)


@app.get("/integrations/<integration_id>/health", summary="One school's health: activity, counts, last error")
def health(
    integration_id: IntegrationId,
    check: Annotated[bool, Query(description="also try both logins now (one AlfaCRM login, UIS points)")] = False,
) -> dict[str, Any]:
    return integration_health(container(), integration_id, check=check)


@app.get("/integrations/<integration_id>/events", summary="The school's execution log, newest first")
def events(
    integration_id: IntegrationId,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS, description=f"how many (1..{MAX_EVENTS})")] = 50,
) -> dict[str, Any]:
    return admin().events(integration_id, limit)


@app.post("/integrations/<integration_id>/webhooks/rotate", summary="New webhook URLs (the old ones stop working)")
def rotate_webhooks(integration_id: IntegrationId) -> dict[str, Any]:
    return admin().rotate_webhooks(integration_id, public_base_url(app.current_event.raw_event))


@app.put("/integrations/<integration_id>/credentials", summary="Replace AlfaCRM and/or UIS credentials (logins first)")
def put_credentials(
    integration_id: IntegrationId, body: Annotated[CredentialsInput, Body(embed=False)]
) -> dict[str, Any]:
    return admin().update_credentials(integration_id, app.current_event.json_body)


@app.delete("/integrations/<integration_id>", summary="Remove the integration, its secrets and every item it owns")
def delete_integration(integration_id: IntegrationId) -> dict[str, Any]:
    return Removal(container()).remove(integration_id)


@app.post("/integrations/<integration_id>/access", summary="Issue a school's own access token (the old one stops)")
def issue_access(integration_id: IntegrationId) -> dict[str, Any]:
    return access.issue(container().store, integration_id, public_base_url(app.current_event.raw_event))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
# not the reply: it carries the webhook URLs (with their secrets) and may carry tokens
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Before routing: the resolver validates bodies first, and a caller without the token learns nothing.
    refused = admin_edge.denied(event, container()) or undecodable_body(event)
    if refused is not None:
        return refused
    with container().invocation(context):
        return app.resolve(admin_edge.as_json(event), context)
