"""Removing a school (`DELETE /integrations/{id}`): its credentials, every item it owns and its dead letters.

Order: the credentials (through the secrets port), then the integration record (from here on the intakes
answer 404 and the workers skip its events, writing nothing), then the rest of its partition `INT#<id>` —
snapshots, deals, chats, requests, links, claims, parked items, the execution log, caches, sync state,
watermarks, the points ledger, its access token — read by partition (keys only, no table scan) and deleted
in batches, then its messages in the dead-letter queues (they carry its visitors' data). What does not fit in
the request's time goes on in the jobs worker; `purge_sweep_seconds` after the removal the partition is swept
once more, for what a worker still in flight wrote (another warm container remembers the record up to 10 s).

The credentials are the sealed `CREDENTIALS` item of the partition (connector.secrets; Secrets Manager only
for a pre-KMS secret never moved): removing them needs no KMS key.

Not removed, because it is not the school's or holds nothing personal: the account-wide AlfaCRM request
counter (`RATE#<hash of the account>`, expires in 2 min), the phone spelling the AlfaCRM account stores
(`ACCT#<the same hash>` / `PHONES`: a format, shared by every school on that account), the stack's wrapped
data key (`CREDKEY`) and the deal worker's idempotency records (keys are hashes, values are statuses and deal
keys; they expire within 24 h).
"""

from __future__ import annotations

import secrets as pysecrets
from collections import Counter

from connector.errors import NotFound
from connector.models.messages import JobMessage
from connector.models.raw import JsonObject
from connector.observability import logger
from connector.runtime import Runtime
from connector.store.base import int_pk

CHUNK = 500  # keys read and deleted per step (a batch write takes 25; boto3's batch writer splits them)
STEP_SECONDS = 3.0  # a removal stops with this much of its time left and goes on in the background
# what the reply counts, by the first part of an item's sort key (docs/internals.md, "State table keys")
_CATEGORIES = {
    "META": "integration",
    "CUST": "customers",
    "PAY": "payments",
    "DEAL": "deals",
    "CUSTCOMM": "links",
    "CHAT": "chats",
    "REQ": "requests",
    "LEADCLAIM": "claims",
    "PARKED": "parked",
    "EVT": "events",
    "CACHE": "caches",
    "UIS": "uis_sync",
    "WM": "watermarks",
    "BUDGET": "points_ledger",
    "DLQ": "dead_letter_marks",
    "JOB": "jobs",
    "HEALTH": "health",
    "ACCESS": "access_token",
    "CREDENTIALS": "credentials",
}


def category(sk: str) -> str:
    head = sk.split("#", 1)[0]
    if head == "CHAT" and sk.endswith("#lost_task"):
        return "lost_chat_tasks"
    return _CATEGORIES.get(head, "other")


class Removal:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def remove(self, integration_id: str) -> JsonObject:
        integration = self.rt.store.integrations.get(integration_id, fresh=True)
        if integration is None:
            raise NotFound(f"integration {integration_id} not found")
        self.rt.secrets.delete_credentials(integration.secret_id)
        self.rt.store.integrations.remove(integration_id)
        counts: Counter[str] = Counter({"integration": 1, "secrets": 1})
        complete = self.purge(integration_id, counts)
        job = JobMessage(integration_id=integration_id, job="purge", job_id=pysecrets.token_hex(8))
        if not complete:
            self.rt.queues.send_job(job)
        # the sweep for writes in flight, whatever was done now
        self.rt.queues.send_job(job, delay_seconds=self.rt.env.purge_sweep_seconds)
        logger.info("integration removed", extra={"integration_id": integration_id, "complete": complete})
        return {"removed": dict(counts), "complete": complete}

    def purge(self, integration_id: str, counts: Counter[str]) -> bool:
        """Delete the partition and the dead letters while time allows (→ whether all of it is gone)."""
        table = self.rt.store.table
        while True:
            if self._short_of_time():
                return False
            keys = []
            for key in table.keys(int_pk(integration_id), page=CHUNK):
                keys.append(key)
                if len(keys) >= CHUNK:
                    break
            if not keys:
                break
            table.delete_many(keys)
            counts.update(category(sk) for _, sk in keys)
        swept = self.rt.queues.drop_dead_letters(integration_id, time_left=self.rt.deadline.remaining)
        if swept.moved:
            counts["dead_letters"] += len(swept.moved)
        return swept.finished

    def _short_of_time(self) -> bool:
        left = self.rt.deadline.remaining()
        return left is not None and left < STEP_SECONDS


def run_purge_job(rt: Runtime, message: JobMessage) -> bool:
    """The jobs worker's part of a removal (or its sweep): purge, and go on in a new message if time runs out."""
    if rt.store.integrations.get(message.integration_id, fresh=True) is not None:
        return True  # an integration of that id exists (again): nothing of it is removed by an old job
    counts: Counter[str] = Counter()
    complete = Removal(rt).purge(message.integration_id, counts)
    if not complete:
        rt.queues.send_job(message)
    if counts:
        logger.info("removed integration swept", extra={"integration_id": message.integration_id, **counts})
    return complete
