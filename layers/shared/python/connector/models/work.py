"""The per-school fan-out (docs/internals.md, "Fan-out per school"): the work index and its queue messages.

A school (an integration) has at most one `WorkEntry` per job in the state table, indexed by the job and
its due time only while it has work (a sparse partition of `gsi1`): a scheduler tick reads the entries that
are due, never the list of schools, and puts one `SchoolWork` per school on the job's FIFO queue (message
group = the school, so one school's work runs one at a time while schools run in parallel). A shard with
more due entries than one page hands the rest on as a `ShardPage`, so no invocation's work grows with the
number of schools.

Also here: a backfill's progress (`BackfillState`, item `BACKFILL`), the cursor a backfill resumes from.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, TypeAdapter, model_validator

from connector.models.raw import JsonObject

Job = Literal["upload", "poll", "reconcile", "backfill"]
JOBS: tuple[Job, ...] = ("upload", "poll", "reconcile", "backfill")


class _Work(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def body(self) -> str:
        """The SQS message body."""
        return self.model_dump_json(exclude_none=True)


class WorkEntry(_Work):
    """`WORK#<job>` of one integration: when its job is due next and how it went the last times."""

    integration_id: str
    job: Job
    due: str | None = None  # UTC ISO; None: no work (not in the index)
    failures: int = 0  # consecutive failed runs: the next due time moves out exponentially
    last_error: str | None = None
    last_run_at: str | None = None
    marked_at: float | None = None  # epoch seconds of the last "work arrived" mark (a deal marked pending)


class SchoolWork(_Work):
    """One school's turn of one job (a FIFO message; group = the school, deduplicated per due time)."""

    kind: Literal["school"] = "school"
    integration_id: str = Field(min_length=1)
    job: Job
    due: str  # the entry's due time it was sent for (part of the deduplication id)
    marked_at: float | None = None  # the entry's last mark, when due "at once" (ditto)


class ShardPage(_Work):
    """The rest of one shard's due entries for a tick: read a page, send its schools, hand on the rest."""

    kind: Literal["page"] = "page"
    job: Job
    shard: int = Field(ge=0)
    until: str  # the tick's moment (UTC ISO): entries due at or before it
    start: dict[str, str] | None = None  # the index's LastEvaluatedKey where this page starts


WorkMessage = Annotated[SchoolWork | ShardPage, Field(discriminator="kind")]
WORK_MESSAGE: TypeAdapter[SchoolWork | ShardPage] = TypeAdapter(WorkMessage)


class TickInput(BaseModel):
    """A scheduler tick's event: the schedule's Input names the job."""

    model_config = ConfigDict(extra="ignore")

    job: Job


class WorkRecord(SqsRecordModel):
    """An SQS record of a work queue, its body parsed (the job workers' batch processor model)."""

    body: Json[WorkMessage]


# --- backfill --------------------------------------------------------------------------------------------
BackfillPhase = Literal["customers", "pays", "log", "done"]
BackfillStatus = Literal["idle", "running", "done", "failed"]


class BackfillRange(BaseModel):
    """`POST /integrations/{id}/backfill`'s optional body: which customers and payments to import."""

    model_config = ConfigDict(extra="forbid")

    date_from: date | None = Field(
        default=None, description="YYYY-MM-DD: customers created / payments dated on or after"
    )
    date_to: date | None = Field(default=None, description="YYYY-MM-DD: on or before (inclusive)")

    @model_validator(mode="after")
    def _ordered(self) -> BackfillRange:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from is after date_to")
        return self


class BackfillState(BaseModel):
    """`BACKFILL`: one integration's import of existing customers and payments, resumable from its cursor."""

    model_config = ConfigDict(extra="ignore")

    state: BackfillStatus = "idle"
    range: BackfillRange = Field(default_factory=BackfillRange)
    branches: list[int] = Field(default_factory=list)  # every branch of the account, read at the start
    branch_index: int = 0
    phase: BackfillPhase = "customers"
    page: int = 0  # the next page of `phase` in `branches[branch_index]`
    done: int = 0  # records read so far (customers and payments, every branch)
    total: int | None = None  # records to read, as AlfaCRM's first pages counted them
    imported: int = 0  # records inside the range, folded into snapshots
    log_pages: int = 0  # `log/index` pages read (capped: the log is the history's times, not its records)
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    seconds: float = 0.0  # time spent in chunks (the rate behind eta_s)
    failures: int = 0
    error: str | None = None
    version: int = 0

    def progress(self) -> JsonObject:
        """What `GET /integrations/{id}/backfill` answers."""
        eta: int | None = None
        if self.state == "running" and self.total is not None and self.done and self.seconds > 0:
            eta = round(max(self.total - self.done, 0) * self.seconds / self.done)
        return {
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "eta_s": eta,
            "imported": self.imported,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }
