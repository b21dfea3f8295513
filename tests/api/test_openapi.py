from tools.openapi import build


def test_committed_openapi_document_matches_the_routes():
    """docs/openapi.json is generated from the handlers' routes; a stale copy fails here (`make openapi`)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    committed = json.loads((root / "docs" / "openapi.json").read_text("utf-8"))
    served = json.loads((root / "functions" / "pages" / "static" / "docs" / "openapi.json").read_text("utf-8"))
    built = build()
    assert committed == built
    assert served == built  # the copy GET /docs serves
    admin_ops = [op for path, ops in built["paths"].items() if path.startswith("/integrations") for op in ops.values()]
    assert admin_ops and all(op["security"] == [{"bearerAuth": []}] for op in admin_ops)
    assert {"/hooks/alfacrm/{integration_id}/{secret}", "/hooks/uis/{integration_id}/{secret}"} <= set(built["paths"])


def test_settings_fields_are_described_in_the_schema():
    """Every field of the settings document carries a description (docs/settings.md says the same in Russian)."""
    schemas = build()["components"]["schemas"]
    settings = [name for name in schemas if name.endswith("Settings") or name in {"SettingsDocument", "ExtraField"}]
    assert "SettingsDocument" in settings and "WidgetSettings" in settings
    for name in settings:
        for field, spec in schemas[name].get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
