"""The cost model (docs/performance.md): dollars per school per month from the calls the bench measured.

Nothing here is measured: `model(measured)` prices the per-event and per-tick counts of tools/bench_deals.py,
bench_texts.py and bench_ticks.py with AWS list prices (us-east-1, on-demand, no free tier; eu-central-1 is
about 20 % dearer for Lambda-adjacent services and DynamoDB). Lambda's billed duration is modelled, not taken
from the in-process runs (moto's CPU is not DynamoDB's): the handler's measured CPU time plus a round trip per
call, 150 ms to AlfaCRM or UIS and 5 ms to DynamoDB, SQS or KMS (the latencies issue 12 measured with).
"""

from __future__ import annotations

from typing import Any

PRICES = {  # USD, list prices
    "lambda_gb_second": 0.0000166667,  # x86
    "lambda_request": 0.20 / 1e6,
    "apigw_request": 3.50 / 1e6,  # REST API, first 333 M a month
    "sqs_request": 0.40 / 1e6,  # standard queue, per 64 KB chunk
    "sqs_fifo_request": 0.50 / 1e6,
    "ddb_wru": 0.625 / 1e6,  # on-demand, since the November 2024 price cut
    "ddb_rru": 0.125 / 1e6,
    "ddb_gb_month": 0.25,
    "kms_key_month": 1.00,
    "kms_request": 0.03 / 1e4,
    "secret_month": 0.40,
    "secret_request": 0.05 / 1e4,
}
LATENCY_MS = {"alfacrm": 150.0, "uis": 150.0, "dynamodb": 5.0, "sqs": 5.0, "kms": 5.0, "secretsmanager": 5.0}
DAYS = 30
BUSY = {"alfacrm_webhooks_a_day": 300, "uis_notifications_a_day": 50}  # issue 12's busy school
TICKS_A_MONTH = {
    "DealUploadSchedule": 60 * 24 * DAYS,
    "ChatPollSchedule": 12 * 24 * DAYS,
    "ReconcileSchedule": 24 * DAYS,
}
MEMORY_MB = {"intake": 256, "worker": 512}  # template.yaml: the webhooks 256 MB, the rest the Globals' 512 MB
STORAGE_GB = {"idle": 0.001, "busy": 0.05}  # assumed: a busy school keeps ~50 MB of deals, history, hashes
# Lambda's SQS pollers long-poll each mapped queue even when it is empty: about 5 pollers × 3 receives a
# minute (20 s long polls), a fixed cost of the deployment per queue
EMPTY_RECEIVES_A_MONTH = 5 * 3 * 60 * 24 * DAYS
CONTAINERS = 20  # assumed warm containers across the workers (each unwraps the data key once an hour)


def _duration_ms(counts: dict[str, float], cpu_ms: float) -> float:
    return cpu_ms + sum(counts.get(k, 0.0) * ms for k, ms in LATENCY_MS.items())


def _lambda(counts: dict[str, float], cpu_ms: float, memory_mb: int, invocations: float = 1.0) -> float:
    seconds = _duration_ms(counts, cpu_ms) / 1000
    return seconds * memory_mb / 1024 * PRICES["lambda_gb_second"] + invocations * PRICES["lambda_request"]


def _ddb(counts: dict[str, float]) -> float:
    return counts.get("rru", 0.0) * PRICES["ddb_rru"] + counts.get("wru", 0.0) * PRICES["ddb_wru"]


def _event(per_event: dict[str, float], cpu_ms: float, batch: float = 1.0) -> dict[str, float]:
    """One webhook or notification: API Gateway, the intake (1 GetItem, 1 SendMessage), the queue's receive
    and delete (Lambda's poller, `batch` messages each), the worker and its calls."""
    intake = {"dynamodb": 1, "rru": 0.5, "sqs": 1}
    return {
        "apigw": PRICES["apigw_request"],
        "lambda": _lambda(intake, 2.0, MEMORY_MB["intake"])
        + _lambda(per_event, cpu_ms, MEMORY_MB["worker"], 1 / batch),
        "sqs": (1 + 2 / batch) * PRICES["sqs_request"],
        "dynamodb": _ddb(intake) + _ddb(per_event),
        "kms": per_event.get("kms", 0.0) * PRICES["kms_request"],
    }


def _add(*parts: dict[str, float], times: float = 1.0) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + v * times
    return out


def _texts_mean(texts: dict[str, Any]) -> tuple[dict[str, float], float]:
    cases = [v for v in texts.values() if isinstance(v, dict) and "per_event" in v]
    keys = cases[0]["per_event"].keys()
    mean = {k: sum(c["per_event"][k] for c in cases) / len(cases) for k in keys}
    return mean, sum(c["cpu_ms_per_event"] for c in cases) / len(cases)


def _ticks_idle(ticks: dict[str, Any]) -> dict[str, float]:
    """An idle school's share of every tick of a month (a tick is one invocation whatever the schools)."""
    out: dict[str, float] = {}
    for name, per_month in TICKS_A_MONTH.items():
        row = ticks.get(name)
        if not row:
            continue
        share = row["idle_per_school"]
        part = {
            "lambda": _lambda(share, row["idle_cpu_ms_per_school"], MEMORY_MB["worker"], 0.0),
            "dynamodb": _ddb(share),
        }
        out = _add(out, _add(part, times=per_month))
    return out


def model(deals: dict[str, Any], texts: dict[str, Any], ticks: dict[str, Any]) -> dict[str, Any]:
    webhooks = BUSY["alfacrm_webhooks_a_day"] * DAYS
    notifications = BUSY["uis_notifications_a_day"] * DAYS
    steady, flush = deals["steady_stream"], deals["flush"]
    deal_event = _event(steady["per_event"], steady["cpu_ms_per_event"])
    text_counts, text_cpu = _texts_mean(texts)
    text_event = _event(text_counts, text_cpu)
    # every webhook leaves a deal pending, uploaded by a later tick (at worst one flush per deal)
    upload = flush["per_uploaded_deal"]
    upload_cost = {
        "lambda": _lambda(upload, flush["cpu_ms"] / max(flush["uploaded"], 1), MEMORY_MB["worker"], 0.0),
        "dynamodb": _ddb(upload),
    }
    idle = _add(_ticks_idle(ticks), {"dynamodb_storage": STORAGE_GB["idle"] * PRICES["ddb_gb_month"]})
    busy = _add(
        idle,
        _add(deal_event, times=webhooks),
        _add(text_event, times=notifications),
        _add(upload_cost, times=webhooks),
        {"dynamodb_storage": (STORAGE_GB["busy"] - STORAGE_GB["idle"]) * PRICES["ddb_gb_month"]},
    )
    queues = 2  # the deal and text event queues (scalea's per-job work queues add theirs)
    fixed = {
        "kms_key": PRICES["kms_key_month"],
        "kms_unwraps": CONTAINERS * 24 * DAYS * PRICES["kms_request"],
        "admin_secret": PRICES["secret_month"],
        "sqs_empty_receives": queues * EMPTY_RECEIVES_A_MONTH * PRICES["sqs_request"],
        "schedule_invocations": sum(TICKS_A_MONTH.values()) * PRICES["lambda_request"],
    }
    # the alternatives to the stack's one data key, priced on the same school
    work_items = (
        webhooks + notifications + webhooks + sum(TICKS_A_MONTH[k] for k in ("ChatPollSchedule", "ReconcileSchedule"))
    )
    alternatives = {
        "kms_direct_busy": work_items * PRICES["kms_request"],  # one Decrypt per work item on a cold cache
        "kms_direct_added_ms_per_item": LATENCY_MS["kms"],
        "secrets_manager_busy": PRICES["secret_month"] + work_items * PRICES["secret_request"],
    }

    def total(part: dict[str, float]) -> float:
        return sum(part.values())

    deployment = {
        str(n): {"busy": round(total(fixed) + n * total(busy), 2), "idle": round(total(fixed) + n * total(idle), 2)}
        for n in (1_000, 10_000)
    }
    return {
        "assumptions": {
            "prices": PRICES,
            "latency_ms": LATENCY_MS,
            "busy_school": BUSY,
            "days": DAYS,
            "storage_gb": STORAGE_GB,
            "containers": CONTAINERS,
            "queues_polled": queues,
        },
        "idle_school": {k: round(v, 5) for k, v in idle.items()},
        "busy_school": {k: round(v, 5) for k, v in busy.items()},
        "idle_school_total": round(total(idle), 4),
        "busy_school_total": round(total(busy), 4),
        "busy_dominant": max(busy, key=lambda k: busy[k]),
        "fixed": {k: round(v, 4) for k, v in fixed.items()},
        "fixed_total": round(total(fixed), 2),
        "deployment": deployment,
        "alternatives": {k: round(v, 4) for k, v in alternatives.items()},
        "per_event": {"deal_webhook": round(total(deal_event), 7), "uis_notification": round(total(text_event), 7)},
    }
