"""Pages the stack serves itself, without a build step: the settings page (`/ui/`), the РМО widget loader
(`/widget/alfacrm.js?integration=<id>`) and the interactive API docs (`/docs`).

Files live in the pages function's own folder (Lambda packages only a function's CodeUri). Only files of
known types under the static root are served; the widget gets its integration's widget settings inlined,
so the AlfaCRM page that loads it never calls the API (no token in AlfaCRM).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.store import Store

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
# The page and the docs load only their own files; the docs' Swagger UI sets inline styles.
UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_INTEGRATION_ID = re.compile(r"^[0-9a-f]{1,64}$")
WIDGET_CONFIG_MARK = "__WIDGET_CONFIG__"


@dataclass(frozen=True)
class PageReply:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def proxy(self) -> dict[str, Any]:
        """The API Gateway (REST, proxy) reply."""
        return {"statusCode": self.status, "headers": self.headers, "body": self.body, "isBase64Encoded": False}


def _text(status: int, message: str) -> PageReply:
    return PageReply(status, message + "\n", {"Content-Type": "text/plain; charset=utf-8"})


@dataclass
class Pages:
    root: Path

    def serve(self, store: Store, path: str, query: dict[str, str] | None = None) -> PageReply:
        if path == "/ui":
            # relative URLs of the page (`app.js`, `../integrations`) need the trailing slash
            return PageReply(301, "", {"Location": "ui/", "Cache-Control": "no-store"})
        if path == "/docs/":
            return PageReply(301, "", {"Location": "../docs", "Cache-Control": "no-store"})
        if path == "/widget/alfacrm.js":
            return self.widget(store, (query or {}).get("integration", ""))
        if path == "/docs":
            return self.file("docs/index.html", DOCS_CSP)
        if path.startswith("/docs/"):
            return self.file("docs/" + path.removeprefix("/docs/"), DOCS_CSP)
        if path == "/ui/":
            return self.file("ui/index.html", UI_CSP)
        if path.startswith("/ui/"):
            return self.file("ui/" + path.removeprefix("/ui/"), UI_CSP)
        return _text(404, "not found")

    def _resolve(self, relative: str) -> Path | None:
        parts = relative.split("/")
        if any(not p or p.startswith(".") for p in parts):
            return None
        target = (self.root / relative).resolve()
        root = self.root.resolve()
        if root not in target.parents or not target.is_file() or target.suffix not in TYPES:
            return None
        return target

    def file(self, relative: str, csp: str) -> PageReply:
        target = self._resolve(relative)
        if target is None:
            return _text(404, "not found")
        return PageReply(
            200,
            target.read_text(encoding="utf-8"),
            {
                "Content-Type": TYPES[target.suffix],
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                # the page changes with each deployment; the browser revalidates instead of guessing
                "Cache-Control": "no-cache",
            },
        )

    def widget(self, store: Store, integration_id: str) -> PageReply:
        """The widget script with its integration's widget settings inlined.

        An unknown integration gets a 404 whose body is still a harmless script: the host page's script tag
        fails quietly and nothing on the AlfaCRM page breaks.
        """
        headers = {
            "Content-Type": TYPES[".js"],
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "max-age=300",
            # AlfaCRM pages load it cross-origin with a plain <script src>; nothing else is needed
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        integration = store.integrations.get(integration_id) if _INTEGRATION_ID.match(integration_id) else None
        if integration is None:
            headers["Cache-Control"] = "no-store"
            return PageReply(404, "/* РМО UIS: интеграция не найдена, виджет не подключён */\n", headers)
        source = self._resolve("widget/alfacrm.js")
        if source is None:
            return PageReply(404, "/* РМО UIS: файл виджета не найден */\n", headers)
        widget = integration.settings.widget
        config = {
            "integration": integration.id,
            "enabled": widget.enabled,
            "workplace_url": widget.workplace_url,
            "open_in": widget.open_in,
        }
        # `<` escaped: the JSON sits inside a script and must not be able to close a tag
        inline = json.dumps(config, ensure_ascii=False).replace("<", "\\u003c")
        return PageReply(200, source.read_text(encoding="utf-8").replace(WIDGET_CONFIG_MARK, inline), headers)
