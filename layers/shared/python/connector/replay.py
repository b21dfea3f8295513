"""Replay (`POST /integrations/{id}/replay`): parked items back where they failed, and the school's dead letters
back to their queues.

- With `{"keys": [...]}` only those parked items run again (a key is a parked item's `key`, or `kind#key`);
  a key that names no parked item is a 422 naming it. Without keys: every parked item, then the dead letters.
- One item that cannot be replayed (a payload no worker could read) stays parked, named in `kept`, and stops
  nothing else.
- The dead-letter redrive runs in the request for at most `SYNC_REDRIVE_SECONDS`; what is left goes on in the
  background (a `JobMessage` to the jobs worker, which sends itself a continuation while it runs out of
  time), with its progress (`RedriveJob`) in the reply and in `GET /integrations/{id}/health`. The redriven
  messages' dead-letter marks are cleared (a finished sweep clears the school's stale ones too).
"""

from __future__ import annotations

import json
import secrets as pysecrets
from collections.abc import Sequence
from datetime import timedelta
from typing import cast

from pydantic import ValidationError

from connector.errors import BadRequest, NotFound, ValidationFailed
from connector.eventlog import stamp
from connector.models.deals import DealRef
from connector.models.events import RedriveJob
from connector.models.messages import DealEventMessage, JobMessage
from connector.models.parked import ParkedItem
from connector.models.raw import JsonObject, JsonValue
from connector.observability import logger
from connector.queues import Redriven
from connector.runtime import Runtime
from connector.timeutil import from_iso
from connector.uis.text_queue import read_message

SYNC_REDRIVE_SECONDS = 10.0  # of the API's 29 s: the rest of a long redrive runs in the jobs worker
# a running job not heard from for this long is taken for dead (its worker timed out): a replay starts anew
JOB_STALE = timedelta(minutes=15)


class Replay:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def run(self, integration_id: str, keys: Sequence[str] | None = None) -> JsonObject:
        if self.rt.store.integrations.get(integration_id, fresh=True) is None:
            raise NotFound(f"integration {integration_id} not found")
        items = self._selected(integration_id, keys)
        replayed: dict[str, int] = {"deal": 0, "deal_event": 0, "text_event": 0}
        kept: list[JsonValue] = []
        for item in items:
            if self._replay(integration_id, item):
                self.rt.store.integrations.unpark(integration_id, item.kind, item.key)
                replayed[item.kind] += 1
            else:
                kept.append(f"{item.kind}#{item.key}")
        reply: JsonObject = {"replayed": cast("JsonObject", replayed), "kept": kept, "dead_letters_redriven": 0}
        if keys is None:
            job = self._dead_letters(integration_id)
            reply["dead_letters_redriven"] = job.moved
            reply["dead_letters"] = job.model_dump(mode="json")
        return reply

    def _selected(self, integration_id: str, keys: Sequence[str] | None) -> list[ParkedItem]:
        items = self.rt.store.integrations.parked(integration_id)
        if keys is None:
            return items
        chosen: list[ParkedItem] = []
        for i, key in enumerate(keys):
            found = [p for p in items if key in (p.key, f"{p.kind}#{p.key}")]
            if not found:
                raise ValidationFailed(f"keys[{i}]: no parked item '{key}'", field=f"keys[{i}]")
            chosen += [p for p in found if p not in chosen]
        return chosen

    def _replay(self, integration_id: str, item: ParkedItem) -> bool:
        """Send the parked item back where it failed; False (it stays parked, its error shown) when its payload
        is no message at all (a queue body no worker could read: replaying it would only park it again).
        Items parked before the typed core hold the SQS body as a string: it is read as the JSON it is."""
        # a fresh `replay` nonce: the idempotency table must not answer the replay from memory
        nonce = pysecrets.token_hex(8)
        try:
            if item.kind == "deal":
                self.rt.store.deals.mark_pending(integration_id, DealRef.model_validate(item.payload))
            elif item.kind == "deal_event":
                message = DealEventMessage.model_validate(_as_json(item.payload))
                self.rt.queues.send_deal_event(message.model_copy(update={"replay": nonce}))
            else:
                text = read_message(item.payload)
                self.rt.queues.send_text_event(text.model_copy(update={"replay": nonce}))
        except (ValidationError, BadRequest):
            return False
        return True

    # --- dead letters ---------------------------------------------------------------------------------
    def _dead_letters(self, integration_id: str) -> RedriveJob:
        events = self.rt.store.events
        now = self.rt.now()
        job = events.job(integration_id, "redrive")
        if job is not None and job.state == "running" and now - from_iso(job.updated_at) < JOB_STALE:
            return job  # one redrive of a school at a time: the running one reports its progress
        job = RedriveJob(job_id=pysecrets.token_hex(8), started_at=stamp(now), updated_at=stamp(now))
        with self.rt.deadline.within(SYNC_REDRIVE_SECONDS):
            swept = self.rt.queues.redrive_dead_letters(integration_id, time_left=self.rt.deadline.remaining)
        job = advance(self.rt, integration_id, job, swept)
        if job.state == "running":
            self.rt.queues.send_job(JobMessage(integration_id=integration_id, job="redrive", job_id=job.job_id))
            logger.info("dead-letter redrive goes on in the background", extra={"integration_id": integration_id})
        return job


def advance(rt: Runtime, integration_id: str, job: RedriveJob, swept: Redriven) -> RedriveJob:
    """Record a sweep's progress on the job (→ the job as stored) and clear the moved messages' marks."""
    events = rt.store.events
    events.clear_dead_letters(integration_id, [(q, m) for q, m in swept.moved])
    if swept.finished:
        events.clear_dead_letters(integration_id)  # what no sweep found is gone from the DLQ (retention)
    now = stamp(rt.now())
    job = job.model_copy(
        update={
            "moved": job.moved + len(swept.moved),
            "updated_at": now,
            "state": "done" if swept.finished else "running",
            "finished_at": now if swept.finished else None,
        }
    )
    events.put_job(integration_id, job)
    return job


def run_redrive_job(rt: Runtime, message: JobMessage) -> RedriveJob | None:
    """The jobs worker's part of a redrive: sweep while the invocation has time, then go on or finish."""
    job = rt.store.events.job(message.integration_id, "redrive")
    if job is None or job.job_id != message.job_id or job.state != "running":
        return None  # superseded by a newer replay, or done already (a repeated delivery)
    swept = rt.queues.redrive_dead_letters(message.integration_id, time_left=rt.deadline.remaining)
    job = advance(rt, message.integration_id, job, swept)
    if job.state == "running":
        rt.queues.send_job(message)
    return job


def _as_json(payload: JsonValue) -> JsonValue:
    """A payload stored as the JSON text of a message (items parked before the typed core) → the message."""
    if isinstance(payload, str):
        try:
            parsed: JsonValue = json.loads(payload)
        except ValueError:
            return payload
        return parsed
    return payload
