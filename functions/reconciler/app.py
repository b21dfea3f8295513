"""Reconciler: the `reconcile` and `backfill` jobs' worker (FIFO `ReconcileQueue`, one message = one school's turn).

Hourly per school: AlfaCRM `log/index` catch-up and the rolling re-read of customers and payments (missed
webhooks go back to the deal queue), and the UIS funnel sync; on connect, backfill chunks. Through
connector.fanout; schools run in parallel, one at a time each (the message group).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.deals.backfill import backfill_job
from connector.deals.reconcile import reconcile_job
from connector.observability import logger, metrics, tracer
from connector.runtime import container
from connector.work_edge import process_work


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = container()
    with rt.invocation(context):
        return process_work(rt, event, context, {"reconcile": reconcile_job, "backfill": backfill_job})
