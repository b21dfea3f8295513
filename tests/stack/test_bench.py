"""The bench's output format (tools/bench.py owns it) and the cost model's arithmetic (tools/bench_cost.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tools.bench import figure
from tools.bench_cost import PRICES, model

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"value", "floor", "ratio", "target", "unit"}


def test_committed_results_have_the_figure_format() -> None:
    results = json.loads((ROOT / "bench" / "results.json").read_text(encoding="utf-8"))
    assert results
    for name, f in results.items():
        assert set(f) == FIELDS, name
        expected = round(f["value"] / f["floor"], 3) if f["floor"] else f["value"]
        assert abs(f["ratio"] - expected) <= 0.01 * max(1, abs(expected)), name


def test_ratio_is_the_value_where_the_target_is_absolute() -> None:
    assert figure(3, None, 0, "calls") == {"value": 3, "floor": None, "ratio": 3, "target": 0, "unit": "calls"}
    assert figure(10, 4, 1.0, "calls")["ratio"] == 2.5


def test_cost_model_prices_the_committed_measurements() -> None:
    raw = json.loads((ROOT / "bench" / "raw.json").read_text(encoding="utf-8"))
    cost = model(raw["deals"]["4x"]["result"], raw["texts"], raw["ticks"])
    assert 0 < cost["idle_school_total"] < cost["busy_school_total"]
    # the stack's one key is a fixed cost; a secret per school would cost more than all of a busy school
    assert cost["fixed"]["kms_key"] == PRICES["kms_key_month"]
    assert cost["alternatives"]["secrets_manager_busy"] > cost["busy_school_total"]
    one, ten = cost["deployment"]["1000"]["busy"], cost["deployment"]["10000"]["busy"]
    assert abs((ten - cost["fixed_total"]) - 10 * (one - cost["fixed_total"])) < 1
