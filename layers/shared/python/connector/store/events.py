"""A school's execution log, activity, dead-letter marks and background jobs (keys: docs/internals.md).

- `EVT#<at>#<token>`: the entries one invocation recorded for the school (a batch of up to ten SQS records is
  one item, not ten), kept `LOG_DAYS` (TTL); the newest N entries are one query, newest first;
- `HEALTH`: `Activity`, each field set on its own (the deal worker, the text worker and the uploader write
  different ones without overwriting each other);
- `DLQ#<queue>#<message id>`: one of the school's messages SQS dead-lettered, until a redrive moves it back
  (or the DLQ's retention ends: the same TTL);
- `JOB#redrive`: the school's background dead-letter redrive and its progress.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

from connector.models.events import Activity, DeadLetterMark, ExecutionEvent, RedriveJob
from connector.store.base import DynamoTable, Item, int_pk, load, model_item

LOG_DAYS = 7
DEAD_LETTER_DAYS = 14  # the dead-letter queues' MessageRetentionPeriod (template.yaml)
ENTRIES_PER_ITEM = 25  # one item stays a few KB (reasons are bounded)
HEALTH = "HEALTH"


class EventStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    # --- execution log -------------------------------------------------------------------------------
    def append(self, entries: Mapping[str, list[ExecutionEvent]]) -> None:
        """Each school's entries as one item (or a few, ENTRIES_PER_ITEM each), written in one batch."""
        expires = int(time.time()) + LOG_DAYS * 86400
        items: list[Item] = []
        for integration_id, events in entries.items():
            for start in range(0, len(events), ENTRIES_PER_ITEM):
                chunk = events[start : start + ENTRIES_PER_ITEM]
                newest = max(e.at for e in chunk)
                items.append(
                    {
                        "pk": int_pk(integration_id),
                        "sk": f"EVT#{newest}#{secrets.token_hex(4)}",
                        "entries": [model_item(e) for e in chunk],
                        "expires_at": expires,
                    }
                )
        if len(items) == 1:
            self.t.put(items[0])
        elif items:
            self.t.put_many(items)

    def recent(self, integration_id: str, limit: int) -> list[ExecutionEvent]:
        """The newest `limit` entries, newest first (`limit` items hold at least `limit` entries)."""
        now = time.time()
        entries: list[ExecutionEvent] = []
        for item in self.t.query(int_pk(integration_id), "EVT#", forward=False, limit=limit):
            expires = item.get("expires_at")
            if isinstance(expires, int | float) and expires <= now:
                continue  # DynamoDB deletes TTL items late
            raw = item.get("entries")
            entries += [ExecutionEvent.model_validate(e) for e in (raw if isinstance(raw, list) else [])]
        entries.sort(key=lambda e: e.at, reverse=True)
        return entries[:limit]

    # --- activity ------------------------------------------------------------------------------------
    def activity(self, integration_id: str) -> Activity:
        return load(Activity, self.t.get(int_pk(integration_id), HEALTH, consistent=False)) or Activity()

    def update_activity(self, integration_id: str, fields: Mapping[str, object]) -> None:
        if fields:
            self.t.update_fields(int_pk(integration_id), HEALTH, fields, must_exist=False)

    # --- dead letters ----------------------------------------------------------------------------------
    def mark_dead_letter(self, integration_id: str, mark: DeadLetterMark) -> None:
        expires = int(time.time()) + DEAD_LETTER_DAYS * 86400
        sk = f"DLQ#{mark.queue}#{mark.message_id}"
        self.t.put({"pk": int_pk(integration_id), "sk": sk, **model_item(mark), "expires_at": expires})

    def dead_letters(self, integration_id: str) -> int:
        return self.t.count(int_pk(integration_id), "DLQ#")

    def clear_dead_letters(self, integration_id: str, marks: list[tuple[str, str]] | None = None) -> None:
        """Drop the marks of these (queue, message id) pairs, or every mark of the school (None)."""
        pk = int_pk(integration_id)
        if marks is None:
            keys = [(pk, str(i["sk"])) for i in self.t.query(pk, "DLQ#")]
        else:
            keys = [(pk, f"DLQ#{queue}#{message_id}") for queue, message_id in marks]
        if keys:
            self.t.delete_many(keys)

    # --- background jobs -------------------------------------------------------------------------------
    def job(self, integration_id: str, kind: str) -> RedriveJob | None:
        return load(RedriveJob, self.t.get(int_pk(integration_id), f"JOB#{kind}"))

    def put_job(self, integration_id: str, job: RedriveJob) -> None:
        self.t.put({"pk": int_pk(integration_id), "sk": f"JOB#{job.kind}", **model_item(job)})
