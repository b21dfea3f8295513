"""The template-driven local stack: moto server, the template's resources, routes, queue drains, schedules.

Every function runs in this process: its handler module is imported once (after the environment is set,
because Powertools reads e.g. the idempotency table name at import time) and invoked with real-shaped
events. One lock per function serialises its invocations, like a Lambda function with reserved
concurrency 1; different functions run concurrently.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tools.localstack.events import (
    LambdaContext,
    api_event,
    gateway_error,
    proxy_response,
    schedule_event,
    sqs_record,
    templated_gateway_error,
)
from tools.localstack.resources import (
    ACCOUNT_ID,
    Physical,
    Resolver,
    create_keys,
    create_queues,
    create_secrets,
    create_tables,
    function_environment,
    predicted_physical,
)
from tools.localstack.template import Function, Schedule, SqsSource, Template

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = ROOT / "template.yaml"
log = logging.getLogger("localstack")

# ------------------------------------------------------------------------------------------- moto server
# One moto server per process, never stopped: boto3 clients cached by the connector (per container, as on
# Lambda) keep its endpoint, so a second LocalStack in the same process (tests) must find it alive.
_moto_lock = threading.Lock()
_moto_endpoint: str | None = None


def moto_endpoint() -> str:
    global _moto_endpoint
    with _moto_lock:
        if _moto_endpoint is None:
            from moto.server import ThreadedMotoServer

            # werkzeug logs every request (moto's, the API's) to stderr unless its logger is configured
            werkzeug_log = logging.getLogger("werkzeug")
            if werkzeug_log.level == logging.NOTSET:
                werkzeug_log.setLevel(logging.WARNING)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            _moto_endpoint = f"http://{host}:{port}"
        return _moto_endpoint


# ------------------------------------------------------------------------------------------- handlers
_modules: dict[Path, ModuleType] = {}
_import_lock = threading.Lock()


def import_handler(fn: Function, root: Path, extra_paths: list[Path], env: dict[str, str]) -> ModuleType:
    """Import `fn`'s handler module from its file once per process, under the name `fn_<LogicalId>`.

    The function's own environment is in os.environ during the import (module-level Logger/Idempotency
    read it); its CodeUri is on sys.path only while importing, because sibling modules of different
    functions may share names (Lambda gives each function its own root).
    """
    path = fn.handler_path(root).resolve()
    with _import_lock:
        if path in _modules:
            return _modules[path]
        for extra in extra_paths:
            if str(extra) not in sys.path:
                sys.path.insert(0, str(extra))  # layers stay importable, as /opt/python on Lambda
        code_dir = str(path.parent)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        sys.path.insert(0, code_dir)
        try:
            spec = importlib.util.spec_from_file_location(f"fn_{fn.logical_id}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(spec.name, None)
                raise
        finally:
            sys.path.remove(code_dir)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        _modules[path] = module
        return module


class FunctionRuntime:
    """One function: its handler, environment and invocation lock."""

    def __init__(self, fn: Function, stack: LocalStack) -> None:
        self.fn = fn
        self.stack = stack
        self.lock = threading.Lock()
        self.handler: Callable[[Any, Any], Any] | None = None
        self.missing: str | None = None

    def load(self, env: dict[str, str]) -> None:
        path = self.fn.handler_path(self.stack.template.root)
        if not path.exists():
            # Lets the stack serve the other functions while this one is being written; its routes 502.
            self.missing = f"handler file {path.relative_to(self.stack.template.root)} does not exist"
            self.stack.say(f"warning: {self.fn.logical_id}: {self.missing}")
            return
        extra = self.stack.template.layer_paths(self.fn)
        module = import_handler(self.fn, self.stack.template.root, extra, env)
        self.handler = getattr(module, self.fn.handler_function)

    def invoke(self, event: Any) -> Any:
        if self.handler is None:
            raise RuntimeError(f"{self.fn.logical_id}: {self.missing or 'not loaded'}")
        context = LambdaContext(
            function_name=f"{self.stack.stack_name}-{self.fn.logical_id}",
            memory_limit_in_mb=self.fn.memory,
            timeout_seconds=self.fn.timeout,
            region=self.stack.region,
        )
        with self.lock, self.stack.running():
            return self.handler(event, context)


# ------------------------------------------------------------------------------------------- the stack
@dataclass
class RunningSandbox:
    """A sandbox object (state, control methods for tests) and the server it is reachable on."""

    sandbox: Any
    served: Any  # tools.sandboxes.common.ServedApp

    @property
    def url(self) -> str:
        return str(self.served.url)

    def stop(self) -> None:
        self.served.stop()


class LocalStack:
    """Serve the template's functions on 127.0.0.1 against moto; see docs in contract.md (Local stack).

    `start()` returns the base URL; `stop()` restores os.environ; `invoke_schedule(name)` runs a
    scheduled function now; `wait_idle(timeout)` blocks until queues are drained and nothing runs.
    """

    def __init__(
        self,
        template_path: str | Path = DEFAULT_TEMPLATE,
        *,
        port: int = 0,
        admin_token: str | None = None,
        sandbox: bool = False,
        stack_name: str = "local",
        region: str = "eu-central-1",
        run_schedules: bool = True,
        visibility_timeout: int = 1,
        poll_interval: float = 0.1,
        parameters: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.template = Template.load(template_path)
        self.port = port
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.sandbox = sandbox
        self.stack_name = stack_name
        self.region = region
        self.run_schedules = run_schedules
        # Failed messages come back after this many seconds instead of the template's 360 s, so retries
        # and the redrive to the DLQ (maxReceiveCount) happen within a demo or a test.
        self.visibility_timeout = visibility_timeout
        self.poll_interval = poll_interval
        self.parameters = parameters or {}
        self.extra_env = extra_env or {}
        self.out = out or (lambda line: print(line, flush=True))
        self.stage = self.template.stage_name(self.parameters)

        self.url = ""
        self.env: dict[str, str] = {}
        self.table_names: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        self.queue_arns: dict[str, str] = {}
        self.secret_arns: dict[str, str] = {}
        self.functions: dict[str, FunctionRuntime] = {}
        self.sandboxes: dict[str, RunningSandbox] = {}  # "alfacrm", "uis"
        self.demo: dict[str, Any] | None = None

        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._saved_environ: dict[str, str] | None = None
        self._busy = 0
        self._generation = 0
        self._busy_lock = threading.Lock()
        self._sqs: Any = None
        self._resolver: Resolver | None = None

    def say(self, line: str) -> None:
        self.out(line)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> str:
        started = time.monotonic()
        self._saved_environ = dict(os.environ)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        log.info("local stack started in %.2fs", time.monotonic() - started)
        return self.url

    def _start(self) -> None:
        endpoint = moto_endpoint()
        # Fake credentials and the moto endpoint for every boto3 client in this process, so nothing can
        # reach a real AWS account whatever profile the developer has configured.
        aws_env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }
        os.environ.update(aws_env)
        for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            os.environ.pop(key, None)
        session = boto3.session.Session(region_name=self.region)
        dynamodb = session.client("dynamodb", endpoint_url=endpoint)
        self._sqs = session.client("sqs", endpoint_url=endpoint)
        secretsmanager = session.client("secretsmanager", endpoint_url=endpoint)

        self.table_names = create_tables(dynamodb, self.template, stack_name=self.stack_name, replace=True)
        self.queue_urls = create_queues(self._sqs, self.template, stack_name=self.stack_name, replace=True)
        physical = predicted_physical(
            self.template, stack_name=self.stack_name, region=self.region, sqs_endpoint=endpoint
        )
        for lid, url in self.queue_urls.items():
            physical[lid].ref = physical[lid].attrs["QueueUrl"] = url
            self.queue_arns[lid] = physical[lid].attrs["Arn"]
        resolver = Resolver(
            self.template, physical, stack_name=self.stack_name, region=self.region, parameters=self.parameters
        )
        self._resolver = resolver
        admin_secrets = {lid: self.admin_token for lid in self.template.secrets}
        self.secret_arns = create_secrets(secretsmanager, self.template, resolver, admin_secrets, replace=True)
        create_keys(session.client("kms", endpoint_url=endpoint), self.template, resolver)
        for lid, arn in self.secret_arns.items():
            physical[lid] = Physical(arn, {"Id": arn})

        # All functions share this process, so os.environ holds the union of their variables (they use
        # the same names with the same values); each import sees exactly its own on top.
        per_function = {lid: function_environment(self.template, resolver, lid) for lid in self.template.functions}
        local_overrides = {
            "ALLOW_INSECURE_HOSTS": "true",
            "ADMIN_TOKEN": self.admin_token,
            "POWERTOOLS_TRACE_DISABLED": "1",  # no X-Ray daemon locally
            **aws_env,
            **self.extra_env,
        }
        union: dict[str, str] = {}
        for lid, env in per_function.items():
            for key, value in env.items():
                if key in union and union[key] != value and key not in local_overrides:
                    log.warning(
                        "%s sets %s=%r, another function %r; the process keeps one", lid, key, value, union[key]
                    )
                union.setdefault(key, value)
        union.update(local_overrides)
        self.env = union
        os.environ.update(union)

        for lid, fn in self.template.functions.items():
            runtime = FunctionRuntime(fn, self)
            runtime.load({**per_function[lid], **local_overrides})
            self.functions[lid] = runtime

        if self.sandbox:
            self._start_sandboxes()

        # Own server thread (not ServedApp) for a short shutdown poll: stop() returns in ~50 ms, not 0.5 s.
        self._server = make_server("127.0.0.1", self.port, self.wsgi_app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._spawn_server()

        # A function whose handler file is missing gets no drain/timer (its messages wait in the queue).
        for source in self.template.sqs_sources:
            if self.functions[source.function_id].handler is not None:
                self._spawn(f"sqs:{source.queue_id}", self._drain, source)
        if self.run_schedules:
            for schedule in self.template.schedules:
                loaded = self.functions[schedule.function_id].handler is not None
                if loaded and schedule.enabled and schedule.interval_seconds:
                    self._spawn(f"schedule:{schedule.event_name}", self._tick, schedule)

        if self.sandbox:
            self._setup_demo()

    def _spawn_server(self) -> None:
        server = self._server
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"api:{self.port}", daemon=True
        )
        thread.start()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for served in self.sandboxes.values():
            served.stop()
        self.sandboxes.clear()
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- sandboxes and the demo integration
    def _start_sandboxes(self) -> None:
        # Imported here: SANDBOX=0 must work without the sandbox modules.
        from tools.sandboxes.alfacrm import AlfaCrmSandbox
        from tools.sandboxes.common import ServedApp
        from tools.sandboxes.uis import UisSandbox

        for offset, (name, cls) in enumerate((("alfacrm", AlfaCrmSandbox), ("uis", UisSandbox)), start=1):
            port = self.port + offset if self.port else 0
            sandbox = cls()
            self.sandboxes[name] = RunningSandbox(sandbox, ServedApp(sandbox.app, port=port).start())

    def _setup_demo(self) -> None:
        from tools.localstack.demo_setup import setup_demo

        self.demo = setup_demo(self.url, self.admin_token, self.sandboxes["alfacrm"].url, self.sandboxes["uis"].url)

    # ---------------------------------------------------------------- invocation and idleness
    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self._busy_lock:
            self._busy += 1
            self._generation += 1
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy -= 1

    def invoke(self, function_id: str, event: Any) -> Any:
        """Invoke one function with `event` synchronously (as `sam local invoke` would)."""
        return self.functions[function_id].invoke(event)

    def _queue_depth(self, url: str) -> int:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attrs.get(name, 0)) for name in names)

    def _drained_sources(self) -> list[SqsSource]:
        """Queues with a loaded consumer: one whose handler file is missing would never drain (warned at start)."""
        return [s for s in self.template.sqs_sources if self.functions[s.function_id].handler is not None]

    def is_idle(self) -> bool:
        """No handler running and every drained queue empty (dead-letter queues have no consumer: excluded).

        The invocation generation is read before and after the queue check: a handler that enqueued a
        message and finished in between would otherwise make an empty-looking snapshot.
        """
        with self._busy_lock:
            busy, generation = self._busy, self._generation
        if busy:
            return False
        for source in self._drained_sources():
            if self._queue_depth(self.queue_urls[source.queue_id]):
                return False
        with self._busy_lock:
            return self._busy == 0 and self._generation == generation

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until idle; raise TimeoutError (with the queue depths) when it takes longer than timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_idle():
                return
            time.sleep(0.05)
        depths = {s.queue_id: self._queue_depth(self.queue_urls[s.queue_id]) for s in self._drained_sources()}
        raise TimeoutError(f"local stack not idle after {timeout}s: busy={self._busy} queues={depths}")

    # ---------------------------------------------------------------- schedules
    def find_schedule(self, name: str) -> Schedule:
        """By event name (DealUploadSchedule), function logical id, or the schedule's Name."""
        for schedule in self.template.schedules:
            if name in (schedule.event_name, schedule.function_id, self._schedule_name(schedule)):
                return schedule
        raise KeyError(name)

    def _schedule_name(self, schedule: Schedule) -> str:
        if schedule.name is None or self._resolver is None:
            return f"{schedule.function_id}{schedule.event_name}"  # SAM's default name
        return str(self._resolver.resolve(schedule.name))

    def invoke_schedule(self, name: str) -> Any:
        schedule = self.find_schedule(name)
        if schedule.input is not None:
            event = json.loads(schedule.input) if isinstance(schedule.input, str) else schedule.input
        else:
            arn = f"arn:aws:scheduler:{self.region}:{ACCOUNT_ID}:schedule/default/{self._schedule_name(schedule)}"
            event = schedule_event(arn, self.region)
        return self.invoke(schedule.function_id, event)

    def _tick(self, schedule: Schedule) -> None:
        assert schedule.interval_seconds
        while not self._stop.wait(schedule.interval_seconds):
            try:
                self.invoke_schedule(schedule.event_name)
            except Exception:
                self.say(f"{schedule.event_name} failed:\n{traceback.format_exc()}")

    # ---------------------------------------------------------------- queue drains (SQS event source mapping)
    def _drain(self, source: SqsSource) -> None:
        url, arn = self.queue_urls[source.queue_id], self.queue_arns[source.queue_id]
        while not self._stop.is_set():
            try:
                handled = self._drain_once(source, url, arn)
            except Exception:
                if self._stop.is_set():
                    return
                self.say(f"{source.function_id} drain error:\n{traceback.format_exc()}")
                handled = False
            if not handled:
                self._stop.wait(self.poll_interval)

    def _drain_once(self, source: SqsSource, url: str, arn: str) -> bool:
        """Receive one batch and run it; returns False when the queue was empty.

        Received messages are in flight (counted by is_idle) until the batch is marked running, so there
        is no moment where a batch is invisible to wait_idle.
        """
        reply = self._sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(source.batch_size, 10),
            VisibilityTimeout=self.visibility_timeout,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = reply.get("Messages", [])
        if not messages:
            return False
        with self.running():
            records = [sqs_record(m, queue_arn=arn, region=self.region) for m in messages]
            try:
                result = self.invoke(source.function_id, {"Records": records})
            except Exception:
                # The whole batch comes back after the visibility timeout; moto's redrive moves a message
                # to the DLQ once its receive count passes maxReceiveCount.
                self.say(f"{source.function_id} failed on a batch of {len(records)}:\n{traceback.format_exc()}")
                return True
            failed = self._failed_ids(source, result, records)
            done = [r for r in records if r["messageId"] not in failed]
            for start in range(0, len(done), 10):
                chunk = done[start : start + 10]
                self._sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
                )
            return True

    @staticmethod
    def _failed_ids(source: SqsSource, result: Any, records: list[dict[str, Any]]) -> set[str]:
        """Lambda's rules for ReportBatchItemFailures: an unknown or empty itemIdentifier fails the batch."""
        if not source.report_batch_item_failures or not result:
            return set()
        all_ids = {r["messageId"] for r in records}
        failures = result.get("batchItemFailures") if isinstance(result, dict) else None
        if failures is None:
            return set()
        ids = {f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures}
        if any(i not in all_ids for i in ids):
            return all_ids
        return {i for i in ids if i is not None}

    # ---------------------------------------------------------------- HTTP
    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except Exception:
            self.say(f"{request.method} {request.path} failed:\n{traceback.format_exc()}")
            response = gateway_error(502, "Internal server error")
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path == "/health" and request.method == "GET":
            return _json({"status": "ok", "functions": sorted(self.functions)})
        if path == "/_local/idle" and request.method == "GET":
            return _json({"idle": self.is_idle()})
        if path.startswith("/_local/schedules/") and request.method == "POST":
            name = path.removeprefix("/_local/schedules/")
            try:
                self.find_schedule(name)
            except KeyError:
                known = [s.event_name for s in self.template.schedules]
                return _json({"error": {"code": "unknown_schedule", "message": f"{name}; known: {known}"}}, 404)
            try:
                return _json(self.invoke_schedule(name))
            except Exception as exc:
                # A JSON reply, not API Gateway's bare 502: this route is local-only and the caller is a test
                # or a developer who wants to know what broke.
                self.say(f"schedule {name} failed:\n{traceback.format_exc()}")
                return _json({"error": {"code": "handler_failed", "message": f"{type(exc).__name__}: {exc}"}}, 500)
        # The execute-api URL carries the stage (/v1/hooks/...); accept it so URLs built either way work.
        if path.startswith(f"/{self.stage}/"):
            path = path[len(self.stage) + 1 :]
        # API Gateway (REST) matches `/ui/` to the resource `/ui`; the handler still sees the path as sent.
        matched_path = path.rstrip("/") if len(path) > 1 else path
        for route in self.template.routes:
            match = route.pattern.match(path) or route.pattern.match(matched_path)
            if match and route.method in ("ANY", request.method):
                runtime = self.functions[route.function_id]
                event = api_event(request, route, path, match.groupdict(), stage=self.stage, server_port=self.port)
                if runtime.handler is None:
                    self.say(f"{route.function_id}: {runtime.missing}")
                    return gateway_error(502, "Internal server error")
                try:
                    result = runtime.invoke(event)
                except Exception:
                    self.say(f"{route.function_id} raised on {request.method} {path}:\n{traceback.format_exc()}")
                    return gateway_error(502, "Internal server error")
                return proxy_response(result)
        # What API Gateway answers for an unknown path or method on a REST API (as the template customises it).
        return templated_gateway_error(self.template.gateway_responses, 403, "Missing Authentication Token")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, default=str), status=status, content_type="application/json")
