"""The local stack's runner on a throwaway template: proxy events, replies, queue drains, schedules, idleness.

Handlers are tiny modules written to tmp_path, so these tests depend on no connector code.
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools.localstack import LocalStack

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    Timeout: 5
    Environment:
      Variables:
        WORK_QUEUE_URL: !Ref WorkQueue
        TABLE: !Ref Things
        INSECURE: "false"
Resources:
  Things:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  WorkDLQ:
    Type: AWS::SQS::Queue
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      RedrivePolicy: {deadLetterTargetArn: !GetAtt WorkDLQ.Arn, maxReceiveCount: 2}
  Api:
    Type: AWS::Serverless::Api
    Properties: {StageName: !Ref Stage}
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Environment: {Variables: {ECHO_ONLY: !Sub "${AWS::StackName}-echo"}}
      Events:
        Things: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/things/{proxy+}", Method: ANY}}
        Item: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/items/{id}", Method: GET}}
        ItemNew: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/items/new", Method: GET}}
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 3
            FunctionResponseTypes: [ReportBatchItemFailures]
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: tick/
      Events:
        TickSchedule:
          Type: ScheduleV2
          Properties: {ScheduleExpression: rate(1 hour)}
  BoomFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: boom/
      Events:
        BoomSchedule:
          Type: ScheduleV2
          Properties: {ScheduleExpression: "cron(0 3 * * ? *)"}
"""

BOOM = """
def lambda_handler(event, context):
    raise ValueError("nothing to flush")
"""

ECHO = """
import base64, json, os

def lambda_handler(event, context):
    if event["path"].endswith("/boom"):
        raise RuntimeError("boom")
    if event["path"].endswith("/binary"):
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(b"\\x00\\xff").decode(), "isBase64Encoded": True}
    if event["path"].endswith("/malformed"):
        return "not a proxy reply"
    reply = {"event": event, "remaining": context.get_remaining_time_in_millis(),
             "function_name": context.function_name, "request_id": context.aws_request_id,
             "env": {k: os.environ.get(k) for k in ("WORK_QUEUE_URL", "TABLE", "INSECURE", "ECHO_ONLY",
                                                     "ALLOW_INSECURE_HOSTS", "ADMIN_TOKEN")}}
    return {"statusCode": 201, "headers": {"X-One": "1"}, "multiValueHeaders": {"X-Many": ["a", "b"]},
            "body": json.dumps(reply)}
"""

WORKER = """
import json, os, time
from pathlib import Path

def lambda_handler(event, context):
    out = Path(os.environ["OUT_DIR"]) / "worker.jsonl"
    failures = []
    with out.open("a") as f:
        for record in event["Records"]:
            f.write(json.dumps({"body": record["body"], "count": record["attributes"]["ApproximateReceiveCount"],
                                "arn": record["eventSourceARN"], "batch": len(event["Records"])}) + "\\n")
            if record["body"].startswith("slow"):
                time.sleep(0.4)
            if record["body"].startswith("bad"):
                failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""

TICK = """
def lambda_handler(event, context):
    return {"source": event["source"], "detail_type": event["detail-type"], "resources": event["resources"]}
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def stack(tmp_path: Path):
    write(tmp_path / "template.yaml", TEMPLATE)
    write(tmp_path / "echo" / "app.py", ECHO)
    write(tmp_path / "worker" / "app.py", WORKER)
    write(tmp_path / "tick" / "app.py", TICK)
    write(tmp_path / "boom" / "app.py", BOOM)
    local = LocalStack(
        tmp_path / "template.yaml",
        stack_name="unit",
        admin_token="unit-token",
        run_schedules=False,
        extra_env={"OUT_DIR": str(tmp_path)},
    )
    local.start()
    yield local
    local.stop()


def worker_log(stack: LocalStack) -> list[dict[str, Any]]:
    path = Path(stack.env["OUT_DIR"]) / "worker.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------------------------------- HTTP
def test_greedy_path_query_and_headers_become_a_rest_v1_proxy_event(stack: LocalStack) -> None:
    reply = httpx.post(
        f"{stack.url}/things/a/b%20c?x=1&x=2&y=z",
        content=b'{"k": "v"}',
        headers={"Content-Type": "application/json", "X-Custom": "yes"},
    )
    assert reply.status_code == 201
    event = reply.json()["event"]
    assert event["resource"] == "/things/{proxy+}"
    assert event["path"] == "/things/a/b c"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"proxy": "a/b c"}
    assert event["queryStringParameters"] == {"x": "2", "y": "z"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": ["z"]}
    assert event["headers"]["X-Custom"] == "yes"
    assert event["multiValueHeaders"]["X-Custom"] == ["yes"]
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["body"] == '{"k": "v"}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "dev"
    assert context["domainName"] == f"127.0.0.1:{stack.port}"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["resourcePath"] == "/things/{proxy+}"
    assert context["requestId"]
    assert reply.headers["X-One"] == "1"
    assert reply.headers.get_list("X-Many") == ["a", "b"]


def test_binary_body_is_base64_encoded_and_empty_parts_are_null(stack: LocalStack) -> None:
    event = httpx.put(f"{stack.url}/things/x", content=b"\x00\xff\xfe").json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\xff\xfe"
    event = httpx.get(f"{stack.url}/items/42").json()["event"]
    assert event["body"] is None
    assert event["queryStringParameters"] is None
    assert event["pathParameters"] == {"id": "42"}


def test_literal_route_wins_over_a_parameter_and_the_stage_prefix_is_accepted(stack: LocalStack) -> None:
    assert httpx.get(f"{stack.url}/items/new").json()["event"]["resource"] == "/items/new"
    assert httpx.get(f"{stack.url}/dev/items/7").json()["event"]["path"] == "/items/7"


def test_unknown_route_wrong_method_exception_and_malformed_reply_answer_like_api_gateway(stack) -> None:
    assert httpx.get(f"{stack.url}/nowhere").status_code == 403
    assert httpx.post(f"{stack.url}/items/1").status_code == 403
    assert httpx.get(f"{stack.url}/things/boom").status_code == 502
    assert httpx.get(f"{stack.url}/things/malformed").status_code == 502


def test_base64_reply_is_decoded(stack: LocalStack) -> None:
    reply = httpx.get(f"{stack.url}/things/binary")
    assert reply.content == b"\x00\xff"
    assert reply.headers["Content-Type"] == "application/octet-stream"


def test_environment_is_resolved_from_the_template_with_local_overrides(stack: LocalStack) -> None:
    reply = httpx.get(f"{stack.url}/things/env").json()
    env = reply["env"]
    assert env["WORK_QUEUE_URL"] == stack.queue_urls["WorkQueue"]
    assert env["TABLE"] == "unit-Things"
    assert env["ECHO_ONLY"] == "unit-echo"
    assert env["INSECURE"] == "false"
    assert env["ALLOW_INSECURE_HOSTS"] == "true"
    assert env["ADMIN_TOKEN"] == "unit-token"
    assert reply["function_name"] == "unit-EchoFunction"
    assert 0 < reply["remaining"] <= 5000


def test_health_lists_the_functions(stack: LocalStack) -> None:
    reply = httpx.get(f"{stack.url}/health")
    assert reply.status_code == 200
    assert reply.json()["functions"] == ["BoomFunction", "EchoFunction", "TickFunction", "WorkerFunction"]


# ------------------------------------------------------------------------------------------- queues
def test_partial_batch_failures_are_retried_then_dead_lettered(stack: LocalStack, sqs) -> None:
    """Given good and bad messages, the good ones are handled once and deleted; the bad one is redelivered
    until maxReceiveCount (2) and then sits in the DLQ."""
    url = stack.queue_urls["WorkQueue"]
    for body in ("good-1", "bad-1", "good-2"):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    stack.wait_idle(timeout=20)

    log = worker_log(stack)
    assert sorted(r["body"] for r in log if r["body"].startswith("good")) == ["good-1", "good-2"]
    assert [r["count"] for r in log if r["body"] == "bad-1"] == ["1", "2"]
    assert {r["arn"] for r in log} == {"arn:aws:sqs:eu-central-1:123456789012:unit-WorkQueue"}
    assert all(r["batch"] <= 3 for r in log)
    dead = sqs.receive_message(QueueUrl=stack.queue_urls["WorkDLQ"], MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["bad-1"]


def test_idle_is_false_while_a_message_is_being_handled(stack: LocalStack, sqs) -> None:
    assert httpx.get(f"{stack.url}/_local/idle").json() == {"idle": True}
    sqs.send_message(QueueUrl=stack.queue_urls["WorkQueue"], MessageBody="slow-1")
    assert httpx.get(f"{stack.url}/_local/idle").json() == {"idle": False}
    stack.wait_idle(timeout=10)
    assert httpx.get(f"{stack.url}/_local/idle").json() == {"idle": True}
    assert [r["body"] for r in worker_log(stack)] == ["slow-1"]


def test_wait_idle_times_out_with_the_queue_depths(stack: LocalStack, sqs) -> None:
    sqs.send_message(QueueUrl=stack.queue_urls["WorkQueue"], MessageBody="slow-2")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="WorkQueue"):
        stack.wait_idle(timeout=0.1)
    assert time.monotonic() - started < 2
    stack.wait_idle(timeout=10)


# ------------------------------------------------------------------------------------------- schedules
def test_schedule_runs_on_demand_by_event_name_or_function_id(stack: LocalStack) -> None:
    reply = httpx.post(f"{stack.url}/_local/schedules/TickSchedule")
    assert reply.status_code == 200
    assert reply.json()["source"] == "aws.scheduler"
    assert reply.json()["detail_type"] == "Scheduled Event"
    assert reply.json()["resources"][0].endswith(":schedule/default/TickFunctionTickSchedule")
    assert stack.invoke_schedule("TickFunction")["source"] == "aws.scheduler"
    assert httpx.post(f"{stack.url}/_local/schedules/Nope").status_code == 404


def test_a_failing_scheduled_handler_answers_500_with_the_error(stack: LocalStack) -> None:
    reply = httpx.post(f"{stack.url}/_local/schedules/BoomSchedule")
    assert reply.status_code == 500
    assert reply.json()["error"] == {"code": "handler_failed", "message": "ValueError: nothing to flush"}
    # cron() schedules are not timed locally, only run on demand
    assert stack.find_schedule("BoomSchedule").interval_seconds is None


def test_schedules_fire_on_their_rate(tmp_path: Path) -> None:
    fast = TEMPLATE.replace("rate(1 hour)", "rate(1 minute)")
    write(tmp_path / "template.yaml", fast)
    for name, code in (("echo", ECHO), ("worker", WORKER), ("tick", TICK), ("boom", BOOM)):
        write(tmp_path / name / "app.py", code)
    local = LocalStack(tmp_path / "template.yaml", stack_name="unit", extra_env={"OUT_DIR": str(tmp_path)})
    fired: list[Any] = []
    [schedule] = [s for s in local.template.schedules if s.event_name == "TickSchedule"]
    assert schedule.interval_seconds == 60
    # Shorten the wait rather than sleeping a minute: the timer loop is what is under test.
    object.__setattr__(schedule, "interval_seconds", 0.2)
    local.template.functions["TickFunction"].schedules[0] = schedule
    original = local.invoke_schedule
    local.invoke_schedule = lambda name: fired.append(original(name))  # type: ignore[method-assign]
    local.start()
    try:
        deadline = time.monotonic() + 5
        while len(fired) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        local.stop()
    assert len(fired) >= 2
    assert fired[0]["source"] == "aws.scheduler"


def test_stop_restores_the_environment(tmp_path: Path) -> None:
    import os

    before = dict(os.environ)
    write(tmp_path / "template.yaml", TEMPLATE)
    for name, code in (("echo", ECHO), ("worker", WORKER), ("tick", TICK), ("boom", BOOM)):
        write(tmp_path / name / "app.py", code)
    with LocalStack(tmp_path / "template.yaml", stack_name="unit", extra_env={"OUT_DIR": str(tmp_path)}):
        assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert dict(os.environ) == before
