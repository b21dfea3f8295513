"""Chat poller: the `poll` job's worker (FIFO `ChatPollQueue`, one message = one school's poll).

Each due school's chats report is read for chat starts and lost chats UIS did not notify about
(`ChatPoller.poll`, through connector.fanout). Schools run in parallel, one at a time each (the message group).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.observability import logger, metrics, tracer
from connector.runtime import container
from connector.texts.poller import poll_job
from connector.work_edge import process_work


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = container()
    with rt.invocation(context):
        return process_work(rt, event, context, {"poll": poll_job})
