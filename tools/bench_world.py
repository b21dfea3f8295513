"""One in-process world for the benchmarks: moto with the template's tables, queues and key, both sandboxes on
one hand-driven clock, a `Runtime` wired to them as the container's, and every call counted.

`World.open()` (inside `with World.open() as w:`) sets the functions' environment exactly as template.yaml
gives it (stack `bench`), starts moto, creates the resources and installs the runtime, so the handlers in
functions/ can be invoked as Lambda would (`w.handler("deal_worker")`). Counted per unit of work
(`w.counts()` / `Counts.minus`): AlfaCRM requests (the login apart: a warm container has its token), UIS
calls, and AWS calls per service (DynamoDB's without the login's budget slot), DynamoDB also as the read
and write request units DynamoDB bills (item sizes from the requests and replies; an update is charged at the
item's last known size).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STACK = "bench"
REGION = "eu-central-1"
SQS_ENDPOINT = f"https://sqs.{REGION}.amazonaws.com"
ALFA_HOST = "http://alfacrm.bench"
UIS_URL = "http://uis.bench/v2.0"
TZ = "Europe/Moscow"


def environment() -> dict[str, str]:
    """Every function's variables from template.yaml for stack `bench`, on fake credentials."""
    from tools.localstack.resources import Physical, Resolver, function_environment, predicted_physical, secret_name
    from tools.localstack.template import Template

    template = Template.load(ROOT / "template.yaml")
    physical = predicted_physical(template, stack_name=STACK, region=REGION, sqs_endpoint=SQS_ENDPOINT)
    resolver = Resolver(template, physical, stack_name=STACK, region=REGION)
    for lid in template.secrets:
        name = secret_name(template, resolver, lid)
        physical[lid] = Physical(name, {"Id": name})
    env: dict[str, str] = {}
    for lid in template.functions:
        env.update(function_environment(template, resolver, lid))
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "ALLOW_INSECURE_HOSTS": "true",
            "ADMIN_TOKEN": "bench-admin-token",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
            # the runtime's own spacing off (it sleeps on the real clock); the world's AlfaCRM client spaces
            # at the template's rate on the hand-driven clock instead, and the account-wide budget stays: it
            # costs a DynamoDB call per AlfaCRM request in production, so it is counted here. Without the
            # spacing one process would burst past the account's 4 per second, which production's spacing
            # never does, and pay a second budget call per request the full second turned away.
            "ALFACRM_RPS": "0",
            "BENCH_ALFACRM_SPACING": env.get("ALFACRM_RPS", "2"),
        }
    )
    return env


# --- DynamoDB request units from the requests and replies -------------------------------------------
def _value_size(value: Any) -> int:
    if not (isinstance(value, dict) and len(value) == 1):
        return len(str(value).encode("utf-8"))  # already deserialized: about its text
    (kind, inner), *_ = value.items()
    if kind in ("S", "B"):
        return len(inner.encode("utf-8") if isinstance(inner, str) else inner)
    if kind == "N":
        return 1 + math.ceil(len(str(inner).lstrip("-").replace(".", "")) / 2)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(len(v.encode("utf-8") if isinstance(v, str) else v) for v in inner)
    if kind == "NS":
        return sum(1 + math.ceil(len(str(v)) / 2) for v in inner)
    if kind == "M":
        return 3 + sum(len(k) + _value_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    return 1


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values (docs: "Item sizes and formats")."""
    return sum(len(name) + _value_size(value) for name, value in item.items())


@dataclass
class DynamoUnits:
    """Read and write request units (on-demand billing) of the calls seen, from their items' sizes."""

    rru: float = 0.0
    wru: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)  # last known size per item key

    @staticmethod
    def _key(table: str, key: dict[str, Any]) -> str:
        return table + "|" + "|".join(f"{k}={next(iter(v.values()))}" for k, v in sorted(key.items()))

    def _known(self, table: str, item: dict[str, Any]) -> None:
        key = {k: v for k, v in item.items() if k in ("pk", "sk", "id")}
        self.sizes[self._key(table, key)] = item_size(item)

    def before(self, operation: str, params: dict[str, Any]) -> None:
        table = params.get("TableName", "")
        if operation == "PutItem":
            self._known(table, params["Item"])
            self.wru += math.ceil(item_size(params["Item"]) / 1024)
        elif operation in ("UpdateItem", "DeleteItem"):
            size = self.sizes.get(self._key(table, params["Key"]), 1024)
            self.wru += max(1, math.ceil(size / 1024))
        elif operation == "BatchWriteItem":
            for name, requests in params["RequestItems"].items():
                for request in requests:
                    put = request.get("PutRequest")
                    if put:
                        self._known(name, put["Item"])
                    self.wru += math.ceil(item_size(put["Item"]) / 1024) if put else 1
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                put = entry.get("Put")
                self.wru += 2 * (math.ceil(item_size(put["Item"]) / 1024) if put else 1)

    def after(self, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        if operation == "GetItem":
            item = parsed.get("Item")
            if item:
                self._known(params["TableName"], item)
            self.rru += factor * max(1, math.ceil(item_size(item or {}) / 4096))
        elif operation in ("Query", "Scan"):
            total = sum(item_size(i) for i in parsed.get("Items", []))
            self.rru += factor * max(1, math.ceil(total / 4096))
        elif operation == "BatchGetItem":
            for name, items in parsed.get("Responses", {}).items():
                for item in items:
                    self._known(name, item)
                    self.rru += max(1, math.ceil(item_size(item) / 4096))


@dataclass(frozen=True)
class Counts:
    alfacrm: int = 0
    alfacrm_login: int = 0
    uis: int = 0
    dynamodb: int = 0
    rru: float = 0.0
    wru: float = 0.0
    sqs: int = 0
    kms: int = 0
    secretsmanager: int = 0

    def minus(self, before: Counts) -> Counts:
        return Counts(**{k: getattr(self, k) - getattr(before, k) for k in self.__dataclass_fields__})

    def per(self, n: float) -> dict[str, float]:
        return {k: round(getattr(self, k) / n, 3) for k in self.__dataclass_fields__}


class MotoCpu:
    """The CPU spent outside the connector while a section is timed: moto answering AWS calls in-process (its
    stubber handles every request), the sandboxes answering AlfaCRM and UIS requests (their WSGI apps), and
    this bench's own counting hooks; so a CPU figure can leave out what DynamoDB, SQS, KMS, AlfaCRM and UIS do
    on their own servers. moto's TransactWriteItems, for one, deep-copies every table an item names for its
    rollback, and the sandboxes filter their records by scanning them: both costs grow with the volume."""

    seconds = 0.0

    @classmethod
    def timed(cls, served: Callable[..., Any]) -> Callable[..., Any]:
        """`served`, its CPU time added to `seconds` (not twice when one timed call runs inside another)."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            if cls._depth:
                return served(*args, **kwargs)
            cls._depth += 1
            started = time.process_time()
            try:
                return served(*args, **kwargs)
            finally:
                cls.seconds += time.process_time() - started
                cls._depth -= 1

        return timed

    _depth = 0

    @classmethod
    @contextlib.contextmanager
    def counting(cls) -> Iterator[None]:
        from unittest import mock

        from moto.core.botocore_stubber import BotocoreStubber

        with mock.patch.object(BotocoreStubber, "__call__", cls.timed(BotocoreStubber.__call__)):
            yield


class AwsCalls:
    """Counts every AWS call a boto3 session makes (service.operation), and DynamoDB's request units."""

    def __init__(self, session: Any) -> None:
        self.by_operation: Counter[str] = Counter()
        self.units = DynamoUnits()
        session.events.register("before-call", MotoCpu.timed(self._before))
        session.events.register("after-call", MotoCpu.timed(self._after))

    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self.by_operation[f"{model.service_model.service_name}.{model.name}"] += 1
        if model.service_model.service_name == "dynamodb":
            # the request as sent (DynamoDB's JSON protocol: typed attribute values)
            context["bench_request"] = api = json.loads(params.get("body") or b"{}")
            self.units.before(model.name, api)

    def _after(self, model: Any, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        if model.service_model.service_name == "dynamodb" and "bench_request" in context:
            # the reply as received (boto3 deserializes `parsed` in place before this hook runs)
            self.units.after(model.name, context["bench_request"], json.loads(http_response.content or b"{}"))

    def service(self, name: str) -> int:
        return sum(v for k, v in self.by_operation.items() if k.startswith(name + "."))


class Clients:
    """The `ClientFactory` of the world: every integration talks to the one pair of sandboxes, after reading
    its credentials through the secrets port as production does (a KMS call when the memory has none)."""

    def __init__(self, secrets: Any, alfacrm: Any, uis: Any) -> None:
        self.secrets, self._alfacrm, self._uis = secrets, alfacrm, uis

    def alfacrm(self, integration: Any) -> Any:
        self.secrets.credentials(integration.secret_id)
        return self._alfacrm

    def uis(self, integration: Any) -> Any:
        self.secrets.credentials(integration.secret_id)
        return self._uis


class World:
    def __init__(self, env: dict[str, str], latency: float = 0.0, seed: bool = False) -> None:
        import boto3
        import httpx
        from connector.alfacrm.client import AlfaCrmClient
        from connector.aws import Aws
        from connector.config import Environment
        from connector.retry import ChainedLimiter, RateLimiter, RetryPolicy
        from connector.runtime import Runtime, install
        from connector.store.ratelimit import SharedWindowLimiter
        from connector.timeutil import local_to_utc
        from connector.uis.client import UisClient

        from tools.localstack.resources import Resolver, create_keys, create_queues, create_tables, predicted_physical
        from tools.localstack.template import Template
        from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL, AlfaCrmSandbox, ManualClock
        from tools.sandboxes.uis import DEFAULT_TOKEN, UisSandbox

        self.env = env
        self.template = Template.load(ROOT / "template.yaml")
        self.session = boto3.session.Session(region_name=REGION)
        self.aws_calls = AwsCalls(self.session)
        self.tables = create_tables(self.session.client("dynamodb"), self.template, stack_name=STACK)
        self.queues = create_queues(self.session.client("sqs"), self.template, stack_name=STACK)
        physical = predicted_physical(self.template, stack_name=STACK, region=REGION, sqs_endpoint=SQS_ENDPOINT)
        resolver = Resolver(self.template, physical, stack_name=STACK, region=REGION)
        create_keys(self.session.client("kms"), self.template, resolver)
        for lid, url in self.queues.items():
            assert physical[lid].ref == url, (lid, url)

        self.clock = ManualClock(datetime(2025, 3, 3, 9, 0, 0))
        self.sent: list[dict[str, Any]] = []  # webhooks and notifications the sandboxes send
        self.alfacrm = AlfaCrmSandbox(clock=self.clock, sender=self._capture, seed=seed, burst_limit=1_000_000)
        self.uis = UisSandbox(clock=self.clock, access_tokens=[DEFAULT_TOKEN], sender=self._capture)
        self.latency = latency
        self.rt = Runtime(Environment.from_environ(), aws=Aws(self.session), now=lambda: local_to_utc(self.clock(), TZ))
        retry = RetryPolicy(attempts=3, sleep=self.clock.sleep)
        budget = SharedWindowLimiter(
            self.rt.store.table, self.rt.env.alfacrm_account_rps, clock=self._epoch, sleep=self.clock.sleep
        )
        self.alfa_client = AlfaCrmClient(
            ALFA_HOST,
            DEFAULT_EMAIL,
            DEFAULT_API_KEY,
            http=httpx.Client(transport=self._transport(self.alfacrm.app), base_url=ALFA_HOST),
            retry=retry,
            limiter=ChainedLimiter(
                RateLimiter(float(env["BENCH_ALFACRM_SPACING"]), clock=self.clock.monotonic, sleep=self.clock.sleep),
                budget,
            ),
            clock=self.clock.monotonic,
        )
        self.uis_client = UisClient(
            UIS_URL, DEFAULT_TOKEN, http=httpx.Client(transport=self._transport(self.uis.app)), retry=retry,
            clock=self.clock.monotonic,
        )  # fmt: skip
        self.rt.clients = Clients(self.rt.secrets, self.alfa_client, self.uis_client)
        install(self.rt)
        self._handlers: dict[str, Any] = {}
        self._esm_sqs = boto3.session.Session(region_name=REGION).client("sqs")

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, latency: float = 0.0, *, seed: bool = False, overrides: dict[str, str] | None = None
    ) -> Iterator[World]:
        """The world inside moto: the environment is set before anything reads it (Powertools, at import)."""
        env = {**environment(), **(overrides or {})}
        os.environ.pop("AWS_ENDPOINT_URL", None)
        os.environ.update(env)
        from moto import mock_aws

        with mock_aws(), MotoCpu.counting():
            yield cls(env, latency, seed)

    @staticmethod
    def moto_cpu_s() -> float:
        """CPU seconds spent so far serving AWS, AlfaCRM and UIS calls and counting them (`MotoCpu`)."""
        return MotoCpu.seconds

    # --- time and transport -----------------------------------------------------------------------
    def _epoch(self) -> float:
        return self.rt.now().timestamp()

    def _transport(self, app: Any) -> Any:
        import httpx

        world = self

        class Slow(httpx.WSGITransport):
            """An external API `latency` seconds away (on the hand-driven clock: nothing really waits)."""

            def handle_request(self, request: httpx.Request) -> httpx.Response:
                world.clock.advance(world.latency)
                return MotoCpu.timed(super().handle_request)(request)

        return Slow(app=app)

    def _capture(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> int:
        self.sent.append({"method": method, "url": url, "body": body, "headers": headers})
        return 200

    def take_sent(self) -> list[dict[str, Any]]:
        out, self.sent = self.sent, []
        return out

    # --- counting ---------------------------------------------------------------------------------
    def counts(self) -> Counts:
        calls = self.aws_calls
        stats = self.alfacrm.stats
        return Counts(
            alfacrm=stats["requests"] - stats["login"],
            alfacrm_login=stats["login"],
            uis=self.uis_client.calls,
            # without the login's slot in the account's request budget, as AlfaCRM's count is without the login:
            # a warm container's token lasts 14 minutes (one login and one budget call each, per container)
            dynamodb=calls.service("dynamodb") - (stats["login"] if self.rt.env.alfacrm_account_rps > 0 else 0),
            rru=calls.units.rru,
            wru=calls.units.wru,
            sqs=calls.service("sqs"),
            kms=calls.service("kms"),
            secretsmanager=calls.service("secretsmanager"),
        )

    # --- schools ------------------------------------------------------------------------------------
    def integration(self, iid: str = "bench", settings: dict[str, Any] | None = None, *, active: bool = True) -> Any:
        """An integration on the sandboxes, its credentials sealed as the admin API would."""
        from connector.intake import hash_secret
        from connector.settings import Credentials, Integration, SettingsDocument

        from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL
        from tools.sandboxes.uis import DEFAULT_TOKEN

        ref = self.rt.secrets.store_credentials(
            iid,
            Credentials(
                alfacrm_api_key=DEFAULT_API_KEY, uis_access_token=DEFAULT_TOKEN,
                alfacrm_webhook_secret="a" * 32, uis_webhook_secret="u" * 32,
            ),
        )  # fmt: skip
        integration = Integration(
            id=iid,
            name=f"Школа {iid}",
            alfacrm={"hostname": ALFA_HOST, "email": DEFAULT_EMAIL, "branch_id": 1},
            uis={"api_url": UIS_URL},
            timezone=TZ,
            active=active,
            secret_id=ref,
            alfacrm_webhook_secret_hash=hash_secret("a" * 32),
            uis_webhook_secret_hash=hash_secret("u" * 32),
            settings=SettingsDocument.model_validate(settings or {}),
        )
        self.rt.store.integrations.create(integration)
        return integration

    # --- the handlers, invoked as Lambda would --------------------------------------------------------
    def handler(self, function_dir: str) -> Callable[[dict[str, Any], Any], Any]:
        if function_dir not in self._handlers:
            path = ROOT / "functions" / function_dir / "app.py"
            spec = importlib.util.spec_from_file_location(f"bench_fn_{function_dir}", path)
            assert spec and spec.loader, path
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._handlers[function_dir] = module.lambda_handler
        return self._handlers[function_dir]  # type: ignore[no-any-return]

    def context(self, function_id: str) -> Any:
        from tools.localstack.events import LambdaContext

        return LambdaContext(function_name=f"{STACK}-{function_id}", memory_limit_in_mb=512, timeout_seconds=300)

    def drain(self, max_rounds: int = 50) -> int:
        """Every queue the template feeds a function from, delivered to it in batches until all are empty."""
        from tools.localstack.events import sqs_record

        # the event source mapping's own receives and deletes are not the tick's: an uncounted client
        sqs = self._esm_sqs
        delivered = 0
        for _ in range(max_rounds):
            moved = 0
            for source in self.template.sqs_sources:
                url = self.queues[source.queue_id]
                reply = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=min(source.batch_size, 10), AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )  # fmt: skip
                messages = reply.get("Messages", [])
                if not messages:
                    continue
                arn = f"arn:aws:sqs:{REGION}:123456789012:{url.rsplit('/', 1)[1]}"
                event = {"Records": [sqs_record(m, queue_arn=arn, region=REGION) for m in messages]}
                fn = self.template.functions[source.function_id]
                result = self.handler(fn.code_uri.strip("/").removeprefix("functions/"))(
                    event, self.context(source.function_id)
                )
                failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
                for m in messages:
                    if m["MessageId"] not in failed:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                moved += len(messages)
            delivered += moved
            if not moved:
                return delivered
        return delivered
