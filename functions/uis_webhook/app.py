"""UIS notification intake (GET with query parameters or POST with a JSON body): authenticate, enqueue."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.errors import ConnectorError
from connector.http import body_bytes, error_response, json_reply, route_miss
from connector.intake import accept_uis
from connector.observability import logger, metrics, tracer
from connector.runtime import container

app = APIGatewayRestResolver(enable_validation=True)


@app.exception_handler(ConnectorError)
def _domain_error(exc: ConnectorError) -> Response[dict[str, Any]]:
    logger.info("notification refused", extra={"code": exc.code, "reason": exc.message})
    return error_response(exc)


@app.not_found
def _no_route(exc: NotFoundError) -> Response[Any]:
    return route_miss(app)


def _accept(integration_id: str, secret: str) -> Response[dict[str, Any]]:
    event = app.current_event
    accepted = accept_uis(
        container(),
        integration_id,
        secret,
        method=event.http_method,
        body=body_bytes(event.raw_event),
        query=dict(event.query_string_parameters or {}),
        content_type=event.headers.get("content-type") or event.headers.get("Content-Type") or "",
    )
    metrics.add_metric(
        name="UisNotificationsQueued" if accepted.queued else "UisNotificationsDropped", unit="Count", value=1
    )
    return json_reply(200, accepted.body())


@app.post("/hooks/uis/<integration_id>/<secret>", summary="UIS notification, POST with a JSON body")
def uis_hook_post(integration_id: Annotated[str, Path()], secret: Annotated[str, Path()]) -> Response[dict[str, Any]]:
    return _accept(integration_id, secret)


@app.get("/hooks/uis/<integration_id>/<secret>", summary="UIS notification, GET with query parameters")
def uis_hook_get(integration_id: Annotated[str, Path()], secret: Annotated[str, Path()]) -> Response[dict[str, Any]]:
    return _accept(integration_id, secret)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
