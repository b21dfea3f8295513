"""events/env.json for `sam local invoke -e events/<file>.json --env-vars events/env.json` (`make sam-env`).

Each function's environment as template.yaml gives it, resolved for the stack name the local stack uses
(`local`): tables `local-StateTable`…, queues `…/123456789012/local-DealEventsQueue`…, the secrets prefix
`local`. tests/test_events.py fails when the committed file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tools.localstack.resources import Physical, Resolver, function_environment, predicted_physical, secret_name
from tools.localstack.template import Template

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "events" / "env.json"
STACK_NAME = "local"  # what LocalStack (make run) names its resources
REGION = "eu-central-1"
SQS_ENDPOINT = f"https://sqs.{REGION}.amazonaws.com"


def build(template: Template | None = None) -> dict[str, Any]:
    template = template or Template.load(ROOT / "template.yaml")
    physical = predicted_physical(template, stack_name=STACK_NAME, region=REGION, sqs_endpoint=SQS_ENDPOINT)
    resolver = Resolver(template, physical, stack_name=STACK_NAME, region=REGION)
    for lid in template.secrets:
        name = secret_name(template, resolver, lid)
        physical[lid] = Physical(name, {"Id": name})
    return {lid: function_environment(template, resolver, lid) for lid in sorted(template.functions)}


def main() -> int:
    OUT.write_text(json.dumps(build(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
