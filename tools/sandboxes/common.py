"""Helpers shared by the sandboxes and the local stack: JSON replies and serving a WSGI app on loopback."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
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


class Faults:
    """Random, seeded fault injection for a sandbox: each kind has a rate (0 = off) and an optional cap.

    `draw(kinds)` picks at most one of the candidate kinds for a request; what a kind does is the sandbox's
    business (each sandbox documents why its kinds mirror the real service). Seeded so a chaos run that
    failed can be re-run with the same fault plan (thread interleaving still varies).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rates: dict[str, float] = {}
        self.caps: dict[str, int] = {}
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(0)
        self.each_within = 0
        self._eligible: Counter[str] = Counter()

    def configure(
        self, rates: dict[str, float], *, seed: int = 0, caps: dict[str, int] | None = None, each_within: int = 0
    ) -> None:
        """`each_within` > 0: every kind switched on is injected at least once, by then at the latest (its
        first occurrence among the first `each_within` eligible requests), so a short run meets every kind."""
        with self._lock:
            self.rates = {str(k): float(v) for k, v in rates.items()}
            self.caps = {str(k): int(v) for k, v in (caps or {}).items()}
            self._rng = random.Random(seed)
            self.each_within = each_within
            self._eligible: Counter[str] = Counter()

    def off(self) -> None:
        with self._lock:
            self.rates = {}

    def draw(self, kinds: Iterable[str]) -> str | None:
        with self._lock:
            for kind in kinds:
                rate = self.rates.get(kind, 0.0)
                if rate <= 0 or self.injected[kind] >= self.caps.get(kind, 1 << 30):
                    continue
                self._eligible[kind] += 1
                owed = self.each_within > 0 and not self.injected[kind] and self._eligible[kind] >= self.each_within
                if owed or self._rng.random() < rate:
                    self.injected[kind] += 1
                    return kind
        return None

    def missing(self) -> list[str]:
        """The kinds switched on that no request has met yet."""
        with self._lock:
            return sorted(k for k, rate in self.rates.items() if rate > 0 and not self.injected[k])
