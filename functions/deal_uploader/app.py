"""Deal uploader: the `upload` job's worker (FIFO `DealUploadQueue`, one message = one school's turn).

Each school's pending deals are flushed to UIS (`flush_integration`, through connector.fanout); a shard page
message dispatches the rest of a tick. Schools run in parallel, one at a time each (the message group).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.deals.uploader import upload_job
from connector.observability import logger, metrics, tracer
from connector.runtime import container
from connector.work_edge import process_work


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = container()
    with rt.invocation(context):
        return process_work(rt, event, context, {"upload": upload_job})
