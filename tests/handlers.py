"""Load a Lambda handler module by its path, the way the Lambda runtime and the local stack do."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@cache
def load_module(function_dir: str) -> Any:
    path = ROOT / "functions" / function_dir / "app.py"
    spec = importlib.util.spec_from_file_location(f"test_fn_{function_dir}", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_handler(function_dir: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    return load_module(function_dir).lambda_handler  # type: ignore[no-any-return]
