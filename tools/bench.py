"""`make bench`: the connector's figures against their targets (issue 12), written to bench/results.json.

Every figure is `{"value", "floor", "ratio", "target", "unit"}`: ratio = value ÷ floor where there is a floor
(the target then bounds the ratio), else the value itself (the target bounds the value); target null means
shown, not judged. bench/raw.json keeps everything each section returned, the machine and the cost model.

Sections, each in its own interpreter (each runs its own in-process moto and sandboxes; tools/bench_world.py):
- cold start per handler against the third-party imports alone (tools/coldstart.py; the layer as
  layers/shared/Makefile builds it, cached under .local/ by the hash of what goes into it);
- intake p50 and p99 against parse-and-send (tools/bench_intake.py);
- deals: calls per AlfaCRM webhook and per uploaded deal, at 1×, 4× and 16× volume (tools/bench_deals.py);
- texts: AlfaCRM calls per new lead and per repeat visitor (tools/bench_texts.py);
- scheduler ticks: calls per busy and per idle school (tools/bench_ticks.py);
- schools: `tools.bench_schools.run()` when that module exists (branch scalea): it returns a dict whose
  entries in the figure format go into results.json as `schools.<name>` (the rest into raw.json);
- credentials: KMS calls per event, what sealing costs; the cost model (tools/bench_cost.py).
Cold start (judged in CPU time) runs beside the call-counting sections; the intake's wall-clock latency runs
alone, after them.

`python -m tools.bench [--quick]`: --quick runs smaller volumes (a smoke run; figures are not comparable).
Latencies and CPU times are this machine's, shared with other work: the calls per event are exact, the times
indicative.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "shared"
OUT = ROOT / "bench"
CACHE = ROOT / ".local" / "bench-layer"


def figure(value: float, floor: float | None, target: float | None, unit: str) -> dict[str, Any]:
    ratio = round(value / floor, 3) if floor else value
    return {"value": value, "floor": floor, "ratio": ratio, "target": target, "unit": unit}


def in_subprocess(module: str, call: str) -> Any:
    """`module.call` in a fresh interpreter (its own moto and environment); its JSON result."""
    code = f"import json, {module} as m; print(json.dumps(m.{call}, default=str))"
    env = {**os.environ, "PYTHONPATH": f"{LAYER / 'python'}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{module}.{call} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    model = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "")
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "system": platform.platform(terse=True),
    }


# --- sections ---------------------------------------------------------------------------------------------
def _layer() -> Path:
    """The built layer, rebuilt only when what goes into it changed."""
    digest = hashlib.sha256()
    for path in sorted([LAYER / "requirements.txt", LAYER / "Makefile", *(LAYER / "python").rglob("*.py")]):
        digest.update(str(path.relative_to(LAYER)).encode() + path.read_bytes())
    built = CACHE / digest.hexdigest()[:16]
    if not (built / "python").is_dir():
        from tools.coldstart import build_layer

        for old in CACHE.glob("*"):
            subprocess.run(["rm", "-rf", str(old)], check=True)
        build_layer(built)
    return built / "python"


def cold_start(runs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from tools.coldstart import run

    raw = run(runs, _layer())  # raw.json also keeps the medians of app and floor over the runs
    # value and floor of the run with the median ratio (one process's pair): value ÷ floor is that median
    figures = {
        f"coldstart.{name}": figure(*row["median_run_cpu_ms"], 1.3, "ms CPU") for name, row in raw["handlers"].items()
    }
    return figures, raw


def intake(requests: int) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = in_subprocess("tools.bench_intake", f"run({requests})")
    handler, baseline = raw["handler"], raw["baseline"]
    return {
        "intake.p50": figure(handler["p50_ms"], baseline["p50_ms"], 1.5, "ms"),
        "intake.p99": figure(handler["p99_ms"], baseline["p99_ms"], None, "ms"),
    }, raw


def deals(base: int) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = in_subprocess("tools.bench_deals", f"growth({base})")
    main = raw["4x"]["result"]
    steady, flush = main["steady_stream"], main["flush"]
    figures = {
        # point 5: a deal webhook costs 1 AlfaCRM read and at most 4 DynamoDB calls
        "deal_webhook.alfacrm_calls": figure(steady["per_event"]["alfacrm"], 1, 1.0, "calls/event"),
        "deal_webhook.dynamodb_calls": figure(steady["per_event"]["dynamodb"], 4, 1.0, "calls/event"),
        "deal_webhook.duplicate_dynamodb_calls": figure(
            main["duplicate_stream"]["per_event"]["dynamodb"], None, None, "calls/event"
        ),
        "deal_worker.events_per_second": figure(steady["events_per_second"], None, None, "events/s in-process"),
        # the uploader: UIS calls = contact calls + ceil(rows / 1000), DynamoDB at most 2 per uploaded deal
        "uploader.uis_calls": figure(flush["uis_calls"], flush["uis_floor"], 1.0, "calls/flush"),
        "uploader.dynamodb_calls_per_deal": figure(flush["dynamodb_per_uploaded_deal"], 2, 1.0, "calls/deal"),
        "uploader.deals_per_second": figure(flush["deals_per_second"] or 0, None, None, "deals/s in-process"),
    }
    one, sixteen = raw["1x"], raw["16x"]
    for key, unit, target in (
        ("worker_calls_per_event", "calls/event", 1.1),
        # the connector's CPU (moto's serving of the AWS calls left out: tools/bench_world.MotoCpu), the target;
        # the process's whole CPU beside it, moto included
        ("worker_own_cpu_ms_per_event", "ms CPU/event, the connector's (moto excluded)", 1.1),
        ("worker_cpu_ms_per_event", "ms CPU/event, the whole process (moto included)", None),
        ("uploader_calls_per_deal", "calls/deal", 1.1),
        ("uploader_own_cpu_ms_per_deal", "ms CPU/deal, the connector's (moto excluded)", 1.1),
        ("uploader_cpu_ms_per_deal", "ms CPU/deal, the whole process (moto included)", None),
    ):
        figures[f"growth.{key}_16x"] = figure(sixteen[key], one[key], target, unit)
    return figures, raw


def texts(visitors: int) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = in_subprocess("tools.bench_texts", f"run({visitors})")
    floors = {  # point 5: search, create (with the e-mail: a second search), comment
        "request_new_phone": 3,
        "request_new_phone_email": 4,
        "request_repeat": 2,
        "chat_new_phone": 3,
        "chat_repeat": 2,
    }
    figures = {
        f"texts.{case}.alfacrm_calls": figure(raw[case]["per_event"]["alfacrm"], floor, 1.0, "calls/event")
        for case, floor in floors.items()
    }
    for case in floors:
        figures[f"texts.{case}.dynamodb_calls"] = figure(raw[case]["per_event"]["dynamodb"], None, None, "calls/event")
    figures["text_worker.events_per_second"] = figure(
        round(sum(raw[c]["events_per_second"] for c in floors) / len(floors), 1), None, None, "events/s in-process"
    )
    return figures, raw


def ticks(schools: int) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = in_subprocess("tools.bench_ticks", f"run({schools})")
    figures = {}
    for name, row in raw.items():
        if not isinstance(row, dict):
            continue
        idle = row["idle_per_school"]
        # an idle school costs nothing beyond its share of one index query
        figures[f"ticks.{name}.idle_dynamodb_calls_per_school"] = figure(idle["dynamodb"], 1 / schools, 1.0, "calls")
        figures[f"ticks.{name}.idle_api_calls_per_school"] = figure(
            idle["alfacrm"] + idle["uis"], None, 0, "AlfaCRM+UIS calls"
        )
    return figures, raw


def schools() -> tuple[dict[str, Any], dict[str, Any]] | None:
    if importlib.util.find_spec("tools.bench_schools") is None:
        return None
    raw = in_subprocess("tools.bench_schools", "run()")
    figures = {f"schools.{k}": v for k, v in raw.items() if isinstance(v, dict) and {"value", "target"} <= v.keys()}
    return figures, raw


def credentials() -> tuple[dict[str, Any], dict[str, Any]]:
    """What envelope encryption costs a container: the cryptography import (once) and one AES-GCM open."""
    code = r"""
import json, os, time
c = time.process_time()
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
imported = (time.process_time() - c) * 1000
key, nonce, data = AESGCM.generate_key(256), os.urandom(12), b"x" * 200
sealed = AESGCM(key).encrypt(nonce, data, b"ad")
t = time.perf_counter()
for _ in range(2000):
    AESGCM(key).decrypt(nonce, sealed, b"ad")
print(json.dumps({"import_cpu_ms": imported, "open_us": (time.perf_counter() - t) / 2000 * 1e6}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    raw = json.loads(done.stdout)
    return {
        "credentials.cryptography_import": figure(round(raw["import_cpu_ms"], 1), None, None, "ms CPU/cold start"),
        "credentials.open": figure(round(raw["open_us"], 1), None, None, "µs/opening"),
    }, raw


# --- the run ------------------------------------------------------------------------------------------------
def _timed(name: str, run: Any) -> tuple[str, Any]:
    t = time.perf_counter()
    result = run()
    print(f"[{name}] {time.perf_counter() - t:.1f}s", flush=True)
    return name, result


def _missed(f: dict[str, Any]) -> bool:
    return f["target"] is not None and (f["ratio"] if f["floor"] else f["value"]) > f["target"]


def _row(name: str, f: dict[str, Any]) -> str:
    target = f["target"]
    mark = "" if target is None else ("MISS" if _missed(f) else "ok")
    floor = "" if f["floor"] is None else f"{f['floor']:g}"
    ratio = f"{f['ratio']:.2f}" if f["floor"] else ""
    target_text = "" if target is None else (f"≤{target:g}×" if f["floor"] else f"≤{target:g}")
    return f"  {name:<52} {f['value']:>10g} {floor:>8} {ratio:>6} {target_text:>6} {mark:<4} {f['unit']}"


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    started = time.perf_counter()
    host = machine()
    figures: dict[str, Any] = {}
    raw: dict[str, Any] = {"machine": host, "quick": quick}
    # Cold start is judged in CPU time, the calls per event are exact: those run side by side (two cores).
    # The intake's latency is wall time: it runs alone, after them.
    beside: list[tuple[str, Any]] = [
        ("deals", lambda: deals(1 if quick else 4)),
        ("texts", lambda: texts(2 if quick else 5)),
        ("ticks", lambda: ticks(3 if quick else 10)),
        ("schools", schools),
    ]
    alone: list[tuple[str, Any]] = [("intake", lambda: intake(50 if quick else 300)), ("credentials", credentials)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        cold = pool.submit(_timed, "coldstart", lambda: cold_start(1 if quick else 3))
        done = [_timed(name, run) for name, run in beside]
        done.insert(0, cold.result())
    done += [_timed(name, run) for name, run in alone]
    for name, result in done:
        if result is None:
            raw[name] = "skipped: tools/bench_schools.py is not on this branch (branch scalea writes it)"
            print(f"[{name}] {raw[name]}", flush=True)
            continue
        figures.update(result[0])
        raw[name] = result[1]

    from tools.bench_cost import model

    cost = model(raw["deals"]["4x"]["result"], raw["texts"], raw["ticks"])
    raw["cost"] = cost
    figures["cost.idle_school"] = figure(cost["idle_school_total"], None, None, "USD/month")
    figures["cost.busy_school"] = figure(cost["busy_school_total"], None, None, "USD/month")
    figures["cost.fixed"] = figure(cost["fixed_total"], None, None, "USD/month per deployment")
    for n, row in cost["deployment"].items():
        figures[f"cost.deployment_{n}_busy"] = figure(row["busy"], None, None, "USD/month")
    figures["cost.kms_direct_busy_school"] = figure(cost["alternatives"]["kms_direct_busy"], None, None, "USD/month")
    figures["cost.secrets_manager_busy_school"] = figure(
        cost["alternatives"]["secrets_manager_busy"], None, None, "USD/month"
    )
    kms = max(
        raw["deals"]["4x"]["result"]["steady_stream"]["per_event"]["kms"],
        *(v["per_event"]["kms"] for v in raw["texts"].values() if isinstance(v, dict) and "per_event" in v),
    )
    figures["credentials.kms_calls_per_event"] = figure(kms, None, None, "calls/event (warm container)")

    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (OUT / "raw.json").write_text(json.dumps(raw, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")

    print(f"\nmachine: {host['cpu']}, {host['cores']} cores, load {host['load_at_start']}, Python {host['python']}")
    print(f"  {'figure':<52} {'value':>10} {'floor':>8} {'ratio':>6} {'target':>6} {'':<4} unit")
    for name, f in figures.items():
        print(_row(name, f))
    print(f"\ncost: busy school ${cost['busy_school_total']}/month (dominant: {cost['busy_dominant']}), idle "
          f"${cost['idle_school_total']}, fixed ${cost['fixed_total']} per deployment")  # fmt: skip
    misses = [n for n, f in figures.items() if _missed(f)]
    print(f"{len(misses)} of {sum(f['target'] is not None for f in figures.values())} targets missed")
    print(f"bench/results.json written; bench finished in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(LAYER / "python")]
    raise SystemExit(main(sys.argv[1:]))
