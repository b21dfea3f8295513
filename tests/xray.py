"""What the X-Ray SDK would send, kept in memory: the tracing of a Lambda, turned on inside a test.

The suite runs with tracing off (POWERTOOLS_TRACE_DISABLED). `xray_capture()` turns the SDK on, patches
what Powertools' Tracer patches on Lambda (botocore, httpx, http.client), and replaces the UDP emitter by
one that keeps every segment document it would send; `traced_invocations()` opens one segment per handler
invocation of the local stack, as Lambda does per invocation. Everything is put back afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from typing import Any


class CapturingEmitter:
    """The emitter's interface (`send_entity`, `set_daemon_address`): documents kept, not sent over UDP."""

    def __init__(self) -> None:
        self.documents: list[str] = []
        self._lock = threading.Lock()

    def send_entity(self, entity: Any) -> None:
        document = entity.serialize()
        with self._lock:
            self.documents.append(document)

    def set_daemon_address(self, address: str | None) -> None:
        pass

    def segments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(d) for d in self.documents]

    def by_function(self) -> dict[str, list[dict[str, Any]]]:
        """Segment name (the function) → every entity of its invocations: the segments, their subsegments,
        and the subsegments the recorder streamed on their own (over `streaming_threshold`)."""
        documents = self.segments()
        owner = {d["trace_id"]: d["name"] for d in documents if d.get("type") != "subsegment"}
        out: dict[str, list[dict[str, Any]]] = {}
        for document in documents:
            name = owner[document["trace_id"]]
            out.setdefault(name, []).extend([document, *subsegments(document)])
        return out


def subsegments(entity: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for sub in entity.get("subsegments") or []:
        yield sub
        yield from subsegments(sub)


@contextlib.contextmanager
def xray_capture() -> Iterator[CapturingEmitter]:
    import botocore.client
    import botocore.endpoint
    import httpx
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import patch, patcher, xray_recorder
    from aws_xray_sdk.core.context import Context
    from aws_xray_sdk.ext.httplib import unpatch as unpatch_httplib

    emitter = CapturingEmitter()
    saved_recorder = (xray_recorder._emitter, xray_recorder._context, xray_recorder.sampling)
    saved_boto = (
        botocore.client.BaseClient.__dict__["_make_api_call"],
        botocore.endpoint.Endpoint.__dict__["prepare_request"],
    )
    saved_httpx = (httpx.Client, httpx.AsyncClient, httpx._api.Client)
    # Powertools' Tracer disables the SDK whenever one is made while POWERTOOLS_TRACE_DISABLED is set (a
    # handler imported by the local stack): the SDK's own variable takes precedence over that.
    saved_env = os.environ.get(global_sdk_config.XRAY_ENABLED_KEY)
    os.environ[global_sdk_config.XRAY_ENABLED_KEY] = "true"
    global_sdk_config.set_sdk_enabled(True)
    xray_recorder.configure(emitter=emitter, context=Context(), sampling=False, context_missing="IGNORE_ERROR")
    patch(["botocore", "httpx", "httplib"])
    try:
        yield emitter
    finally:
        if saved_env is None:
            os.environ.pop(global_sdk_config.XRAY_ENABLED_KEY, None)
        else:
            os.environ[global_sdk_config.XRAY_ENABLED_KEY] = saved_env
        global_sdk_config.set_sdk_enabled(False)
        xray_recorder._emitter, xray_recorder._context, xray_recorder.sampling = saved_recorder
        botocore.client.BaseClient._make_api_call, botocore.endpoint.Endpoint.prepare_request = saved_boto
        if hasattr(botocore.client, "_xray_enabled"):
            delattr(botocore.client, "_xray_enabled")
        httpx.Client, httpx.AsyncClient, httpx._api.Client = saved_httpx
        unpatch_httplib()
        patcher._PATCHED_MODULES.difference_update({"botocore", "httpx", "httplib"})


@contextlib.contextmanager
def traced_invocations() -> Iterator[None]:
    """Each local-stack invocation in its own segment named after the function's logical id."""
    from aws_xray_sdk.core import xray_recorder

    from tools.localstack.stack import FunctionRuntime

    original = FunctionRuntime.invoke

    def invoke(self: FunctionRuntime, event: Any) -> Any:
        xray_recorder.begin_segment(self.fn.logical_id)
        try:
            return original(self, event)
        finally:
            xray_recorder.end_segment()

    FunctionRuntime.invoke = invoke  # type: ignore[method-assign]
    try:
        yield
    finally:
        FunctionRuntime.invoke = original  # type: ignore[method-assign]
