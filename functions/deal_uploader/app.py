"""Deal uploader: every minute (and on demand), flush each integration's pending deals to UIS.

The schedule's event carries nothing we need; an on-demand invocation may name one integration
(`{"integration_id": "..."}`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.deals.uploader import flush_all
from connector.observability import logger, metrics, tracer
from connector.runtime import container


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    integration_id = event.get("integration_id") if isinstance(event, dict) else None
    rt = container()
    with rt.invocation(context):
        reports = flush_all(rt, integration_id=integration_id or None)
    for report in reports:
        metrics.add_metric(name="DealsUploaded", unit="Count", value=report.uploaded)
        metrics.add_metric(name="DealsParked", unit="Count", value=len(report.parked))
        metrics.add_metric(name="UisPointsDeals", unit="Count", value=report.points)
    return {"integrations": [asdict(r) for r in reports]}
