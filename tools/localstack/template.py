"""Read template.yaml into what the local stack and the tests need: functions, routes, queues, schedules.

PyYAML (C loader when available) with constructors for the CloudFormation short forms: cfn-lint's decoder
would do the same but importing cfn-lint costs ~2.5 s, which would double the local stack's start time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:  # the C loader parses the template ~10x faster; fall back when libyaml is absent
    _BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _BaseLoader = yaml.SafeLoader


class CfnLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that turns `!Ref x` into `{"Ref": x}`, `!GetAtt a.b` into `{"Fn::GetAtt": [a, b]}`, etc."""


def _construct(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct)


def parse_template(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=CfnLoader)  # CfnLoader derives from SafeLoader: no arbitrary objects
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError("not a CloudFormation/SAM template (no Resources)")
    return data


# ------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class ApiRoute:
    function_id: str
    event_name: str
    path: str  # as in the template: /integrations/{proxy+}
    method: str  # upper case; ANY matches every method
    pattern: re.Pattern[str]
    # sort key: literal segments first, then {param}, greedy {proxy+} last; exact methods before ANY
    priority: tuple[int, ...]


@dataclass(frozen=True)
class SqsSource:
    function_id: str
    event_name: str
    queue_id: str
    batch_size: int
    batching_window: int
    report_batch_item_failures: bool
    max_concurrency: int | None


@dataclass(frozen=True)
class Schedule:
    function_id: str
    event_name: str
    expression: str
    interval_seconds: float | None  # None for cron() expressions: on demand only
    input: Any
    enabled: bool
    name: Any  # the schedule's Name property (may be an intrinsic)


@dataclass
class Function:
    logical_id: str
    code_uri: str
    handler: str
    timeout: int
    memory: int
    environment: dict[str, Any]  # Globals merged with the function's own, values unresolved
    layers: list[Any]
    routes: list[ApiRoute] = field(default_factory=list)
    sqs_sources: list[SqsSource] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)

    def handler_path(self, root: Path) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return root / self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_function(self) -> str:
        return self.handler.rpartition(".")[2]


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def rate_seconds(expression: str) -> float | None:
    """Seconds between runs of a `rate(...)` expression; None for `cron(...)`/`at(...)` (not timed locally)."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _path_pattern(path: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
    parts = [p for p in path.strip("/").split("/") if p]
    regex, literal, params, greedy = "", 0, 0, 0
    for part in parts:
        if part.startswith("{") and part.endswith("+}"):
            regex += f"/(?P<{part[1:-2]}>.+)"
            greedy += 1
        elif part.startswith("{") and part.endswith("}"):
            regex += f"/(?P<{part[1:-1]}>[^/]+)"
            params += 1
        else:
            regex += "/" + re.escape(part)
            literal += 1
    return re.compile(f"^{regex or '/'}$"), (greedy, -literal, params)


def _sqs_source(function_id: str, name: str, queue: Any, props: dict[str, Any]) -> SqsSource:
    """A function's SQS event (`Queue`) or an AWS::Lambda::EventSourceMapping (`EventSourceArn`)."""
    queue_id = queue["Fn::GetAtt"][0] if isinstance(queue, dict) and "Fn::GetAtt" in queue else None
    if queue_id is None:
        raise ValueError(f"{name}: the SQS queue must be !GetAtt <queue>.Arn locally")
    return SqsSource(
        function_id=function_id,
        event_name=name,
        queue_id=queue_id,
        batch_size=int(props.get("BatchSize", 10)),
        batching_window=int(props.get("MaximumBatchingWindowInSeconds", 0)),
        report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        max_concurrency=(props.get("ScalingConfig") or {}).get("MaximumConcurrency"),
    )


class Template:
    """The parts of a SAM template the local stack emulates."""

    def __init__(self, data: dict[str, Any], root: Path) -> None:
        self.data = data
        self.root = root
        self.resources: dict[str, dict[str, Any]] = data["Resources"]
        self.parameters: dict[str, dict[str, Any]] = data.get("Parameters", {}) or {}
        self.conditions: dict[str, Any] = data.get("Conditions", {}) or {}
        globals_fn = (data.get("Globals") or {}).get("Function") or {}
        self.functions: dict[str, Function] = {}
        for lid, res in self.resources.items():
            if res.get("Type") == "AWS::Serverless::Function":
                self.functions[lid] = self._function(lid, res.get("Properties") or {}, globals_fn)
        for lid, res in self.of_type("AWS::Lambda::EventSourceMapping").items():
            props = res.get("Properties") or {}
            target = props.get("FunctionName")
            function_id = target.get("Ref") if isinstance(target, dict) else None
            if function_id not in self.functions:
                raise ValueError(f"{lid}: FunctionName must be !Ref <function> of this template locally")
            self.functions[function_id].sqs_sources.append(
                _sqs_source(function_id, lid, props.get("EventSourceArn"), props)
            )

    @classmethod
    def load(cls, path: str | Path) -> Template:
        path = Path(path)
        return cls(parse_template(path.read_text(encoding="utf-8")), path.resolve().parent)

    # ---------------------------------------------------------------- resources by type
    def of_type(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == type_name}

    @property
    def tables(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::DynamoDB::Table")

    @property
    def queues(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::SQS::Queue")

    @property
    def secrets(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::SecretsManager::Secret")

    @property
    def routes(self) -> list[ApiRoute]:
        routes = [r for fn in self.functions.values() for r in fn.routes]
        return sorted(routes, key=lambda r: (r.priority, r.method == "ANY"))

    @property
    def sqs_sources(self) -> list[SqsSource]:
        return [s for fn in self.functions.values() for s in fn.sqs_sources]

    @property
    def schedules(self) -> list[Schedule]:
        return [s for fn in self.functions.values() for s in fn.schedules]

    def stage_name(self, parameters: dict[str, Any] | None = None) -> str:
        """The stage of the first AWS::Serverless::Api (a literal or a Ref to a parameter's default)."""
        for res in self.of_type("AWS::Serverless::Api").values():
            stage = (res.get("Properties") or {}).get("StageName")
            if isinstance(stage, str):
                return stage
            if isinstance(stage, dict) and "Ref" in stage:
                name = stage["Ref"]
                if parameters and name in parameters:
                    return str(parameters[name])
                return str(self.parameters.get(name, {}).get("Default", "local"))
        return "local"

    @property
    def gateway_responses(self) -> dict[str, dict[str, Any]]:
        """`GatewayResponses` of the first AWS::Serverless::Api (API Gateway's own replies), by type."""
        for res in self.of_type("AWS::Serverless::Api").values():
            return dict((res.get("Properties") or {}).get("GatewayResponses") or {})
        return {}

    def layer_paths(self, fn: Function) -> list[Path]:
        """Where each layer's Python code sits (Lambda mounts `<layer>/python` as /opt/python)."""
        paths = []
        for layer in fn.layers:
            lid = layer.get("Ref") if isinstance(layer, dict) else None
            res = self.resources.get(lid or "")
            if res and res.get("Type") == "AWS::Serverless::LayerVersion":
                content = (res.get("Properties") or {}).get("ContentUri")
                if isinstance(content, str):
                    paths.append(self.root / content / "python")
        return paths

    # ---------------------------------------------------------------- parsing
    def _function(self, lid: str, props: dict[str, Any], globals_fn: dict[str, Any]) -> Function:
        def prop(name: str, default: Any = None) -> Any:
            return props.get(name, globals_fn.get(name, default))

        env: dict[str, Any] = dict(((globals_fn.get("Environment") or {}).get("Variables")) or {})
        env.update(((props.get("Environment") or {}).get("Variables")) or {})
        layers = list(globals_fn.get("Layers") or []) + list(props.get("Layers") or [])
        fn = Function(
            logical_id=lid,
            code_uri=str(prop("CodeUri", ".")),
            handler=str(prop("Handler")),
            timeout=int(prop("Timeout", 3)),
            memory=int(prop("MemorySize", 128)),
            environment=env,
            layers=layers,
        )
        for event_name, event in (props.get("Events") or {}).items():
            kind, ep = event.get("Type"), event.get("Properties") or {}
            if kind in ("Api", "HttpApi"):
                path, method = str(ep.get("Path", "/")), str(ep.get("Method", "ANY")).upper()
                pattern, priority = _path_pattern(path)
                method = "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method
                fn.routes.append(ApiRoute(lid, event_name, path, method, pattern, priority))
            elif kind == "SQS":
                fn.sqs_sources.append(_sqs_source(lid, event_name, ep.get("Queue"), ep))
            elif kind in ("Schedule", "ScheduleV2"):
                expression = str(ep.get("ScheduleExpression", ""))
                state = ep.get("State", "ENABLED")
                enabled = bool(ep.get("Enabled", True)) and state != "DISABLED"
                raw_input = ep.get("Input")
                fn.schedules.append(
                    Schedule(
                        function_id=lid,
                        event_name=event_name,
                        expression=expression,
                        interval_seconds=rate_seconds(expression),
                        input=raw_input,
                        enabled=enabled,
                        name=ep.get("Name"),
                    )
                )
        return fn
