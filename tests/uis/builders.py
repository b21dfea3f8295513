"""Builders shared by the UIS tests: the account's token, raw JSON-RPC calls, funnels and deal rows."""

from __future__ import annotations

from typing import Any

import httpx

TOKEN = "test-token-3f9a1c"
API_URL = "http://uis.test/v2.0"


def rpc(http: httpx.Client, method: str, params: dict[str, Any] | None = None, **envelope: Any) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"access_token": TOKEN, **(params or {})}}
    body.update(envelope)
    reply: dict[str, Any] = http.post("/v2.0", json=body).json()
    return reply


def funnel_params(ext_id: str = "first_sale", in_process: int = 3) -> dict[str, Any]:
    return {
        "ext_id": ext_id,
        "name": "Первая продажа",
        "stages": {
            "success": {"ext_id": f"{ext_id}:won", "name": "Оплачено"},
            "failed": {"ext_id": f"{ext_id}:lost", "name": "Отказ"},
            "in_process": [
                {"ext_id": f"{ext_id}:s{i}", "name": f"Этап {i}", "order": (i + 1) * 10} for i in range(in_process)
            ],
        },
    }


def deal_row(ext_id: str, stage: str, at: str, *, created: str = "2025-03-01 10:00:00", **extra: Any) -> dict[str, Any]:
    return {
        "ext_id": ext_id,
        "name": f"Сделка {ext_id}",
        "created_date_time": created,
        "modified_date_time": at,
        "modified_stage_date_time": at,
        "sales_funnel_ext_id": "first_sale",
        "stage_ext_id": stage,
        **extra,
    }
