"""AlfaCRM webhook intake: authenticate the URL secret, validate, enqueue for the deal worker, answer 200."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.errors import ConnectorError
from connector.http import body_bytes, error_response, json_reply, route_miss
from connector.intake import accept_alfacrm
from connector.observability import logger, metrics, tracer
from connector.runtime import container

app = APIGatewayRestResolver(enable_validation=True)


@app.exception_handler(ConnectorError)
def _domain_error(exc: ConnectorError) -> Response[dict[str, Any]]:
    logger.info("webhook refused", extra={"code": exc.code, "reason": exc.message})
    return error_response(exc)


@app.not_found
def _no_route(exc: NotFoundError) -> Response[Any]:
    return route_miss(app)


@app.post("/hooks/alfacrm/<integration_id>/<secret>", summary="AlfaCRM trigger webhook (Customer, Pay)")
def alfacrm_hook(integration_id: Annotated[str, Path()], secret: Annotated[str, Path()]) -> Response[dict[str, Any]]:
    # AlfaCRM posts raw JSON under a form Content-Type: read the (base64-decoded) raw body, never form fields
    accepted = accept_alfacrm(container(), integration_id, secret, body_bytes(app.current_event.raw_event))
    metrics.add_metric(
        name="AlfaCrmWebhooksQueued" if accepted.queued else "AlfaCrmWebhooksDropped", unit="Count", value=1
    )
    return json_reply(200, accepted.body())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
