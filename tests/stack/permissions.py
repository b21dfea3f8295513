"""What each function's code does with AWS: the least privilege template.yaml must grant it, no more.

`USES[function][resource]` is the set of IAM actions; resources are logical ids of template.yaml
(`StateTable/index` for its GSI, `IntegrationSecrets` for `<stack>/integrations/*`). tests/stack/
test_template.py holds each function's policies to its entry (a function without one fails until it gets
one), and tests/stack/test_traces.py holds every AWS call a traced run makes to the same entries.

Table actions follow connector.store: get → GetItem, query/query_gsi → Query, batch_get → BatchGetItem,
put (conditional or not) → PutItem, update_fields/add_counter (AlfaCRM's account rate too) → UpdateItem,
delete → DeleteItem, put_many → BatchWriteItem. Nothing Scans.
"""

from __future__ import annotations

import re
from typing import Any

GET, QUERY, BATCH_GET = "dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"
PUT, UPDATE, DELETE = "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"
BATCH_WRITE = "dynamodb:BatchWriteItem"
# SAM's policy templates, as they expand (samtranslator's policy_templates.json)
SEND = frozenset({"sqs:SendMessage*"})
POLL = frozenset(
    {
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:DeleteMessage",
        "sqs:DeleteMessageBatch",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    }
)
POLICY_TEMPLATES = {"SQSSendMessagePolicy": SEND, "SQSPollerPolicy": POLL}
READ_SECRET = frozenset({"secretsmanager:GetSecretValue"})
# connector.secrets: credentials open and seal under the stack's data key, which KMS unwraps (and generates,
# at the very first seal); a pre-KMS secret is read once and deleted when it moves (or, never moved, with its
# integration)
CREDENTIALS = {
    "CredentialsKey": frozenset({"kms:Decrypt", "kms:GenerateDataKey"}),
    "IntegrationSecrets": frozenset({"secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"}),
}
INDEX = {"StateTable/index": {QUERY}}

USES: dict[str, dict[str, set[str] | frozenset[str]]] = {
    "AdminApiFunction": {
        # replay unparks (DeleteItem); settings and activation sync the funnels; the deals view; a removal
        # deletes the partition and a redrive its dead-letter marks in batches
        "StateTable": {GET, QUERY, BATCH_GET, PUT, UPDATE, DELETE, BATCH_WRITE},
        **INDEX,  # the integrations list, parked items
        "DealEventsQueue": SEND,  # replay and redrive
        "TextEventsQueue": SEND,
        "JobsQueue": SEND,  # a redrive or removal too long for the API goes on in the jobs worker
        "DealEventsDLQ": POLL,  # redrive takes its integration's dead letters
        "TextEventsDLQ": POLL,
        **CREDENTIALS,  # create seals them, webhook URLs open them, delete drops them
        "AdminTokenSecret": READ_SECRET,  # the bearer check
    },
    # the integration record to check the URL's secret against, then the queue
    "AlfaCrmWebhookFunction": {"StateTable": {GET}, "DealEventsQueue": SEND},
    "UisWebhookFunction": {"StateTable": {GET}, "TextEventsQueue": SEND},
    # the widget loader reads its integration's widget settings
    "PagesFunction": {"StateTable": {GET}},
    "DealWorkerFunction": {
        # a withdrawn upsell deal is deleted, a not-listed event unparked when its entity's delete arrives;
        # the execution log of several schools in one batch
        "StateTable": {GET, BATCH_GET, PUT, UPDATE, DELETE, BATCH_WRITE},
        **INDEX,  # its integration's parked events
        # the record is read with the event's state (one batch) and put in the state's transaction
        "IdempotencyTable": {BATCH_GET, PUT},
        "DealEventsQueue": POLL,  # its event source mapping
        **CREDENTIALS,
    },
    "DealUploaderFunction": {
        # a parked deal that uploads is unparked; contact hashes are written in batches; its upload work
        # entry is settled (DeleteItem) once nothing is pending
        "StateTable": {GET, QUERY, BATCH_GET, PUT, UPDATE, DELETE, BATCH_WRITE},
        **INDEX,  # its school's pending deals; a busy shard's next page of the work index
        "DealUploadQueue": SEND | POLL,  # its event source mapping; a shard's next page goes back on it
        **CREDENTIALS,
    },
    "TextWorkerFunction": {
        # a lead-creation claim whose create failed is dropped so the next attempt need not wait; the
        # execution log of several schools in one batch
        "StateTable": {GET, PUT, UPDATE, DELETE, BATCH_WRITE},
        "TextEventsQueue": POLL,
        **CREDENTIALS,
    },
    "ChatPollerFunction": {
        # chats handed over are marked in batches; the school's next poll is scheduled in its work entry
        # (UpdateItem), removed (DeleteItem) when the school no longer polls
        "StateTable": {GET, BATCH_GET, PUT, UPDATE, DELETE, BATCH_WRITE},
        **INDEX,  # a busy shard's next page of the work index
        "TextEventsQueue": SEND,
        "ChatPollQueue": SEND | POLL,  # its event source mapping; a shard's next page goes back on it
        **CREDENTIALS,
    },
    "ReconcilerFunction": {
        # snapshots, watermarks and the backfill's cursor; the work entry as for the poller
        "StateTable": {GET, BATCH_GET, PUT, UPDATE, DELETE},
        **INDEX,  # a busy shard's next page of the work index
        "DealEventsQueue": SEND,  # missed changes go back to the deal worker
        "ReconcileQueue": SEND | POLL,  # its event source mapping; shard pages and a backfill's next chunk
        **CREDENTIALS,
    },
    # a tick reads the work index and sends one work item per due school; nothing else
    "SchedulerFunction": {
        **INDEX,
        "DealUploadQueue": SEND,
        "ChatPollQueue": SEND,
        "ReconcileQueue": SEND,
    },
    "JobsFunction": {
        # the job's state; a removal's partition read by keys and deleted in batches, dead-letter marks cleared
        "StateTable": {GET, QUERY, PUT, BATCH_WRITE},
        "DealEventsQueue": SEND,  # a redrive's dead letters go back
        "TextEventsQueue": SEND,
        "JobsQueue": SEND | POLL,  # its continuation; its event source mapping
        "DealEventsDLQ": POLL,
        "TextEventsDLQ": POLL,
    },
}


def uses(function: str) -> dict[str, set[str] | frozenset[str]]:
    if function not in USES:
        raise AssertionError(
            f"{function} is not in tests/stack/permissions.py: add what its code does with AWS "
            "(tables, queues, secrets), and grant exactly that in template.yaml"
        )
    return USES[function]


# ------------------------------------------------------------------------------------------- the template
def _resource_id(resource: Any) -> str:
    """A policy resource → the logical id it names (`StateTable/index` for the table's indexes)."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if isinstance(resource, dict) and "Ref" in resource:
        return str(resource["Ref"])
    if isinstance(resource, dict) and "Fn::Sub" in resource and isinstance(resource["Fn::Sub"], str):
        text = resource["Fn::Sub"]
        if text.endswith(":secret:${AWS::StackName}/integrations/*"):
            return "IntegrationSecrets"
        match = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/\*", text)
        if match:
            return f"{match.group(1)}/index"
    raise AssertionError(f"a policy names a resource the permissions test cannot read: {resource!r}")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(template: Any, function: str) -> dict[str, set[str]]:
    """What the function's `Policies` grant, by resource: statements and the SAM templates above only."""
    out: dict[str, set[str]] = {}
    for policy in template.resources[function]["Properties"].get("Policies", []):
        if not isinstance(policy, dict):
            raise AssertionError(f"{function}: managed policy {policy!r} — grant statements on named resources")
        for name, args in policy.items():
            if name == "Statement":
                for statement in args:
                    assert statement["Effect"] == "Allow", (function, statement)
                    for resource in _listed(statement["Resource"]):
                        out.setdefault(_resource_id(resource), set()).update(_listed(statement["Action"]))
            elif name in POLICY_TEMPLATES:
                out.setdefault(_resource_id(args["QueueName"]), set()).update(POLICY_TEMPLATES[name])
            else:
                raise AssertionError(f"{function}: policy template {name} is not known to the permissions test")
    return out


# ------------------------------------------------------------------------------------------- a traced run
def iam_actions(subsegment: dict[str, Any]) -> list[tuple[str, str]]:
    """An X-Ray `aws` subsegment → [(an IAM action the call needs, the logical id of what it called)].

    Names are the test stack's (`test-StateTable`, …/test-DealEventsQueue); the X-Ray SDK records no secret
    id, so a Secrets Manager call names `IntegrationSecrets` (the admin token comes from the environment
    locally). A batch read names each table it read. A transaction is authorised per item (IAM has no
    TransactWriteItems action) and X-Ray records none of its tables: the connector's transactions
    (`connector.store.unit`) put and delete state items, update the school's work entry (a deal turned
    pending marks its upload) and put the event's idempotency record."""
    aws = subsegment.get("aws") or {}
    service, operation = subsegment["name"], aws.get("operation")
    if service == "secretsmanager":
        return [(f"secretsmanager:{operation}", "IntegrationSecrets")]
    if service == "kms":  # the one key a function may use
        return [(f"kms:{operation}", "CredentialsKey")]
    if service == "dynamodb" and operation == "TransactWriteItems":
        return [(PUT, "StateTable"), (UPDATE, "StateTable"), (DELETE, "StateTable"), (PUT, "IdempotencyTable")]
    names = [aws.get("table_name") or aws.get("queue_url") or ""]
    if not names[0] and aws.get("table_names"):  # batch calls: "dict_keys(['test-StateTable'])"
        names = re.findall(r"'([^']+)'", str(aws["table_names"]))
    out = []
    for name in names:
        logical = name.rsplit("/", 1)[-1].split("-", 1)[-1].removesuffix(".fifo")  # the work queues are FIFO
        if service == "dynamodb" and aws.get("index_name"):
            logical += "/index"
        out.append((f"{service}:{operation}", logical))
    return out
