"""Issue 9, defect 7: retries end before the function's timeout, leaving room to park or fail the record.

A hung AlfaCRM (every request waits out its read timeout) on a fake clock: the text worker's batch of ten
requests returns inside the function's 60 s, every record failed (SQS tries it later), rather than the Lambda
timing out with retries of 4 × 20 s per call still to go.
"""

from __future__ import annotations

import json

import httpx
import pytest
from connector.alfacrm.client import AlfaCrmClient
from connector.errors import AlfaCrmUnavailable
from connector.retry import Deadline, RateLimiter, RetryPolicy
from connector.runtime import install
from connector.uis.client import UisClient

from tests.conftest import TEMPLATE, runtime
from tests.handlers import load_handler
from tests.support import sandbox_integration
from tests.texts.conftest import Factory, texts_settings
from tools.localstack.events import LambdaContext
from tools.sandboxes.uis import DEFAULT_TOKEN, UisSandbox

TEXT_WORKER_TIMEOUT = float(TEMPLATE.functions["TextWorkerFunction"].timeout)


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class FakeContext(LambdaContext):
    clock: FakeTime | None = None

    def get_remaining_time_in_millis(self) -> int:
        assert self.clock is not None
        return max(0, int((self.timeout_seconds - self.clock.t) * 1000))


def hung(clock: FakeTime) -> httpx.MockTransport:
    """AlfaCRM accepting connections and never answering: each request costs its whole read timeout."""

    def handle(request: httpx.Request) -> httpx.Response:
        clock.t += float(request.extensions["timeout"]["read"])
        raise httpx.ReadTimeout("no answer", request=request)

    return httpx.MockTransport(handle)


def request_record(i: int, iid: str) -> dict:
    body = {
        "integration_id": iid,
        "event": "offline_message",
        "payload": {"offline_message_id": 700 + i, "communication_id": 900 + i, "visitor_phone_number": "79161234567"},
    }
    return {
        "messageId": f"m{i}",
        "receiptHandle": f"r{i}",
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:test-TextEventsQueue",
        "awsRegion": "eu-central-1",
    }


def test_a_worker_with_a_hung_alfacrm_fails_its_records_before_its_timeout():
    clock = FakeTime()
    rt = runtime(monotonic=clock.monotonic)
    retry = RetryPolicy(deadline=rt.deadline, sleep=clock.sleep)  # the production policy, on the fake clock
    alfacrm = AlfaCrmClient(
        "http://alfacrm.test",
        "api@school.ru",
        "key",
        http=httpx.Client(transport=hung(clock)),
        retry=retry,
        limiter=RateLimiter(0),
        clock=clock.monotonic,
    )
    uis = UisClient(
        "http://uis.test/v2.0", DEFAULT_TOKEN, http=httpx.Client(transport=httpx.WSGITransport(app=UisSandbox().app))
    )
    rt.clients = Factory(alfacrm, uis)
    install(rt)
    sandbox_integration(
        rt.store,
        texts_settings(),
        hostname="http://alfacrm.test",
        email="api@school.ru",
        api_url="http://uis.test/v2.0",
        timezone="Europe/Moscow",
    )
    context = FakeContext(function_name="test-TextWorkerFunction", timeout_seconds=TEXT_WORKER_TIMEOUT)
    context.clock = clock

    # ten requests needing AlfaCRM, and one of a school that is gone (skipped: not the whole batch fails)
    records = [request_record(i, "int1") for i in range(10)] + [request_record(10, "gone")]
    reply = load_handler("text_worker")({"Records": records}, context)

    assert clock.t < TEXT_WORKER_TIMEOUT, f"the batch ran {clock.t:.0f}s of a {TEXT_WORKER_TIMEOUT:.0f}s function"
    assert sorted(f["itemIdentifier"] for f in reply["batchItemFailures"]) == sorted(f"m{i}" for i in range(10))
    assert alfacrm.calls >= 2  # it did try (and retry) AlfaCRM while there was time


def test_no_attempt_or_backoff_starts_past_the_budget():
    clock = FakeTime()
    deadline = Deadline(clock.monotonic)
    policy = RetryPolicy(attempts=10, deadline=deadline, sleep=clock.sleep)
    calls = []

    def down() -> None:
        calls.append(clock.t)
        clock.t += 3.0  # each attempt takes 3 s and fails
        raise AlfaCrmUnavailable("down")

    with deadline.within(10.0), pytest.raises(AlfaCrmUnavailable):
        policy.run(down)
    assert len(calls) < 10
    assert clock.t <= 10.0 + 3.0  # the last attempt started inside the budget
    assert all(t < 10.0 for t in calls)
    # outside a budget the attempt cap alone applies
    calls.clear()
    with pytest.raises(AlfaCrmUnavailable):
        RetryPolicy(attempts=3, deadline=deadline, sleep=clock.sleep).run(down)
    assert len(calls) == 3
