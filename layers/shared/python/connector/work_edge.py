"""The job workers' edge (deal uploader, chat poller, reconciler): a FIFO batch → one work item at a time.

Shared by the three handlers so each stays a table of contents. A work item never fails for one school's
fault (connector.fanout backs it off in the work index); a record fails only for the infrastructure's (the
state table, SQS), and then SQS gives it back after the visibility timeout, its group (the school) waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector.fanout import Runner, handle_work
from connector.models.work import Job, WorkRecord
from connector.observability import logger, metrics
from connector.runtime import Runtime


def process_work(
    rt: Runtime, event: dict[str, Any], context: LambdaContext, runners: Mapping[Job, Runner]
) -> dict[str, Any]:
    """The batch's work items, each run by its job's runner (the handler's own jobs: `connector.fanout`)."""
    # one processor per invocation: its record lists are per batch (and the local stack runs threads)
    processor = SqsFifoPartialProcessor(model=WorkRecord, skip_group_on_error=True)

    def record_handler(record: WorkRecord, lambda_context: LambdaContext) -> None:
        outcome = handle_work(
            rt, record.body, runners=runners, remaining_ms=lambda_context.get_remaining_time_in_millis
        )
        summary = {k: v for k, v in asdict(outcome).items() if k != "detail"}
        logger.info("school work", extra={**summary, "detail": outcome.detail})
        metrics.add_metric(name=f"SchoolWork{outcome.status.capitalize()}", unit="Count", value=1)

    reply = process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    return dict(reply)
