"""SQS sending: the intakes and the chat poller put events on the worker queues."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3

from connector.config import env

_client: Any = None


def _sqs() -> Any:
    global _client
    if _client is None:
        _client = boto3.client("sqs")
    return _client


def reset() -> None:
    global _client
    _client = None


# SQS refuses characters outside #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (its
# SendMessage docs). json.dumps escapes the control characters but writes U+FFFE and U+FFFF as they are; in
# JSON text they can only stand inside strings, where their escapes mean the same.
_SQS_REFUSED = re.compile("[\ufffe\uffff]")


def _message_body(body: dict[str, Any]) -> str:
    return _SQS_REFUSED.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(body, ensure_ascii=False))


def send(queue_url: str, body: dict[str, Any]) -> str:
    reply = _sqs().send_message(QueueUrl=queue_url, MessageBody=_message_body(body))
    return str(reply["MessageId"])


def send_many(queue_url: str, bodies: list[dict[str, Any]]) -> int:
    sent = 0
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": _message_body(b)} for i, b in enumerate(chunk)]
        reply = _sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
        if reply.get("Failed"):
            raise RuntimeError(f"SQS refused {len(reply['Failed'])} of {len(chunk)} messages")
        sent += len(chunk)
    return sent


def send_deal_event(body: dict[str, Any]) -> str:
    return send(env().deal_events_queue_url, body)


def send_text_event(body: dict[str, Any]) -> str:
    return send(env().text_events_queue_url, body)


def redrive_dlq(dlq_url: str, target_url: str, *, integration_id: str | None = None, max_messages: int = 1000) -> int:
    """Move dead letters back to their source queue (admin replay).

    With `integration_id`, only that integration's messages move; the others stay in the queue (hidden
    for the 30 s of this receive) for their own replay.
    """
    moved = 0
    seen = 0
    while seen < max_messages:
        reply = _sqs().receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
        )
        messages = reply.get("Messages", [])
        if not messages:
            break
        for m in messages:
            seen += 1
            try:
                owner = json.loads(m["Body"]).get("integration_id")
            except (ValueError, AttributeError):
                owner = None
            if integration_id is not None and owner != integration_id:
                # another integration's dead letter: left hidden for this pass (it reappears after the
                # receive's visibility timeout), so the loop never receives it twice
                continue
            _sqs().send_message(QueueUrl=target_url, MessageBody=m["Body"])
            _sqs().delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
    return moved
