"""Text worker: UIS notifications (and poller / Chat API events) from SQS → AlfaCRM leads, comments, tasks.

Each record is one text event. A record fails (and SQS retries it, then the DLQ takes it) only for errors a
later attempt may fix; the use case parks everything else and the record succeeds.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.health import process_batch
from connector.observability import logger, metrics, tracer
from connector.runtime import container
from connector.texts.worker import TextWorker

processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    # the body is read into a TextEventMessage by the use case: one it cannot read is parked, not retried
    outcome = TextWorker(container()).handle(record.body)
    metrics.add_metric(name=f"TextEvents{outcome.status.capitalize()}", unit="Count", value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with container().invocation(context):
        return process_batch(container(), "text", event, context, record_handler, processor)
