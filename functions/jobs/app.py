"""Jobs worker: an admin request's work that does not fit in the API's 29 s, from the jobs queue.

`redrive`: the rest of a school's dead-letter redrive (`connector.replay`); `purge`: the rest of a removed
school's items and dead letters, and the sweep after its removal (`connector.lifecycle`). A job that runs out of
time sends its own continuation; a failing record is retried by SQS (then the jobs DLQ).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.lifecycle import run_purge_job
from connector.models.messages import JobRecord
from connector.observability import logger, metrics, tracer
from connector.replay import run_redrive_job
from connector.runtime import container

processor = BatchProcessor(event_type=EventType.SQS, model=JobRecord)


@tracer.capture_method
def record_handler(record: JobRecord) -> None:
    message = record.body
    rt = container()
    if message.job == "redrive":
        job = run_redrive_job(rt, message)
        logger.info("redrive job", extra={"integration_id": message.integration_id, "state": job and job.state})
    else:
        complete = run_purge_job(rt, message)
        logger.info("purge job", extra={"integration_id": message.integration_id, "complete": complete})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with container().invocation(context):
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
