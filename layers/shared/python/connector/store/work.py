"""The work index: `WORK#<job>` per integration, in two sparse indexes only while the job has a due time.

Keys: `pk = INT#<id>`, `sk = WORK#<job>`; while scheduled the entry is in
- `gsi1` under `gsi1pk = WORK#<job>`, `gsi1sk = <due UTC ISO>#<id>`: the tick's probe. "Who is due now" is one
  range query that reads only the due entries (a school whose next run is later, or that has no work, is not
  read at all), so an idle tick costs one query whatever the number of schools;
- `gsi2` under `gsi2pk = WORK#<job>#<shard>` (`SHARDS` partitions by a hash of the id), `gsi2sk` as gsi1's:
  when more is due than one probe page, the tick hands every shard on at once (`ShardPage`) and the job's
  workers read the shards in parallel, so the last of 10,000 due schools is sent about as soon as the first.

Upload work arrives with deals marked pending (`mark`, called by the deal store: due `AT_ONCE` unless the
job is backing off after failures); in a deal event's unit of work (`connector.store.unit`) the mark is one
more item of its transaction, so it lands with the deal and costs no request of its own. It is settled by the
uploader's worker once nothing is pending (`settle`). Marks are time-stamped (`marked_at`, wall clock) and a
container skips a mark it made less than `MARK_MEMORY_SECONDS` ago; `settle` removes the entry only if the
last mark is older than `SETTLE_GUARD_SECONDS` before the worker checked for pending deals, which covers both
a skipped mark and the GSI's replication lag (see `settle`).

Write capacity: every index write of a job lands in gsi1's one partition `WORK#<job>` (a write that moves the
due time is a delete and a put there). DynamoDB serves up to 1,000 write units a second per partition key;
10,000 schools polled every minute need about 340 (docs/performance.md, "Fan-out per school").
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from connector.memo import Memo
from connector.models.work import Job, WorkEntry
from connector.store.base import DynamoTable, int_pk, load, to_ddb
from connector.store.unit import UnitTable

# gsi2 partitions per job: ~80 schools each at 10,000 due, one page per shard. Changing it re-shards every
# entry (each is re-written at its next run); a shard page reads one partition, never a list of shards.
SHARDS = 128
MARK_MEMORY_SECONDS = 20.0
GSI_LAG_ALLOWANCE_SECONDS = 10.0  # GSI replication is usually well under a second
SETTLE_GUARD_SECONDS = MARK_MEMORY_SECONDS + GSI_LAG_ALLOWANCE_SECONDS
# A marked entry is due at once: it sorts before every real due time whatever clock reads the index. Its
# work item is told apart from an earlier one of the same school by `marked_at` (the deduplication id).
AT_ONCE = "1970-01-01T00:00:00Z"
_MARK = "SET integration_id = :id, job = :job, marked_at = :m, "
_MARK_AT_ONCE = _MARK + "due = :due, gsi1pk = :ppk, gsi1sk = :gsk, gsi2pk = :gpk, gsi2sk = :gsk"
_MARK_KEPT = (
    _MARK + "due = if_not_exists(due, :due), gsi1pk = :ppk, gsi1sk = if_not_exists(gsi1sk, :gsk), "
    "gsi2pk = :gpk, gsi2sk = if_not_exists(gsi2sk, :gsk)"
)
_NOT_BACKING_OFF = "attribute_not_exists(failures) OR failures = :zero"


def work_sk(job: Job) -> str:
    return f"WORK#{job}"


def shard_of(integration_id: str) -> int:
    return int(hashlib.sha256(integration_id.encode()).hexdigest()[:8], 16) % SHARDS


def probe_pk(job: Job) -> str:
    """The job's gsi1 partition: every due entry, the tick's one query."""
    return f"WORK#{job}"


def shard_pk(job: Job, shard: int) -> str:
    """One of the job's gsi2 partitions (a shard page's query)."""
    return f"WORK#{job}#{shard:03d}"


def iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


class WorkIndex:
    def __init__(self, table: DynamoTable, *, clock: Callable[[], float] = time.time) -> None:
        self.t = table
        self.clock = clock
        self._marked: Memo[tuple[str, Job], bool] = Memo(MARK_MEMORY_SECONDS, clock=lambda: self.clock())

    def on(self, table: DynamoTable) -> WorkIndex:
        """This index on another handle of the table (a unit of work), sharing the container's memory of marks."""
        other = copy.copy(self)
        other.t = table
        return other

    def remembers(self, integration_id: str, job: Job) -> bool:
        """Whether this container marked the job within `MARK_MEMORY_SECONDS` (a new mark is skipped)."""
        return bool(self._marked.get((integration_id, job)))

    # --- reads --------------------------------------------------------------------------------------
    def get(self, integration_id: str, job: Job) -> WorkEntry | None:
        return load(WorkEntry, self.t.get(int_pk(integration_id), work_sk(job)))

    def due(
        self, job: Job, shard: int | None, *, until: str, limit: int, start: dict[str, str] | None = None
    ) -> tuple[list[WorkEntry], dict[str, str] | None]:
        """One page of the entries due at or before `until` (earliest first) and where the next starts: of the
        whole job (`shard` None: the probe, gsi1) or of one shard (gsi2)."""
        partition, index = (probe_pk(job), "gsi1") if shard is None else (shard_pk(job, shard), "gsi2")
        items, last = self.t.query_gsi_page(partition, until=f"{until}~", limit=limit, start=start, index=index)
        return [WorkEntry.model_validate(i) for i in items], last

    # --- writes ---------------------------------------------------------------------------------------
    def mark(self, integration_id: str, job: Job) -> bool:
        """Work arrived (a deal marked pending): due at once, unless the job is backing off after failures
        (then its due time stays: a failing school is not retried sooner for having more work).

        → whether a write was made (a mark this container made within `MARK_MEMORY_SECONDS` is enough)."""
        key = (integration_id, job)
        if self._marked.get(key):
            return False
        values = {
            ":id": integration_id,
            ":job": job,
            ":m": _decimal(self.clock()),
            ":due": AT_ONCE,
            ":ppk": probe_pk(job),
            ":gpk": shard_pk(job, shard_of(integration_id)),
            ":gsk": f"{AT_ONCE}#{integration_id}",
        }
        if isinstance(self.t, UnitTable):
            self._mark_in_unit(self.t, integration_id, job, values)
            return True
        for expression, condition in ((_MARK_AT_ONCE, _NOT_BACKING_OFF), (_MARK_KEPT, None)):
            kwargs: dict[str, object] = {
                "Key": {"pk": int_pk(integration_id), "sk": work_sk(job)},
                "UpdateExpression": expression,
                "ExpressionAttributeValues": {**values, ":zero": 0} if condition else values,
            }
            if condition:
                kwargs["ConditionExpression"] = condition
            self.t.calls += 1
            try:
                self.t.table.update_item(**kwargs)
                break
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        self._marked.put(key, True)
        return True

    def _mark_in_unit(self, unit: UnitTable, integration_id: str, job: Job, values: dict[str, object]) -> None:
        """`mark` as one item of the unit's transaction: which of the two updates is decided on the entry the
        unit read (its first batch holds it); a backoff that began since makes the condition fail, and the
        unit runs again on fresh state, as for any lost race. Remembered once the commit has landed."""
        pk, sk = int_pk(integration_id), work_sk(job)
        if unit.holds(pk, sk):
            return
        current = unit.get(pk, sk) or {}
        failures = current.get("failures")
        if isinstance(failures, int | float) and failures > 0:
            unit.update(pk, sk, _MARK_KEPT, values)
        else:
            unit.update(pk, sk, _MARK_AT_ONCE, {**values, ":zero": 0}, condition=_NOT_BACKING_OFF)
        unit.after_commit(lambda: self._marked.put((integration_id, job), True))

    def schedule(
        self,
        integration_id: str,
        job: Job,
        due: datetime,
        *,
        failures: int = 0,
        error: str | None = None,
        ran_at: datetime | None = None,
    ) -> WorkEntry:
        """The job's next due time (its own schedule, or a backoff), keeping the last mark's time."""
        entry = WorkEntry(
            integration_id=integration_id,
            job=job,
            due=iso(due),
            failures=failures,
            last_error=error,
            last_run_at=iso(ran_at) if ran_at else None,
        )
        values: dict[str, object] = {
            ":id": integration_id,
            ":job": job,
            ":due": entry.due,
            ":f": failures,
            ":ppk": probe_pk(job),
            ":gpk": shard_pk(job, shard_of(integration_id)),
            ":gsk": f"{entry.due}#{integration_id}",
        }
        expr = (
            "SET integration_id = :id, job = :job, due = :due, failures = :f, "
            "gsi1pk = :ppk, gsi1sk = :gsk, gsi2pk = :gpk, gsi2sk = :gsk"
        )
        removed = []
        for name, value in (("last_error", error), ("last_run_at", entry.last_run_at)):
            if value is None:
                removed.append(name)
            else:
                expr += f", {name} = :{name}"
                values[f":{name}"] = value
        if removed:
            expr += " REMOVE " + ", ".join(removed)
        self.t.calls += 1
        self.t.table.update_item(
            Key={"pk": int_pk(integration_id), "sk": work_sk(job)},
            UpdateExpression=expr,
            ExpressionAttributeValues=values,
        )
        return entry

    def remove(self, integration_id: str, job: Job) -> None:
        self.t.delete(int_pk(integration_id), work_sk(job))
        self._marked.drop((integration_id, job))

    def settle(self, integration_id: str, job: Job, *, checked_at: float) -> bool:
        """Remove the entry: nothing was pending when the worker looked at `checked_at` (wall clock).

        Refused (→ False) while the last mark is younger than `SETTLE_GUARD_SECONDS` before that look: the
        deal marked then may not have reached the GSI the worker read yet, and a container may have skipped
        writing a later mark (it marked less than `MARK_MEMORY_SECONDS` before). Either way the mark it did
        write is that recent, so the entry stays and the next tick runs the job again.
        """
        self.t.calls += 1
        try:
            self.t.table.delete_item(
                Key={"pk": int_pk(integration_id), "sk": work_sk(job)},
                ConditionExpression=Attr("marked_at").not_exists()
                | Attr("marked_at").lt(_decimal(checked_at - SETTLE_GUARD_SECONDS)),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        self._marked.drop((integration_id, job))
        return True


def _decimal(value: float) -> object:
    return to_ddb(round(value, 3))
