"""Helpers shared by the sandboxes and the local stack: JSON replies and serving a WSGI app on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, default=str),
        status=status,
        headers=headers,
        content_type="application/json; charset=utf-8",
    )


def read_json(request: Request) -> Any:
    """The raw body as JSON whatever the Content-Type (AlfaCRM and UIS both send JSON under other types)."""
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    return json.loads(raw)


class ServedApp:
    """A WSGI app served by werkzeug in a daemon thread on 127.0.0.1."""

    def __init__(self, app: Callable[..., Any], port: int = 0, host: str = "127.0.0.1") -> None:
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self.host = host
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name=f"wsgi:{self.port}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServedApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def http_sender(timeout: float = 10.0) -> Callable[[str, str, bytes | None, dict[str, str]], int]:
    """Default outbound sender for sandbox webhooks/notifications: (method, url, body, headers) → status."""
    client = httpx.Client(timeout=timeout)

    def send(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> int:
        return client.request(method, url, content=body, headers=headers).status_code

    return send
