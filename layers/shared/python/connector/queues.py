"""SQS: the intakes, the reconciler, the chat poller and the admin replay put messages on the worker queues;
the scheduler ticks and the job workers put per-school work on the work queues; the admin's background jobs
go on the jobs queue.

The only SQS code outside the workers' event sources. Messages are the models of `connector.models.messages`
and `connector.models.work`.

Message groups: every event carries `MessageGroupId = <integration id>`. On the two standard event queues
that makes them Amazon SQS fair queues (one school's burst, a mass import in AlfaCRM, does not hold back the
other schools' events; order is not promised, the workers do not need it). On the FIFO work queues the group
is what keeps one school's job to one run at a time, and the deduplication id (the school, the job and the due
time it was sent for) drops the copy a second tick sends while the first is still waiting or running.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from connector.aws import Aws
from connector.config import Environment

if TYPE_CHECKING:
    from connector.models.messages import DealEventMessage, JobMessage, QueueMessage, TextEventMessage
    from connector.models.work import Job, SchoolWork, ShardPage

BATCH = 10  # SQS SendMessageBatch takes at most ten entries
# A work send's batches go out at once (boto3 clients are thread-safe): a page of 100 schools, or a tick's
# hand-on of every shard, costs one round trip, not ten. Each message is in its own group: no order to keep.
SEND_THREADS = 10
SWEEP_STEP_SECONDS = 2.0  # a dead-letter sweep stops with this much of its time left (one receive and its sends)
DeadLetterQueue = Literal["deal", "text"]
TimeLeft = Callable[[], float | None]


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
        reply = self.aws.sqs.send_message(
            QueueUrl=queue_url, MessageBody=_message_body(message), MessageGroupId=message.integration_id
        )
        return str(reply["MessageId"])

    def _send_many(self, queue_url: str, messages: list[DealEventMessage] | list[TextEventMessage]) -> int:
        entries = [{"MessageBody": _message_body(m), "MessageGroupId": m.integration_id} for m in messages]
        return self._batches(queue_url, entries)

    def _batches(self, queue_url: str, entries: list[dict[str, str]], *, at_once: bool = False) -> int:
        """Send `entries` ten to a SendMessageBatch call: in order, or all calls at once (`at_once`)."""
        chunks = [
            [{"Id": str(i), **e} for i, e in enumerate(entries[start : start + BATCH])]
            for start in range(0, len(entries), BATCH)
        ]

        def send(chunk: list[dict[str, str]]) -> int:
            reply = self.aws.sqs.send_message_batch(QueueUrl=queue_url, Entries=chunk)
            if reply.get("Failed"):
                raise RuntimeError(f"SQS refused {len(reply['Failed'])} of {len(chunk)} messages")
            return len(chunk)

        if at_once and len(chunks) > 1:
            with ThreadPoolExecutor(max_workers=min(len(chunks), SEND_THREADS)) as pool:
                return sum(pool.map(send, chunks))
        return sum(send(chunk) for chunk in chunks)

    # --- per-school work ---------------------------------------------------------------------------------
    def work_queue_url(self, job: Job) -> str:
        """The FIFO queue of the function that runs `job` (backfill chunks run beside the reconciliation)."""
        return {
            "upload": self.env.deal_upload_queue_url,
            "poll": self.env.chat_poll_queue_url,
            "reconcile": self.env.reconcile_queue_url,
            "backfill": self.env.reconcile_queue_url,
        }[job]

    def send_work(self, job: Job, messages: list[SchoolWork | ShardPage]) -> int:
        """Put work items on `job`'s queue: a school's in its own group, a shard page in the shard's."""
        entries = [
            {"MessageBody": _message_body(m), "MessageGroupId": work_group(m), "MessageDeduplicationId": work_dedup(m)}
            for m in messages
        ]
        return self._batches(self.work_queue_url(job), entries, at_once=True)

    def send_job(self, message: JobMessage, *, delay_seconds: int = 0) -> str:
        reply = self.aws.sqs.send_message(
            QueueUrl=self.env.jobs_queue_url,
            MessageBody=_message_body(message),
            DelaySeconds=max(0, min(delay_seconds, 900)),
        )
        return str(reply["MessageId"])

    def redrive_dead_letters(
        self, integration_id: str, *, max_messages: int = 10_000, time_left: TimeLeft | None = None
    ) -> Redriven:
        """Move this integration's dead letters back to their source queues (admin replay).

        Only that integration's messages move; the others stay in the queue (hidden for the 30 s of this
        receive) for their own replay. Stops when `time_left` runs short (`finished` False: a background job
        goes on from there).
        """
        return self._sweep(integration_id, resend=True, max_messages=max_messages, time_left=time_left)

    def drop_dead_letters(self, integration_id: str, *, time_left: TimeLeft | None = None) -> Redriven:
        """Delete this integration's dead letters (its removal: they hold its visitors' data)."""
        return self._sweep(integration_id, resend=False, max_messages=10_000, time_left=time_left)

    def _sweep(self, integration_id: str, *, resend: bool, max_messages: int, time_left: TimeLeft | None) -> Redriven:
        done = Redriven()
        queues: list[tuple[DeadLetterQueue, str, str]] = [
            ("deal", self.env.deal_events_dlq_url, self.env.deal_events_queue_url),
            ("text", self.env.text_events_dlq_url, self.env.text_events_queue_url),
        ]
        for queue, dlq, target in queues:
            if dlq and target:
                finished = self._redrive(
                    queue, dlq, target if resend else None, integration_id, max_messages, time_left, done
                )
                done.finished = done.finished and finished
        return done

    def _redrive(
        self,
        queue: DeadLetterQueue,
        dlq_url: str,
        target_url: str | None,
        integration_id: str,
        max_messages: int,
        time_left: TimeLeft | None,
        done: Redriven,
    ) -> bool:
        """One DLQ's pass (→ whether it got to the end of what it could see)."""
        sqs = self.aws.sqs
        seen = 0
        while seen < max_messages:
            left = time_left() if time_left is not None else None
            if left is not None and left < SWEEP_STEP_SECONDS:
                return False
            reply = sqs.receive_message(
                QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
            )
            messages = reply.get("Messages", [])
            if not messages:
                return True
            for m in messages:
                seen += 1
                if owner_of(m["Body"]) != integration_id:
                    # another integration's dead letter: left hidden for this pass (it reappears after the
                    # receive's visibility timeout), so the loop never receives it twice
                    continue
                if target_url is not None:
                    # as it died, byte for byte: a dead letter may be one no model can read
                    sqs.send_message(QueueUrl=target_url, MessageBody=m["Body"], MessageGroupId=integration_id)
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
                done.moved.append((queue, str(m["MessageId"])))
        return False


@dataclass
class Redriven:
    """What a dead-letter sweep moved (queue, message id: SQS keeps a message's id when it dead-letters it)."""

    moved: list[tuple[DeadLetterQueue, str]] = field(default_factory=list)
    finished: bool = True


def owner_of(body: str) -> str | None:
    """The integration a queue body belongs to (None: not a message of ours)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    owner = parsed.get("integration_id") if isinstance(parsed, dict) else None
    return owner if isinstance(owner, str) else None


def work_group(message: SchoolWork | ShardPage) -> str:
    if message.kind == "school":
        return message.integration_id
    return f"page-{message.job}-{message.shard}"


def work_dedup(message: SchoolWork | ShardPage) -> str:
    """Same work, same id (SQS drops a copy sent within five minutes): the school, job and due time it is for."""
    if message.kind == "school":
        key = ["school", message.job, message.integration_id, message.due, str(message.marked_at)]
    else:
        key = ["page", message.job, str(message.shard), message.until, json.dumps(message.start, sort_keys=True)]
    return hashlib.sha256("|".join(key).encode()).hexdigest()


# SQS refuses characters outside #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (its
# SendMessage docs). json.dumps escapes the control characters but writes U+FFFE and U+FFFF as they are; in
# JSON text they can only stand inside strings, where their escapes mean the same.
_SQS_REFUSED = re.compile("[\ufffe\uffff]")


def _message_body(message: QueueMessage | SchoolWork | ShardPage) -> str:
    return _SQS_REFUSED.sub(lambda m: f"\\u{ord(m.group()):04x}", message.body())
