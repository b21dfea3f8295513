"""Create the template's tables, queues, secrets and KMS keys in moto, and resolve intrinsics to their local values.

Shared by the local stack (moto server mode) and tests/conftest.py (in-process `mock_aws`), so neither
repeats a key schema or a queue name: the template is the only place they are written down.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from tools.localstack.template import Template

ACCOUNT_ID = "123456789012"  # moto's default account
NO_VALUE = object()  # AWS::NoValue: drop the key


@dataclass
class Physical:
    """What `!Ref` and `!GetAtt` of one resource give locally."""

    ref: Any
    attrs: dict[str, Any] = field(default_factory=dict)


class UnsupportedIntrinsic(ValueError):
    pass


def physical_name(stack_name: str, logical_id: str) -> str:
    """Deterministic local names (CloudFormation would add a random suffix): `<stack>-<LogicalId>`."""
    return f"{stack_name}-{logical_id}"


def queue_arn(region: str, name: str) -> str:
    return f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"


def table_arn(region: str, name: str) -> str:
    return f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{name}"


class Resolver:
    """Evaluates Ref/GetAtt/Sub/Join/If/Select/Split and conditions against local physical resources."""

    def __init__(
        self,
        template: Template,
        physical: dict[str, Physical],
        *,
        stack_name: str,
        region: str,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.physical = physical
        self.pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local",
        }
        self.parameters = {name: self._parameter_default(spec) for name, spec in template.parameters.items()}
        self.parameters.update(parameters or {})

    @staticmethod
    def _parameter_default(spec: dict[str, Any]) -> Any:
        default = spec.get("Default", "")
        if str(spec.get("Type", "")).startswith(("CommaDelimitedList", "List<")):
            return [part.strip() for part in str(default).split(",")] if default != "" else [""]
        return default

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name].ref
        raise UnsupportedIntrinsic(f"no local value for !Ref {name}")

    def get_att(self, resource: str, attribute: str) -> Any:
        phys = self.physical.get(resource)
        if phys is None or attribute not in phys.attrs:
            raise UnsupportedIntrinsic(f"no local value for !GetAtt {resource}.{attribute}")
        return phys.attrs[attribute]

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.conditions[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(resource, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                delimiter, items = arg
                return str(delimiter).join(str(v) for v in self.resolve(items))
            if key == "Fn::If":
                name, if_true, if_false = arg
                return self.resolve(if_true if self.condition(name) else if_false)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                delimiter, source = arg
                return str(self.resolve(source)).split(delimiter)
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key.startswith("Fn::"):
                raise UnsupportedIntrinsic(f"{key} is not emulated locally")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        values = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):  # ${!Literal} is an escaped "${Literal}"
                return "${" + expr[1:] + "}"
            if expr in values:
                return str(values[expr])
            if "." in expr and not expr.startswith("AWS::"):
                resource, attribute = expr.split(".", 1)
                return str(self.get_att(resource, attribute))
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def env_string(value: Any) -> str:
    """Lambda environment values are strings: render numbers and booleans the way CloudFormation does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def function_environment(template: Template, resolver: Resolver, function_id: str) -> dict[str, str]:
    fn = template.functions[function_id]
    resolved = resolver.resolve(fn.environment)
    return {name: env_string(value) for name, value in resolved.items()}


# ------------------------------------------------------------------------------------------- physical ids
def predicted_physical(template: Template, *, stack_name: str, region: str, sqs_endpoint: str) -> dict[str, Physical]:
    """Names/URLs/ARNs the create_* functions below will produce, known before anything is created.

    tests/conftest.py needs them at import time (before any handler import reads the environment);
    `sqs_endpoint` is where moto builds queue URLs (`https://sqs.<region>.amazonaws.com` in-process).
    """
    physical: dict[str, Physical] = {}
    for lid in template.tables:
        name = physical_name(stack_name, lid)
        physical[lid] = Physical(name, {"Arn": table_arn(region, name)})
    for lid in template.queues:
        name = physical_name(stack_name, lid)
        url = f"{sqs_endpoint.rstrip('/')}/{ACCOUNT_ID}/{name}"
        physical[lid] = Physical(url, {"Arn": queue_arn(region, name), "QueueName": name, "QueueUrl": url})
    for lid in template.functions:
        name = physical_name(stack_name, lid)
        physical[lid] = Physical(name, {"Arn": f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"})
    for lid in template.of_type("AWS::Serverless::Api"):
        physical[lid] = Physical("local", {"RootResourceId": "root"})
    for lid in template.of_type("AWS::SNS::Topic"):
        name = physical_name(stack_name, lid)
        arn = f"arn:aws:sns:{region}:{ACCOUNT_ID}:{name}"
        physical[lid] = Physical(arn, {"TopicArn": arn, "TopicName": name})
    # a key's id is random (known once created); its alias is a name, which the environment uses
    pseudo = Resolver(template, physical, stack_name=stack_name, region=region)
    for lid, res in template.of_type("AWS::KMS::Alias").items():
        physical[lid] = Physical(str(pseudo.resolve(res["Properties"]["AliasName"])))
    return physical


def secret_name(template: Template, resolver: Resolver, logical_id: str) -> str:
    name = (template.secrets[logical_id].get("Properties") or {}).get("Name")
    return (
        str(resolver.resolve(name))
        if name is not None
        else physical_name(resolver.pseudo["AWS::StackName"], logical_id)
    )


# ------------------------------------------------------------------------------------------- creation
def create_tables(dynamodb: Any, template: Template, *, stack_name: str, replace: bool = False) -> dict[str, str]:
    """Create every AWS::DynamoDB::Table (keys, GSIs, LSIs, TTL); returns logical id → table name."""
    names: dict[str, str] = {}
    existing = set(dynamodb.list_tables().get("TableNames", [])) if replace else set()
    for lid, res in template.tables.items():
        props = res.get("Properties") or {}
        name = physical_name(stack_name, lid)
        if name in existing:
            dynamodb.delete_table(TableName=name)
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
        }
        if props.get("BillingMode", "PROVISIONED") == "PAY_PER_REQUEST":
            kwargs["BillingMode"] = "PAY_PER_REQUEST"
        else:
            kwargs["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                kwargs[key] = [
                    {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                    for index in props[key]
                ]
                if key == "GlobalSecondaryIndexes" and "BillingMode" not in kwargs:
                    for index in kwargs[key]:
                        index["ProvisionedThroughput"] = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        if props.get("StreamSpecification"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        dynamodb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        names[lid] = name
    return names


# Queue properties that map 1:1 onto SQS attributes (SSE is meaningless locally and is skipped).
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "ContentBasedDeduplication",
)


def _queue_order(template: Template) -> list[str]:
    """Dead-letter queues first: a redrive policy needs its target's ARN."""
    queues = template.queues

    def target(lid: str) -> str | None:
        redrive = (queues[lid].get("Properties") or {}).get("RedrivePolicy") or {}
        arn = redrive.get("deadLetterTargetArn")
        return arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else None

    ordered: list[str] = []
    for lid in sorted(queues, key=lambda q: target(q) is not None):
        if lid not in ordered:
            dlq = target(lid)
            if dlq and dlq not in ordered:
                ordered.append(dlq)
            ordered.append(lid)
    return ordered


def create_queues(sqs: Any, template: Template, *, stack_name: str, replace: bool = False) -> dict[str, str]:
    """Create every AWS::SQS::Queue with its redrive policy; returns logical id → queue URL."""
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    existing = set(sqs.list_queues(QueueNamePrefix=f"{stack_name}-").get("QueueUrls", [])) if replace else set()
    for lid in _queue_order(template):
        props = template.queues[lid].get("Properties") or {}
        name = physical_name(stack_name, lid) + (".fifo" if props.get("FifoQueue") else "")
        for url in existing:
            if url.rsplit("/", 1)[-1] == name:
                sqs.delete_queue(QueueUrl=url)
        attributes = {key: env_string(props[key]) for key in _QUEUE_ATTRIBUTES if key in props}
        if props.get("FifoQueue"):
            attributes["FifoQueue"] = "true"
        redrive = props.get("RedrivePolicy")
        if redrive:
            dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arns[dlq], "maxReceiveCount": int(redrive["maxReceiveCount"])}
            )
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arns[lid] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        urls[lid] = url
    return urls


def create_secrets(
    secretsmanager: Any, template: Template, resolver: Resolver, values: dict[str, str], *, replace: bool = False
) -> dict[str, str]:
    """Create the template's secrets with the given values (GenerateSecretString is replaced locally);

    returns logical id → ARN. Secrets without a value in `values` get a fixed placeholder string.
    """
    arns: dict[str, str] = {}
    for lid in template.secrets:
        name = secret_name(template, resolver, lid)
        if replace:
            with contextlib.suppress(secretsmanager.exceptions.ResourceNotFoundException):
                secretsmanager.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        arns[lid] = secretsmanager.create_secret(Name=name, SecretString=values.get(lid, "local-secret"))["ARN"]
    return arns


def create_keys(kms: Any, template: Template, resolver: Resolver) -> dict[str, str]:
    """Every AWS::KMS::Key with its aliases (an alias already there keeps its key: ciphertexts stay
    readable across local stacks sharing one moto); returns alias logical id → key ARN."""
    existing = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases().get("Aliases", [])}
    arns: dict[str, str] = {}
    created: dict[str, str] = {}
    for lid, res in template.of_type("AWS::KMS::Alias").items():
        props = res["Properties"]
        name = str(resolver.resolve(props["AliasName"]))
        key_lid = props["TargetKeyId"]["Ref"]
        key_id = existing.get(name)
        if key_id is None:
            if key_lid not in created:
                description = str(resolver.resolve(template.resources[key_lid]["Properties"].get("Description", "")))
                created[key_lid] = kms.create_key(Description=description)["KeyMetadata"]["KeyId"]
            key_id = created[key_lid]
            kms.create_alias(AliasName=name, TargetKeyId=key_id)
        arns[lid] = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    return arns
