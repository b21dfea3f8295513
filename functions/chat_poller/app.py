"""Chat poller (ScheduleV2 `ChatPollSchedule`): chat starts and lost chats UIS did not notify about."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.observability import logger, metrics, tracer
from connector.runtime import container
from connector.texts.poller import poll_chats


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # the scheduler's event carries nothing the poll needs: every run polls whatever is due now
    logger.debug("schedule fired", extra={"schedule": event.get("resources"), "time": event.get("time")})
    rt = container()
    with rt.invocation(context):
        summary = poll_chats(rt, remaining_ms=context.get_remaining_time_in_millis)
    metrics.add_metric(name="ChatPollUisPoints", unit="Count", value=summary["uis_points"])
    metrics.add_metric(name="ChatPollLostChatEvents", unit="Count", value=summary["lost_chat_events"])
    metrics.add_metric(name="ChatPollChatStartedEvents", unit="Count", value=summary["chat_started_events"])
    metrics.add_metric(name="ChatPollFailures", unit="Count", value=summary["by_status"].get("failed", 0))
    logger.info("chat poll run", extra={k: v for k, v in summary.items() if k != "polls"})
    return summary
