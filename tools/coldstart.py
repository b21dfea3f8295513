"""Cold start per handler: importing `app` against importing only the third-party modules it pulls in.

The layer measured is the one that ships: layers/shared/Makefile (what `sam build` runs) builds it into a
temporary directory, Lambda wheels and all, compiled for python3.13. Each run is a fresh interpreter with
nothing but the function's directory, the layer and the standard library on its path (`-I -S`), and `-B`:
Lambda's /opt and /var/task are read-only, so nothing is compiled and kept between runs. The environment is
the function's own from template.yaml, on a Lambda-like execution environment.

For each handler, one discovery run (`import app` alone) lists the third-party modules it loads (those under
the layer but outside connector/). Then each measured run is one fresh process that first imports exactly
those modules, in the same order (`floor`: what any handler using those packages pays), then `import app`
(the rest: the connector's own modules, the handler, the standard-library modules only they use). ratio =
(floor + rest) ÷ floor, the median over the runs (target ≤ 1.3), in CPU time (`process_time`): imports are
CPU-bound, and both parts of a run share the machine's load at that moment, which on a machine shared with
other work matters more than anything measured (wall times are kept too).

`python -m tools.coldstart [--runs N] [--layer DIR]` prints the table.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON313 = Path(sys.executable) if sys.version_info[:2] == (3, 13) else Path(shutil.which("python3.13") or "")

_APP = r"""
import sys, time, json
sys.path[:0] = [sys.argv[1], sys.argv[2]]
t, c = time.perf_counter(), time.process_time()
import app
ms, cpu = (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000
layer = sys.argv[2].rstrip("/") + "/"
own = layer + "connector/"
mods = [n for n, m in list(sys.modules.items())
        if (f := getattr(m, "__file__", None)) and f.startswith(layer) and not f.startswith(own)]
print(json.dumps({"ms": ms, "cpu": cpu, "modules": mods}))
"""

_SPLIT = r"""
import sys, time, json, importlib
sys.path[:0] = [sys.argv[1], sys.argv[2]]
mods = json.loads(sys.stdin.read())
t, c = time.perf_counter(), time.process_time()
for name in mods:
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass  # a module that only imports inside its parent's try (optional speedups) costs nothing here
floor_ms, floor_cpu = (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000
t, c = time.perf_counter(), time.process_time()
import app
rest_ms, rest_cpu = (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000
print(json.dumps({"floor_ms": floor_ms, "floor_cpu": floor_cpu, "rest_ms": rest_ms, "rest_cpu": rest_cpu}))
"""


def build_layer(into: Path) -> Path:
    """layers/shared/Makefile's build, as `sam build` runs it; returns the `python/` directory."""
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT / "layers" / "shared"), "build-SharedLayer",
         f"ARTIFACTS_DIR={into}", f"PYTHON313={PYTHON313}"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return into / "python"


def _lambda_env(function_id: str) -> dict[str, str]:
    from tools.localstack import samenv

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_REGION": "eu-central-1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "coldstart",
        "AWS_SECRET_ACCESS_KEY": "coldstart",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": function_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "LAMBDA_TASK_ROOT": "/var/task",
        "_HANDLER": "app.lambda_handler",
    }
    env.update(samenv.build()[function_id])
    return env


def _run(code: str, args: list[str], env: dict[str, str], stdin: str = "") -> dict[str, Any]:
    done = subprocess.run(
        [str(PYTHON313), "-I", "-S", "-B", "-c", code, *args],
        input=stdin, env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    parsed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def measure(layer: Path, runs: int = 5) -> dict[str, dict[str, Any]]:
    from tools.localstack.template import Template

    template = Template.load(ROOT / "template.yaml")
    out: dict[str, dict[str, Any]] = {}
    for lid, fn in sorted(template.functions.items()):
        folder = ROOT / fn.code_uri
        env = _lambda_env(lid)
        discovered = _run(_APP, [str(folder), str(layer)], env)
        modules = discovered["modules"]
        split = [_run(_SPLIT, [str(folder), str(layer)], env, stdin=json.dumps(modules)) for _ in range(runs)]
        ratios = [(r["floor_cpu"] + r["rest_cpu"]) / r["floor_cpu"] for r in split]
        floor = statistics.median(r["floor_cpu"] for r in split)
        # the run whose ratio is the median: its app and floor are one process's, so their quotient is the
        # judged ratio (the medians of app and of floor come from different runs under a changing load)
        middle = sorted(range(runs), key=ratios.__getitem__)[runs // 2]
        out[fn.code_uri.strip("/").removeprefix("functions/")] = {
            "app_cpu_ms": round(statistics.median(r["floor_cpu"] + r["rest_cpu"] for r in split), 1),
            "floor_cpu_ms": round(floor, 1),
            "ratio": round(statistics.median(ratios), 3),
            "median_run_cpu_ms": [
                round(split[middle]["floor_cpu"] + split[middle]["rest_cpu"], 1),
                round(split[middle]["floor_cpu"], 1),
            ],
            "app_wall_ms": round(statistics.median(r["floor_ms"] + r["rest_ms"] for r in split), 1),
            "floor_wall_ms": round(statistics.median(r["floor_ms"] for r in split), 1),
            "import_app_alone_wall_ms": round(discovered["ms"], 1),
            "third_party_modules": len(modules),
            "runs": runs,
        }
    return out


def run(runs: int = 5, layer: Path | None = None) -> dict[str, Any]:
    """Build the layer (unless given one) and measure every handler."""
    if not PYTHON313.is_file():
        raise RuntimeError("python3.13 (the Lambda runtime) is needed to measure cold starts")
    if layer is not None:
        return {"layer": str(layer), "handlers": measure(layer, runs)}
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        built = build_layer(Path(tmp))
        return {"layer": "layers/shared/Makefile build (temporary)", "handlers": measure(built, runs)}


def main(argv: list[str]) -> int:
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 5
    layer = Path(argv[argv.index("--layer") + 1]).resolve() if "--layer" in argv else None
    result = run(runs, layer)
    print(f"layer: {result['layer']}")
    for name, row in result["handlers"].items():
        print(
            f"  {name:<16} app {row['app_cpu_ms']:7.1f} ms  floor {row['floor_cpu_ms']:7.1f} ms (CPU)  "
            f"ratio {row['ratio']:.2f}  wall {row['app_wall_ms']:.0f}/{row['floor_wall_ms']:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
