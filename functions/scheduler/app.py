"""Scheduler ticks (ScheduleV2 `DealUploadSchedule`, `ChatPollSchedule`, `ReconcileSchedule`, `BackfillSchedule`):
the schools whose job is due, one work item each on the job's queue (connector.fanout).

The schedule's Input names the job (`{"job": "upload"}`); the tick reads the work index, never the list of
schools, and its work does not grow with their number (a busy shard is handed on page by page).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.fanout import tick
from connector.models.work import TickInput
from connector.observability import logger, metrics, tracer
from connector.runtime import container


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = container()
    report = tick(rt, TickInput.model_validate(event).job, at=rt.now())
    metrics.add_metric(name="SchoolsDispatched", unit="Count", value=report.schools)
    logger.info("tick", extra=asdict(report))
    return asdict(report)
