"""SQS: the intakes, the reconciler, the chat poller and the admin replay put messages on the worker queues.

The only SQS code outside the workers' event sources. Messages are the models of `connector.models.messages`.
"""

from __future__ import annotations

import json
import re

from connector.aws import Aws
from connector.config import Environment
from connector.models.messages import DealEventMessage, QueueMessage, TextEventMessage

BATCH = 10  # SQS SendMessageBatch takes at most ten entries


class Queues:
    def __init__(self, env: Environment, aws: Aws) -> None:
        self.env = env
        self.aws = aws

    def send_deal_event(self, message: DealEventMessage) -> str:
        return self._send(self.env.deal_events_queue_url, message)

    def send_text_event(self, message: TextEventMessage) -> str:
        return self._send(self.env.text_events_queue_url, message)

    def send_deal_events(self, messages: list[DealEventMessage]) -> int:
        return self._send_many(self.env.deal_events_queue_url, messages)

    def send_text_events(self, messages: list[TextEventMessage]) -> int:
        return self._send_many(self.env.text_events_queue_url, messages)

    def _send(self, queue_url: str, message: QueueMessage) -> str:
        reply = self.aws.sqs.send_message(QueueUrl=queue_url, MessageBody=_message_body(message))
        return str(reply["MessageId"])

    def _send_many(self, queue_url: str, messages: list[DealEventMessage] | list[TextEventMessage]) -> int:
        sent = 0
        for start in range(0, len(messages), BATCH):
            chunk = messages[start : start + BATCH]
            entries = [{"Id": str(i), "MessageBody": _message_body(m)} for i, m in enumerate(chunk)]
            reply = self.aws.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            if reply.get("Failed"):
                raise RuntimeError(f"SQS refused {len(reply['Failed'])} of {len(chunk)} messages")
            sent += len(chunk)
        return sent

    def redrive_dead_letters(self, integration_id: str, *, max_messages: int = 1000) -> int:
        """Move this integration's dead letters back to their source queues (admin replay); → how many.

        Only that integration's messages move; the others stay in the queue (hidden for the 30 s of this
        receive) for their own replay.
        """
        moved = 0
        for dlq, target in (
            (self.env.deal_events_dlq_url, self.env.deal_events_queue_url),
            (self.env.text_events_dlq_url, self.env.text_events_queue_url),
        ):
            if dlq and target:
                moved += self._redrive(dlq, target, integration_id, max_messages)
        return moved

    def _redrive(self, dlq_url: str, target_url: str, integration_id: str, max_messages: int) -> int:
        sqs = self.aws.sqs
        moved = 0
        seen = 0
        while seen < max_messages:
            reply = sqs.receive_message(
                QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
            )
            messages = reply.get("Messages", [])
            if not messages:
                break
            for m in messages:
                seen += 1
                if _owner(m["Body"]) != integration_id:
                    # another integration's dead letter: left hidden for this pass (it reappears after the
                    # receive's visibility timeout), so the loop never receives it twice
                    continue
                # as it died, byte for byte: a dead letter may be one no model can read
                sqs.send_message(QueueUrl=target_url, MessageBody=m["Body"])
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
                moved += 1
        return moved


def _owner(body: str) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    owner = parsed.get("integration_id") if isinstance(parsed, dict) else None
    return owner if isinstance(owner, str) else None


# SQS refuses characters outside #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (its
# SendMessage docs). json.dumps escapes the control characters but writes U+FFFE and U+FFFF as they are; in
# JSON text they can only stand inside strings, where their escapes mean the same.
_SQS_REFUSED = re.compile("[\ufffe\uffff]")


def _message_body(message: QueueMessage) -> str:
    return _SQS_REFUSED.sub(lambda m: f"\\u{ord(m.group()):04x}", message.body())
