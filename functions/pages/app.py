"""Pages (contract.md): the settings page `/ui/`, the РМО widget `/widget/alfacrm.js`, API docs `/docs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connector.observability import logger
from connector.pages import Pages
from connector.runtime import container

PAGES = Pages(Path(__file__).resolve().parent / "static")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    path, query = str(event.get("path") or "/"), event.get("queryStringParameters")
    return PAGES.serve(container().store, path, query).proxy()
