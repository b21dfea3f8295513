"""Reconciler: hourly AlfaCRM `log/index` catch-up (missed webhooks go back to the deal queue) and the UIS
funnel sync (lead statuses renamed or added in AlfaCRM)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.deals.reconcile import reconcile_all
from connector.observability import logger, metrics, tracer
from connector.runtime import container


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = container()
    with rt.invocation(context):
        reports = reconcile_all(rt)
    metrics.add_metric(name="MissedChangesRequeued", unit="Count", value=sum(r.fed for r in reports))
    return {"integrations": [asdict(r) for r in reports]}
