"""Lambda events as AWS builds them: API Gateway REST (v1 proxy), SQS batches, EventBridge Scheduler."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from tools.localstack.resources import ACCOUNT_ID
from tools.localstack.template import ApiRoute


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str = "local-function"
    memory_limit_in_mb: int = 512
    timeout_seconds: float = 30.0
    region: str = "eu-central-1"
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _now_fields() -> tuple[str, int]:
    now = datetime.now(UTC)
    return now.strftime("%d/%b/%Y:%H:%M:%S +0000"), int(now.timestamp() * 1000)


def body_fields(raw: bytes) -> tuple[str | None, bool]:
    """API Gateway passes text bodies as is and binary ones base64-encoded (isBase64Encoded: true)."""
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def api_event(
    request: Request,
    route: ApiRoute,
    path: str,
    path_parameters: dict[str, str],
    *,
    stage: str,
    server_port: int,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy event for `request`, as API Gateway builds it."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        multi_headers.setdefault(name, []).append(value)
        headers[name] = value  # API Gateway keeps the last value in `headers`
    source_ip = request.remote_addr or "127.0.0.1"
    # API Gateway adds these; handlers build absolute URLs (webhook URLs) from Host + X-Forwarded-Proto.
    for name, value in (
        ("X-Forwarded-For", source_ip),
        ("X-Forwarded-Port", str(server_port)),
        ("X-Forwarded-Proto", request.scheme),
    ):
        if name not in headers:
            headers[name] = value
            multi_headers[name] = [value]
    query = {key: values[-1] for key, values in request.args.lists()}
    multi_query = {key: list(values) for key, values in request.args.lists()}
    body, is_base64 = body_fields(request.get_data(cache=True))
    request_time, epoch_ms = _now_fields()
    request_id = str(uuid.uuid4())
    domain = request.host  # "127.0.0.1:<port>": what clients used, so absolute URLs built from it work
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": is_base64,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "extendedRequestId": request_id,
            "httpMethod": request.method,
            "path": f"/{stage}{path}",
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "requestId": request_id,
            "requestTime": request_time,
            "requestTimeEpoch": epoch_ms,
            "resourceId": "local",
            "resourcePath": route.path,
            "stage": stage,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": request.headers.get("User-Agent"),
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "apiKey": None,
                "accessKey": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
            },
        },
    }


def gateway_error(status: int, message: str) -> Response:
    """API Gateway's own error replies (e.g. 502 "Internal server error" when the handler raises)."""
    return Response(
        '{"message": "%s"}' % message,  # noqa: UP031 - fixed messages, no user input
        status=status,
        content_type="application/json",
        headers={
            "x-amzn-ErrorType": "InternalServerErrorException"
            if status >= 500
            else "MissingAuthenticationTokenException"
        },
    )


# Which customisable gateway response covers each reply the local stack makes in API Gateway's name.
_RESPONSE_TYPES = {403: "MISSING_AUTHENTICATION_TOKEN", 502: "INTEGRATION_FAILURE"}


def templated_gateway_error(responses: dict[str, dict[str, Any]], status: int, message: str) -> Response:
    """API Gateway's own reply as the template customises it (`GatewayResponses`), else its default.

    The type's own entry wins, then DEFAULT_4XX / DEFAULT_5XX; `$context.error.messageString` (the quoted
    message) is the only mapping variable rendered.
    """
    kind = _RESPONSE_TYPES.get(status)
    custom = responses.get(kind or "") or responses.get("DEFAULT_4XX" if status < 500 else "DEFAULT_5XX")
    if not custom:
        return gateway_error(status, message)
    template = (custom.get("ResponseTemplates") or {}).get("application/json")
    code = int(custom.get("StatusCode") or status)
    if template is None:
        return gateway_error(code, message)
    body = str(template).replace("$context.error.messageString", json.dumps(message))
    return Response(body, status=code, content_type="application/json")


def proxy_response(result: Any) -> Response:
    """Turn a proxy integration reply into an HTTP response; a malformed reply is a 502, as in AWS."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int | str):
        return gateway_error(502, "Internal server error")
    headers = Headers()
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            headers.add(name, str(value))
    for name, value in (result.get("headers") or {}).items():
        if name not in headers:
            headers.add(name, str(value))
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    if "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"  # API Gateway's default for proxy replies
    return Response(raw, status=int(result["statusCode"]), headers=headers)


def sqs_record(message: dict[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One `Records[]` entry of an SQS event from a boto3 `receive_message` message."""
    attributes = message.get("Attributes", {})
    message_attributes = {}
    for name, attr in (message.get("MessageAttributes") or {}).items():
        binary = attr.get("BinaryValue")
        message_attributes[name] = {
            "stringValue": attr.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode("ascii") if binary is not None else None,
            "stringListValues": attr.get("StringListValues", []),
            "binaryListValues": [base64.b64encode(v).decode("ascii") for v in attr.get("BinaryListValues", [])],
            "dataType": attr.get("DataType", "String"),
        }
    keep = (
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
        "MessageGroupId",
        "MessageDeduplicationId",
        "SequenceNumber",
        "AWSTraceHeader",
    )
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: attributes[k] for k in keep if k in attributes},
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def schedule_event(schedule_arn: str, region: str) -> dict[str, Any]:
    """EventBridge Scheduler's default payload when the target has no Input."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [schedule_arn],
        "detail": "{}",
    }
