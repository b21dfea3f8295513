"""Deal worker: AlfaCRM Customer/Pay webhooks from SQS → customer snapshots → deals marked for upload.

Each record is one webhook (`{"integration_id", "received_at", "event"}`). A record fails (SQS retries it,
then the DLQ takes it) only for errors a later attempt may fix; the use case parks what AlfaCRM refuses.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.deals.worker import handle_deal_event_once
from connector.health import process_batch
from connector.models.messages import DealEventRecord
from connector.observability import logger, metrics, tracer
from connector.runtime import container

# each record's body is parsed into a DealEventMessage; one that is none fails alone (retries, then the DLQ)
processor = BatchProcessor(event_type=EventType.SQS, model=DealEventRecord)


@tracer.capture_method
def record_handler(record: DealEventRecord) -> None:
    outcome = handle_deal_event_once(container(), record.body)
    logger.info("deal event", extra={"status": outcome.status, "reason": outcome.reason, "deals": outcome.changed})
    metrics.add_metric(name=f"DealEvents{outcome.status.capitalize()}", unit="Count", value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with container().invocation(context):
        return process_batch(container(), "deal", event, context, record_handler, processor)
