"""The one moto session of the test suite; tables, queues, the admin secret and the KMS key come from template.yaml.

At import time (before any test module imports a handler: Powertools reads table names at import) the
environment is set to exactly what the template gives the functions, resolved against the names the
session fixture then creates. One `mock_aws()` for the whole session and cached clients: a fresh mock per
test made the suite ~6x slower (reference/tooling.md); `clean_aws` empties everything between tests.

Every test is a cold container: `container_runtime` (autouse) installs a fresh `Runtime` for the handlers,
on the session's AWS handles (`AWS`); a test that calls a use case directly builds its own with
`runtime(store=..., clients=..., now=...)`. Nothing is ever reset.

Fixtures for other conftests (names are stable): `template`, `table_names`, `queue_urls`, `dynamodb`,
`dynamodb_resource`, `state_table`, `idempotency_table`, `sqs`, `secretsmanager`, `kms`, `lambda_context`,
`clean_aws` (autouse), `container_runtime` (autouse), `store`, `start_local_stack` (in-process LocalStack
sharing this moto state).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.localstack.events import LambdaContext
from tools.localstack.resources import (
    Physical,
    Resolver,
    create_keys,
    create_queues,
    create_secrets,
    create_tables,
    function_environment,
    predicted_physical,
    secret_name,
)
from tools.localstack.template import Template

ROOT = Path(__file__).resolve().parent.parent
STACK_NAME = "test"  # resources are "test-<LogicalId>"; SECRETS_PREFIX is "test"
REGION = "eu-central-1"
ADMIN_TOKEN = "test-admin-token"
SQS_ENDPOINT = f"https://sqs.{REGION}.amazonaws.com"  # where in-process moto builds queue URLs

TEMPLATE = Template.load(ROOT / "template.yaml")


def _test_environment() -> dict[str, str]:
    physical = predicted_physical(TEMPLATE, stack_name=STACK_NAME, region=REGION, sqs_endpoint=SQS_ENDPOINT)
    resolver = Resolver(TEMPLATE, physical, stack_name=STACK_NAME, region=REGION)
    for lid in TEMPLATE.secrets:
        # Secrets Manager accepts the name wherever an ARN goes; the ARN's random suffix is not known yet.
        name = secret_name(TEMPLATE, resolver, lid)
        physical[lid] = Physical(name, {"Id": name})
    env: dict[str, str] = {}
    for lid in TEMPLATE.functions:
        env.update(function_environment(TEMPLATE, resolver, lid))
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SECURITY_TOKEN": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "ALLOW_INSECURE_HOSTS": "true",  # the sandboxes run on http://127.0.0.1:<port>
            # No AlfaCRM spacing in tests: the limiter's own tests inject a fake clock; a real 2 req/s
            # would only make the suite slow (the benchmark and `make run` keep the template's value).
            "ALFACRM_RPS": "0",
            "ALFACRM_ACCOUNT_RPS": "0",  # the shared account budget has its own tests (tests/test_ratelimit.py)
            "ADMIN_TOKEN": ADMIN_TOKEN,
            # a removal's second sweep (for writes in flight) at once, not a minute later
            "PURGE_SWEEP_SECONDS": "0",
            "POWERTOOLS_TRACE_DISABLED": "1",
            # Pinned off: in dev mode the event handler answers exceptions with a traceback instead of
            # raising, so tests would see other behaviour than Lambda does.
            "POWERTOOLS_DEV": "false",
            "POWERTOOLS_METRICS_NAMESPACE": env.get("POWERTOOLS_METRICS_NAMESPACE", "AlfaCrmUisConnector"),
        }
    )
    return env


TEST_ENV = _test_environment()
for _key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_key, None)
os.environ.update(TEST_ENV)

# Started at import, not in a fixture: test modules import handlers during collection, and a boto3 client
# created then (Powertools idempotency makes one at import) must already go to moto.
from moto import mock_aws  # noqa: E402 - after the environment, so nothing sees real credentials

_MOCK = mock_aws()
_MOCK.start()

import boto3  # noqa: E402
from connector.aws import Aws  # noqa: E402
from connector.config import Environment  # noqa: E402
from connector.runtime import Runtime, install  # noqa: E402
from connector.store import Store  # noqa: E402

# One set of boto3 handles for the whole session (a client costs ~110 ms to create).
AWS = Aws(boto3.session.Session(region_name=REGION))


def runtime(**parts: Any) -> Runtime:
    """A runtime on this session's moto state: `runtime(store=..., clients=..., now=...)` (see Runtime)."""
    return Runtime(Environment.from_environ(), aws=AWS, **parts)


def pytest_configure(config: pytest.Config) -> None:
    from tests import logscan  # every captured line of the suite, scanned by tests/test_logscan.py

    config.pluginmanager.register(logscan, "logscan")


def pytest_unconfigure(config: pytest.Config) -> None:
    with contextlib.suppress(RuntimeError):  # already stopped (e.g. a collection error path)
        _MOCK.stop()


# ------------------------------------------------------------------------------------------- clients
@pytest.fixture(scope="session")
def template() -> Template:
    return TEMPLATE


@pytest.fixture(scope="session")
def _boto_session() -> Any:
    import boto3

    return boto3.session.Session(region_name=REGION)


@pytest.fixture(scope="session")
def dynamodb(_boto_session: Any) -> Any:
    return _boto_session.client("dynamodb")


@pytest.fixture(scope="session")
def dynamodb_resource(_boto_session: Any) -> Any:
    return _boto_session.resource("dynamodb")


@pytest.fixture(scope="session")
def sqs(_boto_session: Any) -> Any:
    return _boto_session.client("sqs")


@pytest.fixture(scope="session")
def secretsmanager(_boto_session: Any) -> Any:
    return _boto_session.client("secretsmanager")


@pytest.fixture(scope="session")
def kms(_boto_session: Any) -> Any:
    return _boto_session.client("kms")


# ------------------------------------------------------------------------------------------- resources
@pytest.fixture(scope="session")
def _aws_resources(dynamodb: Any, sqs: Any, secretsmanager: Any, kms: Any) -> dict[str, dict[str, str]]:
    tables = create_tables(dynamodb, TEMPLATE, stack_name=STACK_NAME)
    queues = create_queues(sqs, TEMPLATE, stack_name=STACK_NAME)
    physical = predicted_physical(TEMPLATE, stack_name=STACK_NAME, region=REGION, sqs_endpoint=SQS_ENDPOINT)
    resolver = Resolver(TEMPLATE, physical, stack_name=STACK_NAME, region=REGION)
    secrets = create_secrets(secretsmanager, TEMPLATE, resolver, {lid: ADMIN_TOKEN for lid in TEMPLATE.secrets})
    create_keys(kms, TEMPLATE, resolver)
    # The environment set at import must name exactly what was created.
    for lid, url in queues.items():
        assert physical[lid].ref == url, (lid, physical[lid].ref, url)
    for lid, name in tables.items():
        assert physical[lid].ref == name
    names = {lid: secret_name(TEMPLATE, resolver, lid) for lid in TEMPLATE.secrets}
    return {"tables": tables, "queues": queues, "secrets": secrets, "secret_names": names}


@pytest.fixture(scope="session")
def table_names(_aws_resources: dict[str, dict[str, str]]) -> dict[str, str]:
    """Logical id → table name, e.g. {"StateTable": "test-StateTable", ...}."""
    return _aws_resources["tables"]


@pytest.fixture(scope="session")
def queue_urls(_aws_resources: dict[str, dict[str, str]]) -> dict[str, str]:
    """Logical id → queue URL for every queue of the template (DLQs included)."""
    return _aws_resources["queues"]


@pytest.fixture(scope="session")
def state_table(dynamodb_resource: Any, table_names: dict[str, str]) -> Any:
    return dynamodb_resource.Table(table_names["StateTable"])


@pytest.fixture(scope="session")
def idempotency_table(dynamodb_resource: Any, table_names: dict[str, str]) -> Any:
    return dynamodb_resource.Table(table_names["IdempotencyTable"])


def _empty_table(dynamodb: Any, table_name: str) -> None:
    description = dynamodb.describe_table(TableName=table_name)["Table"]
    keys = [k["AttributeName"] for k in description["KeySchema"]]
    names = {f"#k{i}": key for i, key in enumerate(keys)}
    scan: dict[str, Any] = {
        "TableName": table_name,
        "ProjectionExpression": ", ".join(names),
        "ExpressionAttributeNames": names,
    }
    while True:
        page = dynamodb.scan(**scan)
        items = page.get("Items", [])
        for start in range(0, len(items), 25):
            dynamodb.batch_write_item(
                RequestItems={table_name: [{"DeleteRequest": {"Key": item}} for item in items[start : start + 25]]}
            )
        if "LastEvaluatedKey" not in page:
            return
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture(autouse=True)
def clean_aws(
    _aws_resources: dict[str, dict[str, str]], dynamodb: Any, sqs: Any, secretsmanager: Any
) -> Iterator[None]:
    """Every test starts with empty tables and queues and no secrets but the admin token's.

    Emptying (scan + batch delete, purge) is much faster than deleting and recreating.
    """
    yield
    for name in _aws_resources["tables"].values():
        _empty_table(dynamodb, name)
    # PurgeQueue may run once a minute (moto enforces it too); deleting and recreating a queue that holds
    # anything (visible or in flight) gives the same URL and an empty queue in no time.
    depth = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    for url in _aws_resources["queues"].values():
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=depth)["Attributes"]
        if any(int(attributes.get(name, 0)) for name in depth):
            for queue_url in _aws_resources["queues"].values():
                sqs.delete_queue(QueueUrl=queue_url)
            assert create_queues(sqs, TEMPLATE, stack_name=STACK_NAME) == _aws_resources["queues"]
            break
    keep = set(_aws_resources["secret_names"].values())
    for page in secretsmanager.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        for secret in page["SecretList"]:
            if secret["Name"] not in keep:
                secretsmanager.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)


@pytest.fixture(autouse=True)
def container_runtime(_aws_resources: dict[str, dict[str, str]]) -> Runtime:
    """The handlers' runtime: a new one per test, as a cold Lambda container would build."""
    return install(runtime())


@pytest.fixture
def store(container_runtime: Runtime) -> Store:
    """The container's store (what the handlers read and write)."""
    return container_runtime.store


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="test-function", memory_limit_in_mb=512, timeout_seconds=30, region=REGION)


@pytest.fixture
def start_local_stack(_aws_resources: dict[str, dict[str, str]]) -> Iterator[Callable[..., Any]]:
    """Factory: `stack = start_local_stack(sandbox=True)` → a started LocalStack, stopped after the test.

    It uses this session's stack name, so its tables and queues are the ones the fixtures above show and
    the environment it sets matches what the connector cached at import (moto server mode shares the
    in-process moto state).
    """
    from tools.localstack import LocalStack

    stacks: list[Any] = []

    def start(**kwargs: Any) -> Any:
        kwargs.setdefault("stack_name", STACK_NAME)
        kwargs.setdefault("region", REGION)
        kwargs.setdefault("admin_token", ADMIN_TOKEN)
        kwargs.setdefault("run_schedules", False)
        stack = LocalStack(**kwargs)
        stacks.append(stack)
        stack.start()
        return stack

    yield start
    for stack in reversed(stacks):
        stack.stop()
