"""template.yaml: lint-clean, and the moto resources the tests run on are the ones it declares."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack.permissions import granted, uses
from tools.localstack.template import Template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_FUNCTIONS = Template.load(ROOT / "template.yaml").functions
FUNCTIONS = {
    "AdminApiFunction": "admin_api",
    "PagesFunction": "pages",
    "AlfaCrmWebhookFunction": "alfacrm_webhook",
    "UisWebhookFunction": "uis_webhook",
    "DealWorkerFunction": "deal_worker",
    "DealUploaderFunction": "deal_uploader",
    "TextWorkerFunction": "text_worker",
    "ChatPollerFunction": "chat_poller",
    "ReconcilerFunction": "reconciler",
    "SchedulerFunction": "scheduler",
    "JobsFunction": "jobs",
}
GLOBAL_ENV = {
    "STATE_TABLE",
    "IDEMPOTENCY_TABLE",
    "DEAL_EVENTS_QUEUE_URL",
    "TEXT_EVENTS_QUEUE_URL",
    "DEAL_UPLOAD_QUEUE_URL",
    "CHAT_POLL_QUEUE_URL",
    "RECONCILE_QUEUE_URL",
    "SECRETS_PREFIX",
    "CREDENTIALS_KEY_ID",
    "ADMIN_TOKEN_SECRET_ID",
    "ALLOW_INSECURE_HOSTS",
    "ALFACRM_RPS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_LOG_LEVEL",
    "JOBS_QUEUE_URL",
    "MAX_RECEIVE_COUNT",
}


# cfn-lint takes ~5 s (mostly its import): started at collection in a subprocess, it runs alongside the
# other tests and is usually done when its test comes up.
_CFN_LINT = subprocess.Popen(
    [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", "template.yaml"],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
)


def test_cfn_lint_reports_nothing() -> None:
    output, _ = _CFN_LINT.communicate(timeout=120)
    assert (_CFN_LINT.returncode, output) == (0, "")


def test_state_table_in_moto_has_the_template_keys_gsi_and_ttl(dynamodb, table_names) -> None:
    table = dynamodb.describe_table(TableName=table_names["StateTable"])["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    # gsi1: the work index's probe and the other sparse lists; gsi2: the work index's shards
    gsis = {g["IndexName"]: g for g in table["GlobalSecondaryIndexes"]}
    assert sorted(gsis) == ["gsi1", "gsi2"]
    for name, gsi in gsis.items():
        assert gsi["KeySchema"] == [
            {"AttributeName": f"{name}pk", "KeyType": "HASH"},
            {"AttributeName": f"{name}sk", "KeyType": "RANGE"},
        ]
        assert gsi["Projection"] == {"ProjectionType": "ALL"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName=table_names["StateTable"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_idempotency_table_in_moto_is_the_template_layout(dynamodb, table_names) -> None:
    table = dynamodb.describe_table(TableName=table_names["IdempotencyTable"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    ttl = dynamodb.describe_time_to_live(TableName=table_names["IdempotencyTable"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiration"


@pytest.mark.parametrize("queue, dlq", [("DealEventsQueue", "DealEventsDLQ"), ("TextEventsQueue", "TextEventsDLQ")])
def test_event_queues_redrive_to_their_dlq_after_five_receives(sqs, queue_urls, queue, dlq) -> None:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_urls[queue], AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=queue_urls[dlq], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}


def test_the_workers_know_the_queues_max_receive_count(tpl: Template) -> None:
    """A worker marks a record failing at its last receive as its school's dead letter: the count it compares
    with is the one the queues dead-letter at."""
    counts = {
        tpl.queues[q]["Properties"]["RedrivePolicy"]["maxReceiveCount"] for q in ("DealEventsQueue", "TextEventsQueue")
    }
    assert counts == {tpl.data["Globals"]["Function"]["Environment"]["Variables"]["MAX_RECEIVE_COUNT"]}


def test_one_integrations_failing_metric_without_a_per_school_dimension_has_an_alarm(tpl: Template) -> None:
    alarm = tpl.resources["IntegrationsFailingAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AlfaCrmUisConnector", "IntegrationsFailing")
    assert [d["Name"] for d in alarm["Dimensions"]] == ["service"]


def test_environment_seen_by_handlers_names_the_created_resources(table_names, queue_urls) -> None:
    import os

    assert os.environ["STATE_TABLE"] == table_names["StateTable"]
    assert os.environ["IDEMPOTENCY_TABLE"] == table_names["IdempotencyTable"]
    assert os.environ["DEAL_EVENTS_QUEUE_URL"] == queue_urls["DealEventsQueue"]
    assert os.environ["TEXT_EVENTS_QUEUE_URL"] == queue_urls["TextEventsQueue"]
    assert os.environ["DEAL_EVENTS_DLQ_URL"] == queue_urls["DealEventsDLQ"]
    assert os.environ["ALLOW_INSECURE_HOSTS"] == "true"


# ------------------------------------------------------------------------------- what the template declares
@pytest.fixture(scope="module")
def tpl() -> Template:
    return Template.load(ROOT / "template.yaml")


def test_the_ten_functions_live_where_internals_says(tpl: Template) -> None:
    assert {lid: fn.code_uri for lid, fn in tpl.functions.items()} == {
        lid: f"functions/{name}/" for lid, name in FUNCTIONS.items()
    }
    assert {fn.handler for fn in tpl.functions.values()} == {"app.lambda_handler"}
    assert set(tpl.data["Globals"]["Function"]["Environment"]["Variables"]) >= GLOBAL_ENV
    assert tpl.data["Globals"]["Function"]["Runtime"] == "python3.13"


def test_routes(tpl: Template) -> None:
    routes = {(r.method, r.path, r.function_id) for r in tpl.routes}
    assert routes == {
        ("ANY", "/integrations", "AdminApiFunction"),
        ("ANY", "/integrations/{proxy+}", "AdminApiFunction"),
        ("POST", "/hooks/alfacrm/{id}/{secret}", "AlfaCrmWebhookFunction"),
        ("POST", "/hooks/uis/{id}/{secret}", "UisWebhookFunction"),
        ("GET", "/hooks/uis/{id}/{secret}", "UisWebhookFunction"),
        ("GET", "/ui", "PagesFunction"),
        ("GET", "/ui/{proxy+}", "PagesFunction"),
        ("GET", "/widget/alfacrm.js", "PagesFunction"),
        ("GET", "/docs", "PagesFunction"),
        ("GET", "/docs/{proxy+}", "PagesFunction"),
    }


EVENT_QUEUES = {"DealEventsQueue": "DealWorkerFunction", "TextEventsQueue": "TextWorkerFunction"}
WORK_QUEUES = {
    "DealUploadQueue": "DealUploaderFunction",
    "ChatPollQueue": "ChatPollerFunction",
    "ReconcileQueue": "ReconcilerFunction",
}


def _parameter(tpl: Template, value: object) -> int:
    assert isinstance(value, dict) and set(value) == {"Ref"}, value
    return int(tpl.parameters[value["Ref"]]["Default"])


def test_queue_sources_report_partial_failures_and_size_concurrency_for_thousands_of_schools(tpl: Template) -> None:
    sources = {s.queue_id: s for s in tpl.sqs_sources}
    jobs = {"JobsQueue": "JobsFunction"}
    assert {q: s.function_id for q, s in sources.items()} == {**EVENT_QUEUES, **WORK_QUEUES, **jobs}
    # a job is long (up to the function's timeout): one per invocation
    assert sources["JobsQueue"].batch_size == 1
    for source in sources.values():
        assert source.report_batch_item_failures
        visibility = tpl.queues[source.queue_id]["Properties"]["VisibilityTimeout"]
        assert visibility >= 6 * tpl.functions[source.function_id].timeout
        if source.queue_id in jobs:
            continue  # the admin's background jobs: a small fixed concurrency, not sized by the schools
        concurrency = _parameter(tpl, source.max_concurrency)
        assert 2 <= concurrency <= 1000
    # the event queues: batches of ten; concurrency for 10,000 busy schools (README "Deployment")
    assert {q: sources[q].batch_size for q in EVENT_QUEUES} == {"DealEventsQueue": 10, "TextEventsQueue": 10}
    assert _parameter(tpl, sources["DealEventsQueue"].max_concurrency) >= 40
    assert _parameter(tpl, sources["TextEventsQueue"].max_concurrency) >= 80
    # the work queues: one school per invocation, so a hung school holds up no other in its batch
    assert {sources[q].batch_size for q in WORK_QUEUES} == {1}
    assert _parameter(tpl, sources["DealUploadQueue"].max_concurrency) >= 50


def test_work_queues_are_fifo_per_school_with_a_dead_letter_queue(tpl: Template) -> None:
    for queue in WORK_QUEUES:
        props = tpl.queues[queue]["Properties"]
        assert props["FifoQueue"] is True
        # high-throughput FIFO: deduplication and throughput per message group (a group per school)
        assert (props["DeduplicationScope"], props["FifoThroughputLimit"]) == ("messageGroup", "perMessageGroupId")
        assert props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["SchoolWorkDLQ", "Arn"]}
    assert tpl.queues["SchoolWorkDLQ"]["Properties"]["FifoQueue"] is True


def test_no_concurrency_is_reserved_by_default(tpl: Template) -> None:
    """Reserving fails on a new account (its concurrency quota may be 10): reserved only when asked."""
    assert tpl.parameters["ReserveWorkerConcurrency"]["Default"] == "false"
    assert "SerializeScheduledFunctions" not in tpl.parameters
    for lid, fn in tpl.functions.items():
        reserved = fn.reserved_concurrency
        if reserved is not None:
            assert reserved["Fn::If"][0] == "ReserveConcurrency" and reserved["Fn::If"][2] == {"Ref": "AWS::NoValue"}, (
                lid
            )


def test_schedules_have_retries_and_a_dead_letter_queue(tpl: Template) -> None:
    schedules = {s.event_name: (s.function_id, s.expression, json.loads(s.input)) for s in tpl.schedules}
    # every schedule is a tick of the scheduler, its Input naming the job it dispatches
    assert schedules == {
        "DealUploadSchedule": ("SchedulerFunction", "rate(1 minute)", {"job": "upload"}),
        "ChatPollSchedule": ("SchedulerFunction", "rate(1 minute)", {"job": "poll"}),
        "ReconcileSchedule": ("SchedulerFunction", "rate(5 minutes)", {"job": "reconcile"}),
        "BackfillSchedule": ("SchedulerFunction", "rate(1 minute)", {"job": "backfill"}),
    }
    for schedule in tpl.schedules:
        props = tpl.resources[schedule.function_id]["Properties"]["Events"][schedule.event_name]["Properties"]
        assert "RetryPolicy" in props
        assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SchedulesDLQ", "Arn"]}}


def test_every_function_has_a_log_group_with_retention_and_an_errors_alarm(tpl: Template) -> None:
    log_groups = tpl.of_type("AWS::Logs::LogGroup").values()
    alarms = tpl.of_type("AWS::CloudWatch::Alarm").values()
    for lid in FUNCTIONS:
        [group] = [
            g for g in log_groups if g["Properties"].get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/${{{lid}}}"}
        ]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        errors = [
            a
            for a in alarms
            if a["Properties"].get("MetricName") == "Errors"
            and a["Properties"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": lid}}]
        ]
        assert len(errors) == 1
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    dlq_alarms = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert dlq_alarms == {"DealEventsDLQ", "TextEventsDLQ", "SchedulesDLQ", "SchoolWorkDLQ", "JobsDLQ"}


def _statements(tpl: Template, lid: str) -> list[dict]:
    return [
        st
        for policy in tpl.resources[lid]["Properties"].get("Policies", [])
        if isinstance(policy, dict)
        for st in policy.get("Statement", [])
    ]


def _listed(value: object) -> list:
    return value if isinstance(value, list) else [value]


# the functions that open an integration's credentials (rt.clients / rt.secrets); intake and pages never do
CREDENTIAL_USERS = {
    "AdminApiFunction",
    "DealWorkerFunction",
    "DealUploaderFunction",
    "TextWorkerFunction",
    "ChatPollerFunction",
    "ReconcilerFunction",
}


def test_secret_permissions_are_the_admin_token_and_the_one_time_move(tpl: Template) -> None:
    """Per integration only GetSecretValue + DeleteSecret remain (the lazy move of a pre-KMS secret)."""
    for lid in tpl.functions:
        for statement in _statements(tpl, lid):
            actions = _listed(statement["Action"])
            if not any(a.startswith("secretsmanager:") for a in actions):
                continue
            for resource in _listed(statement["Resource"]):
                if resource == {"Ref": "AdminTokenSecret"}:
                    assert actions == ["secretsmanager:GetSecretValue"], lid
                else:
                    assert resource["Fn::Sub"].endswith(":secret:${AWS::StackName}/integrations/*"), lid
                    assert set(actions) <= {"secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"}, lid


def test_only_the_functions_that_open_credentials_may_use_the_key_and_only_with_the_context(tpl: Template) -> None:
    from connector.secrets import PURPOSE, encryption_context

    users = set()
    for lid in tpl.functions:
        for statement in _statements(tpl, lid):
            actions = _listed(statement["Action"])
            if not any(a.startswith("kms:") for a in actions):
                continue
            users.add(lid)
            assert set(actions) <= {"kms:Decrypt", "kms:GenerateDataKey"}, lid
            assert statement["Resource"] == {"Fn::GetAtt": ["CredentialsKey", "Arn"]}, lid
            condition = statement["Condition"]
            assert condition["StringEquals"] == {"kms:EncryptionContext:connector": PURPOSE}, lid
            assert condition["Null"] == {"kms:EncryptionContext:data_key": "false"}, lid
            assert set(encryption_context(1)) == set(
                condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]
            )
    assert users == CREDENTIAL_USERS


def test_the_credentials_key_outlives_the_stack_with_the_table_and_refuses_other_contexts(tpl: Template) -> None:
    from connector.secrets import PURPOSE

    key = tpl.resources["CredentialsKey"]
    assert key["DeletionPolicy"] == tpl.resources["StateTable"]["DeletionPolicy"] == "Retain"
    assert key["Properties"]["EnableKeyRotation"] is True
    [deny] = [st for st in key["Properties"]["KeyPolicy"]["Statement"] if st["Effect"] == "Deny"]
    assert deny["Condition"] == {"StringNotEquals": {"kms:EncryptionContext:connector": PURPOSE}}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(deny["Action"])
    alias = tpl.resources["CredentialsKeyAlias"]["Properties"]
    assert alias["TargetKeyId"] == {"Ref": "CredentialsKey"}
    env = tpl.data["Globals"]["Function"]["Environment"]["Variables"]
    assert env["CREDENTIALS_KEY_ID"] == {"Ref": "CredentialsKeyAlias"}


def _policy_targets(tpl: Template, lid: str) -> set[tuple[str, str]]:
    """(policy template or statement action, the resource it names) for one function."""
    out: set[tuple[str, str]] = set()
    for policy in tpl.resources[lid]["Properties"].get("Policies", []):
        for name, args in policy.items():
            if name == "Statement":
                for st in args:
                    actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                    res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                    out |= {(a, json.dumps(r, sort_keys=True)) for a in actions for r in res}
            else:
                out.add((name, json.dumps(args, sort_keys=True)))
    return out


def test_only_the_deal_worker_touches_the_idempotency_table(tpl: Template) -> None:
    """Least privilege: the idempotency table is used by the deal worker alone."""
    assert {lid for lid in tpl.functions if "IdempotencyTable" in granted(tpl, lid)} == {"DealWorkerFunction"}


@pytest.mark.parametrize("function", sorted(TEMPLATE_FUNCTIONS))
def test_each_function_is_granted_exactly_what_its_code_uses(tpl: Template, function: str) -> None:
    """Least privilege (issue 9, defect 6): a function's policies grant the actions tests/stack/permissions.py
    lists for it, on the resources it lists, no more and no fewer; a function new to the template fails here
    until it has an entry there (tests/stack/test_traces.py holds the entries to what a traced run does)."""
    assert granted(tpl, function) == {resource: set(actions) for resource, actions in uses(function).items()}


def test_no_function_may_scan_the_tables_or_use_wildcards(tpl: Template) -> None:
    for lid in tpl.functions:
        for resource, actions in granted(tpl, lid).items():
            assert "dynamodb:Scan" not in actions, (lid, resource)
            assert not any(a.endswith(":*") or a == "*" for a in actions), (lid, resource)


def test_queue_consumers_poll_their_own_queue_only(tpl: Template) -> None:
    """An SQS event of a function makes SAM attach AWSLambdaSQSQueueExecutionRole (receive and delete on every
    queue of the account): the workers' queues are mapped by AWS::Lambda::EventSourceMapping instead, and
    each worker is granted SQSPollerPolicy on its own queue."""
    for lid in tpl.functions:
        events = tpl.resources[lid]["Properties"].get("Events") or {}
        assert [name for name, event in events.items() if event.get("Type") == "SQS"] == [], lid
    consumers = {(s.function_id, s.queue_id) for s in tpl.sqs_sources}
    assert consumers == {
        ("DealWorkerFunction", "DealEventsQueue"),
        ("TextWorkerFunction", "TextEventsQueue"),
        *((function, queue) for queue, function in WORK_QUEUES.items()),
        ("JobsFunction", "JobsQueue"),
    }
    # a redrive job also takes its school's dead letters (as the admin API does)
    also = {"JobsFunction": {"DealEventsDLQ", "TextEventsDLQ"}}
    for function, queue in consumers:
        polled = {resource for resource, actions in granted(tpl, function).items() if "sqs:ReceiveMessage" in actions}
        assert polled == {queue} | also.get(function, set()), function


def test_a_function_without_a_permissions_entry_fails_loudly() -> None:
    with pytest.raises(AssertionError, match=r"NewFunction is not in tests/stack/permissions\.py"):
        uses("NewFunction")


def test_only_the_admin_api_can_read_the_admin_token(tpl: Template) -> None:
    readers = {
        lid
        for lid in tpl.functions
        for action, target in _policy_targets(tpl, lid)
        if action == "secretsmanager:GetSecretValue"
        and (target == json.dumps({"Ref": "AdminTokenSecret"}) or target.endswith('${AWS::StackName}/*"}'))
    }
    assert readers == {"AdminApiFunction"}


def test_the_admin_api_can_redrive_both_dead_letter_queues(tpl: Template) -> None:
    targets = _policy_targets(tpl, "AdminApiFunction")
    for queue in ("DealEvents", "TextEvents"):
        assert ("SQSPollerPolicy", json.dumps({"QueueName": {"Fn::GetAtt": [f"{queue}DLQ", "QueueName"]}})) in targets
        assert (
            "SQSSendMessagePolicy",
            json.dumps({"QueueName": {"Fn::GetAtt": [f"{queue}Queue", "QueueName"]}}),
        ) in targets


def test_api_gateway_own_errors_use_the_contract_error_shape(tpl: Template) -> None:
    """Unknown paths/methods (API Gateway's MISSING_AUTHENTICATION_TOKEN), throttling, too large, 5XX."""
    [api] = tpl.of_type("AWS::Serverless::Api").values()
    responses = api["Properties"]["GatewayResponses"]
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
    for kind in ("MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX", "DEFAULT_5XX"):
        body = responses[kind]["ResponseTemplates"]["application/json"]
        rendered = json.loads(body.replace("$context.error.messageString", '"text"'))
        assert set(rendered["error"]) == {"code", "message", "field"}, kind


def test_api_gateway_keeps_no_webhook_url(tpl: Template) -> None:
    """The hook URLs carry their secrets: API Gateway's X-Ray segment records each request's URL, so API
    tracing stays off (the functions are traced); its access log names the route, never the path."""
    [api] = tpl.of_type("AWS::Serverless::Api").values()
    assert api["Properties"].get("TracingEnabled", False) is False
    assert tpl.data["Globals"]["Function"]["Tracing"] == "Active"
    log_format = api["Properties"]["AccessLogSetting"]["Format"]
    assert "$context.resourcePath" in log_format
    assert "$context.path" not in log_format and "$context.requestOverride" not in log_format
