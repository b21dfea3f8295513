"""The container's boto3 handles, each created on first use: a client costs ~110 ms, a resource ~25 ms.

Built once per container with the `Runtime`; tests share one across the session (one moto context). boto3's
handles are untyped at runtime (the stubs are a development dependency), hence `Any` here and only here.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3


class Aws:
    def __init__(self, session: boto3.session.Session | None = None) -> None:
        # None: boto3's default session, which the benchmark's call counter hooks into
        self._session = session

    @cached_property
    def dynamodb(self) -> Any:
        """The DynamoDB resource (tables, batch reads)."""
        return self._session.resource("dynamodb") if self._session is not None else boto3.resource("dynamodb")

    @cached_property
    def dynamodb_client(self) -> Any:
        """The low-level DynamoDB client (transactions: `connector.store.unit`)."""
        return self._session.client("dynamodb") if self._session is not None else boto3.client("dynamodb")

    @cached_property
    def sqs(self) -> Any:
        return self._session.client("sqs") if self._session is not None else boto3.client("sqs")

    @cached_property
    def secretsmanager(self) -> Any:
        session = self._session
        return session.client("secretsmanager") if session is not None else boto3.client("secretsmanager")

    @cached_property
    def kms(self) -> Any:
        """KMS: the integrations' credentials are sealed and opened with the stack's key."""
        return self._session.client("kms") if self._session is not None else boto3.client("kms")
