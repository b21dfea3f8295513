"""A school's health (`GET /integrations/{id}/health`) and the per-school dead-letter marks behind its DLQ depth.

Health reads what is already kept, a handful of requests: the activity item (last webhook, notification and
upload; the credential state the workers last saw), three counts (pending deals, parked items, dead letters;
`Select COUNT`, nothing leaves DynamoDB), the newest entries of the execution log (the last error), the
background redrive. `check=true` also tries both logins now (one AlfaCRM login, one UIS call, and one UIS
call needing «Воронки продаж» when deals are on) and records what it found.

SQS cannot count a queue's messages per school: a worker whose record fails at its last allowed receive
(`ApproximateReceiveCount` ≥ the queues' maxReceiveCount, `MAX_RECEIVE_COUNT`) marks it for the school
(`DLQ#<queue>#<message id>`); a redrive clears the marks of what it moved (`connector.replay`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

from aws_lambda_powertools.utilities.batch import BasePartialBatchProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from connector.errors import ConnectorError, NotFound
from connector.eventlog import credential_failure, stamp
from connector.models.events import Activity, CredentialState, DeadLetterMark
from connector.models.raw import JsonObject
from connector.queues import owner_of
from connector.runtime import Runtime
from connector.settings import Integration

LAST_ERROR_WINDOW = 50  # log entries searched for the last error
_SYSTEMS = ("alfacrm", "uis", "uis_components")


def integration_health(rt: Runtime, integration_id: str, *, check: bool = False) -> JsonObject:
    integration = rt.store.integrations.get(integration_id, fresh=True)
    if integration is None:
        raise NotFound(f"integration {integration_id} not found")
    store = rt.store
    activity = store.events.activity(integration_id)
    if check:
        activity = _check_credentials(rt, integration, activity)
    recent = store.events.recent(integration_id, LAST_ERROR_WINDOW)
    last_error = next((e for e in recent if e.outcome in ("failed", "parked")), None)
    job = store.events.job(integration_id, "redrive")
    credentials: dict[str, JsonObject] = {s: _state(getattr(activity, s)) for s in _SYSTEMS}
    counts = {
        "pending_deals": store.deals.pending_count(integration_id),
        "parked": store.integrations.parked_count(integration_id),
        "dead_letters": store.events.dead_letters(integration_id),
    }
    failing = any(c["state"] == "failing" for c in credentials.values())
    attention = counts["parked"] or counts["dead_letters"] or integration.funnel_sync is not None
    return {
        "integration_id": integration_id,
        "active": integration.active,
        "status": "failing" if failing else "attention" if attention else "ok",
        "last_alfacrm_webhook_at": activity.alfacrm_webhook_at,
        "last_uis_notification_at": activity.uis_notification_at,
        "last_upload_at": activity.upload_at,
        **counts,
        "last_error": last_error.model_dump(mode="json") if last_error else None,
        "credentials": cast("JsonObject", credentials),
        "funnel_sync": integration.funnel_sync.model_dump(mode="json") if integration.funnel_sync else None,
        "redrive": job.model_dump(mode="json") if job else None,
    }


def _state(state: CredentialState | None) -> JsonObject:
    if state is None:
        return {"state": "unknown", "at": None, "error": None}
    dumped: JsonObject = state.model_dump(mode="json")
    return dumped


def _check_credentials(rt: Runtime, integration: Integration, activity: Activity) -> Activity:
    """Both logins (and the deal component) tried now; what they showed is recorded and returned."""
    found: dict[str, CredentialState] = {}
    now = stamp(rt.now())

    def attempt(system: Literal["alfacrm", "uis", "uis_components"], call: Callable[[], object]) -> None:
        try:
            call()
        except ConnectorError as exc:
            if credential_failure(exc) is None and system != "uis_components":
                raise  # AlfaCRM or UIS unavailable: not a verdict on the credentials (503)
            found[system] = CredentialState(state="failing", at=now, error=exc.message)
            rt.events.credential(integration.id, system, ok=False, error=exc.message)
        else:
            found[system] = CredentialState(state="ok", at=now)
            rt.events.credential(integration.id, system, ok=True)

    attempt("alfacrm", lambda: rt.clients.alfacrm(integration).login())
    with rt.uis_points(integration, "admin") as points:
        attempt("uis", points.client.check_auth)
        if integration.settings.deals.enabled and found["uis"].state == "ok":
            attempt("uis_components", points.client.get_sales_funnels)
    return activity.model_copy(update=found)


# --- dead-letter marks ----------------------------------------------------------------------------------
def process_batch(
    rt: Runtime,
    queue: Literal["deal", "text"],
    event: Mapping[str, Any],
    context: object,
    record_handler: Callable[..., Any],
    processor: BasePartialBatchProcessor,
) -> dict[str, Any]:
    """`process_partial_response` for a worker queue, marking for their schools the records that fail at their
    last allowed receive (SQS moves them to the DLQ next)."""
    records = event.get("Records") or []
    try:
        response = process_partial_response(
            event=dict(event),
            record_handler=record_handler,
            processor=processor,
            context=context,  # type: ignore[arg-type]
        )
    except BatchProcessingError:
        note_dead_letters(rt, queue, records, {r.get("messageId") for r in records})
        raise
    reply = cast("dict[str, Any]", response)
    note_dead_letters(rt, queue, records, {f.get("itemIdentifier") for f in reply.get("batchItemFailures", [])})
    return reply


def note_dead_letters(
    rt: Runtime, queue: Literal["deal", "text"], records: list[Mapping[str, Any]], failed: set[object]
) -> int:
    marked = 0
    for record in records:
        if record.get("messageId") not in failed:
            continue
        attributes = record.get("attributes") or {}
        try:
            receives = int(attributes.get("ApproximateReceiveCount", 1))
        except (TypeError, ValueError):
            receives = 1
        owner = owner_of(str(record.get("body") or ""))
        if receives < rt.env.max_receive_count or owner is None or rt.store.integrations.get(owner) is None:
            continue  # retried again by SQS, not ours, or a school removed since
        mark = DeadLetterMark(queue=queue, message_id=str(record["messageId"]), at=stamp(rt.now()))
        rt.store.events.mark_dead_letter(owner, mark)
        marked += 1
    return marked
