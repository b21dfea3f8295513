from tools.openapi import build


def test_committed_openapi_document_matches_the_routes():
    """docs/openapi.json is generated from the handlers' routes; a stale copy fails here (`make openapi`)."""
    import json
    from pathlib import Path

    committed = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text("utf-8"))
    built = build()
    assert committed == built
    admin_ops = [op for path, ops in built["paths"].items() if path.startswith("/integrations") for op in ops.values()]
    assert admin_ops and all(op["security"] == [{"bearerAuth": []}] for op in admin_ops)
    assert {"/hooks/alfacrm/{integration_id}/{secret}", "/hooks/uis/{integration_id}/{secret}"} <= set(built["paths"])
