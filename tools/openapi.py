"""Generate docs/openapi.json from the handlers' route definitions (`make openapi`).

Each API function declares its routes with Powertools' resolver; their OpenAPI documents are merged
into one, with the admin routes marked as needing the bearer token. `--check` fails when the committed
document is stale (the tests run it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "openapi.json"
# The copy `GET /docs` serves (Lambda packages only the pages function's own folder).
SERVED = ROOT / "functions" / "pages" / "static" / "docs" / "openapi.json"
FUNCTIONS = ("admin_api", "alfacrm_webhook", "uis_webhook")


def _load(name: str) -> Any:
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"openapi_fn_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def build() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "layers" / "shared" / "python"))
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-central-1")
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    merged: dict[str, Any] = {}
    for name in FUNCTIONS:
        app = _load(name)
        doc = json.loads(
            app.get_openapi_json_schema(
                title="AlfaCRM ↔ UIS connector",
                version="1.0.0",
                description="Admin API and webhook intakes (see README.md and docs/internals.md).",
                security_schemes={"bearerAuth": HTTPBearer(bearerFormat="opaque token")},
            )
        )
        if name == "admin_api":
            for ops in doc.get("paths", {}).values():
                for op in ops.values():
                    op["security"] = [{"bearerAuth": []}]
                    op.setdefault("responses", {})["401"] = {"description": "Missing or wrong bearer token"}
        else:
            for ops in doc.get("paths", {}).values():
                for op in ops.values():
                    op.setdefault("responses", {}).update(
                        {
                            "400": {"description": "Malformed or oversized body (the reason is in error.message)"},
                            "404": {"description": "Unknown integration or wrong secret; nothing stored"},
                        }
                    )
        if not merged:
            merged = doc
            continue
        merged["paths"].update(doc.get("paths", {}))
        for key, value in doc.get("components", {}).items():
            merged.setdefault("components", {}).setdefault(key, {}).update(value)
    merged["paths"] = dict(sorted(merged["paths"].items()))
    return merged


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail when docs/openapi.json is stale")
    args = parser.parse_args()
    text = json.dumps(build(), ensure_ascii=False, indent=2, sort_keys=False) + "\n"
    if args.check:
        for path in (OUT, SERVED):
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                print(f"{path.relative_to(ROOT)} is stale: run `make openapi`", file=sys.stderr)
                return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    SERVED.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(json.loads(text)['paths'])} paths)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
