"""The Powertools idempotency table (IdempotencyTable in template.yaml), behind the store like all DynamoDB."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from connector.config import env


@cache
def _client() -> Any:
    return boto3.client("dynamodb")


@cache
def persistence_layer() -> DynamoDBPersistenceLayer:
    """One persistence layer per container, built on first use (after the environment is set)."""
    return DynamoDBPersistenceLayer(table_name=env().idempotency_table, boto3_client=_client())


def reset() -> None:
    persistence_layer.cache_clear()
    _client.cache_clear()
