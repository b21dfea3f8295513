"""The DynamoDB table behind everything (single-table design, keys in docs/internals.md).

Only `connector.store` talks to DynamoDB. The subject stores load and save models; items go in as JSON-like
dicts (`Item`): floats become Decimal on the way in and Decimals become int/float on the way out, so
nothing above the store sees boto3's types.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError
from pydantic import BaseModel

from connector.aws import Aws
from connector.errors import ConcurrentUpdate
from connector.models.raw import JsonObject

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Item = JsonObject  # an item as the store reads and writes it (keys `pk`, `sk` and the model's fields)
KEYS = frozenset({"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "expires_at"})


def to_ddb(value: object) -> object:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: to_ddb(v) for k, v in value.items() if v is not None or k in ("error",)}
    if isinstance(value, list | tuple):
        return [to_ddb(v) for v in value]
    return value


def from_ddb(value: object) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_ddb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_ddb(v) for v in value]
    if isinstance(value, set):
        return sorted(from_ddb(v) for v in value)
    return value


def int_pk(integration_id: str) -> str:
    return f"INT#{integration_id}"


def model_item(model: BaseModel, *, exclude: set[str] | None = None) -> Item:
    """A model as the fields of an item (JSON types: datetimes as ISO strings, sets as lists)."""
    dumped: Item = model.model_dump(mode="json", exclude=exclude)
    return dumped


def load(model: type[M], item: Mapping[str, object] | None) -> M | None:
    """The model an item holds (the keys and TTL attribute ignored), or None for no item."""
    if item is None:
        return None
    return model.model_validate({k: v for k, v in item.items() if k not in KEYS})


class DynamoTable:
    """Thin access to the state table; counts the requests it makes (`calls`) for benchmarks."""

    def __init__(self, table_name: str, aws: Aws) -> None:
        self.name = table_name
        self.aws = aws
        self._table: Any = None
        self.calls = 0

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = self.aws.dynamodb.Table(self.name)
        return self._table

    # --- reads --------------------------------------------------------------------------------
    def get(self, pk: str, sk: str, *, consistent: bool = True) -> Item | None:
        self.calls += 1
        item = self.table.get_item(Key={"pk": pk, "sk": sk}, ConsistentRead=consistent).get("Item")
        return from_ddb(item) if item else None

    def batch_get(self, keys: list[tuple[str, str]]) -> list[Item]:
        out: list[Item] = []
        pending = [{"pk": pk, "sk": sk} for pk, sk in dict.fromkeys(keys)]
        while pending:
            chunk, pending = pending[:100], pending[100:]
            request = {self.name: {"Keys": chunk, "ConsistentRead": True}}
            while request:
                self.calls += 1
                reply = self.aws.dynamodb.batch_get_item(RequestItems=request)
                out.extend(from_ddb(i) for i in reply.get("Responses", {}).get(self.name, []))
                request = reply.get("UnprocessedKeys") or {}
        return out

    def query(
        self, pk: str, sk_prefix: str | None = None, *, limit: int | None = None, forward: bool = True
    ) -> Iterator[Item]:
        cond: ConditionBase = Key("pk").eq(pk)
        if sk_prefix:
            cond = cond & Key("sk").begins_with(sk_prefix)
        yield from self._paged({"KeyConditionExpression": cond, "ScanIndexForward": forward}, limit)

    def query_gsi(self, gsi1pk: str, sk_prefix: str | None = None, *, limit: int | None = None) -> Iterator[Item]:
        cond: ConditionBase = Key("gsi1pk").eq(gsi1pk)
        if sk_prefix:
            cond = cond & Key("gsi1sk").begins_with(sk_prefix)
        yield from self._paged({"IndexName": "gsi1", "KeyConditionExpression": cond}, limit)

    def query_gsi_page(
        self,
        partition: str,
        *,
        until: str,
        limit: int,
        start: Mapping[str, str] | None = None,
        index: str = "gsi1",
    ) -> tuple[list[Item], dict[str, str] | None]:
        """One page of the index partition's items with sort key <= `until`, in key order (`index` is `gsi1`
        or `gsi2`, keyed `<index>pk` / `<index>sk`); → (items, the key to go on from)."""
        kwargs: dict[str, object] = {
            "IndexName": index,
            "KeyConditionExpression": Key(f"{index}pk").eq(partition) & Key(f"{index}sk").lte(until),
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = dict(start)
        self.calls += 1
        reply = self.table.query(**kwargs)
        last = reply.get("LastEvaluatedKey")
        return [from_ddb(i) for i in reply.get("Items", [])], ({k: str(v) for k, v in last.items()} if last else None)

    def count(self, pk: str, sk_prefix: str) -> int:
        """How many items of a partition start with `sk_prefix` (Select COUNT: no item leaves DynamoDB)."""
        cond = Key("pk").eq(pk) & Key("sk").begins_with(sk_prefix)
        return self._count({"KeyConditionExpression": cond})

    def count_gsi(self, gsi1pk: str) -> int:
        return self._count({"IndexName": "gsi1", "KeyConditionExpression": Key("gsi1pk").eq(gsi1pk)})

    def _count(self, kwargs: dict[str, object]) -> int:
        total = 0
        while True:
            self.calls += 1
            reply = self.table.query(Select="COUNT", **kwargs)
            total += int(reply.get("Count", 0))
            if "LastEvaluatedKey" not in reply:
                return total
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def keys(self, pk: str, *, page: int = 1000) -> Iterator[tuple[str, str]]:
        """Every (pk, sk) of a partition, keys only (a removal reads no item's content)."""
        kwargs: dict[str, object] = {
            "KeyConditionExpression": Key("pk").eq(pk),
            "ProjectionExpression": "pk, sk",
            "Limit": page,
        }
        while True:
            self.calls += 1
            reply = self.table.query(**kwargs)
            for item in reply.get("Items", []):
                yield str(item["pk"]), str(item["sk"])
            if "LastEvaluatedKey" not in reply:
                return
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def delete_many(self, keys: list[tuple[str, str]]) -> None:
        with self.table.batch_writer() as batch:
            for pk, sk in keys:
                self.calls += 1
                batch.delete_item(Key={"pk": pk, "sk": sk})

    def _paged(self, kwargs: dict[str, object], limit: int | None) -> Iterator[Item]:
        seen = 0
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - seen
            self.calls += 1
            reply = self.table.query(**kwargs)
            for item in reply.get("Items", []):
                seen += 1
                yield from_ddb(item)
            if "LastEvaluatedKey" not in reply or (limit is not None and seen >= limit):
                return
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    # --- writes -------------------------------------------------------------------------------
    def put(self, item: Mapping[str, object], *, if_absent: bool = False, expected_version: int | None = None) -> bool:
        """Write an item. `if_absent`: only when no item has this key (→ False if one exists).
        `expected_version`: only when the stored `version` equals it (0 = absent) — otherwise
        ConcurrentUpdate, so read-modify-write never loses an update."""
        kwargs: dict[str, object] = {"Item": to_ddb(dict(item))}
        if if_absent:
            kwargs["ConditionExpression"] = Attr("pk").not_exists()
        elif expected_version is not None:
            kwargs["ConditionExpression"] = (
                Attr("pk").not_exists() if expected_version == 0 else Attr("version").eq(expected_version)
            )
        self.calls += 1
        try:
            self.table.put_item(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            if if_absent:
                return False
            raise ConcurrentUpdate(f"{item['pk']}/{item['sk']} changed meanwhile") from None
        return True

    def put_many(self, items: list[Item]) -> None:
        with self.table.batch_writer() as batch:
            for item in items:
                self.calls += 1
                batch.put_item(Item=to_ddb(item))

    def update_fields(
        self,
        pk: str,
        sk: str,
        fields: Mapping[str, object],
        *,
        remove: list[str] | None = None,
        must_exist: bool = True,
    ) -> bool:
        """Set (and remove) top-level attributes without a read; False when the item is absent."""
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": to_ddb(v) for i, v in enumerate(fields.values())}
        expr = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))) if fields else ""
        if remove:
            names.update({f"#r{i}": k for i, k in enumerate(remove)})
            expr += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        kwargs: dict[str, object] = {
            "Key": {"pk": pk, "sk": sk},
            "UpdateExpression": expr.strip(),
            "ExpressionAttributeNames": names,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if must_exist:
            kwargs["ConditionExpression"] = Attr("pk").exists()
        self.calls += 1
        try:
            self.table.update_item(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def add_counter(self, pk: str, sk: str, field: str, amount: int, *, ttl_seconds: int | None = None) -> int:
        """Atomic counter; returns the new value."""
        expr = "ADD #f :n"
        values: dict[str, object] = {":n": amount}
        names = {"#f": field}
        if ttl_seconds:
            expr += " SET expires_at = if_not_exists(expires_at, :exp)"
            values[":exp"] = int(time.time()) + ttl_seconds
        self.calls += 1
        reply = self.table.update_item(
            Key={"pk": pk, "sk": sk},
            UpdateExpression=expr,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="UPDATED_NEW",
        )
        return int(reply["Attributes"][field])

    def delete_if_version(self, pk: str, sk: str, *, expected_version: int) -> None:
        """Delete only if the stored `version` is still `expected_version` (→ ConcurrentUpdate otherwise);
        gone already counts as done."""
        self.calls += 1
        try:
            self.table.delete_item(
                Key={"pk": pk, "sk": sk},
                ConditionExpression=Attr("pk").not_exists() | Attr("version").eq(expected_version),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise ConcurrentUpdate(f"{pk}/{sk} changed meanwhile") from None

    def delete(self, pk: str, sk: str) -> None:
        self.calls += 1
        self.table.delete_item(Key={"pk": pk, "sk": sk})

    def delete_existing(self, pk: str, sk: str) -> bool:
        """Delete one item; → whether there was one (the same one call, its old attributes returned)."""
        self.calls += 1
        reply = self.table.delete_item(Key={"pk": pk, "sk": sk}, ReturnValues="ALL_OLD")
        return bool(reply.get("Attributes"))


def on_conflict(step: Callable[[int], T], *, attempts: int = 6, what: str = "item") -> T:
    """The one optimistic-concurrency loop: `step(attempt)` reads what it needs (afresh when `attempt` > 0),
    decides, and writes conditionally; a lost race (ConcurrentUpdate) runs it again, a few times."""
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.01 * attempt)  # let the winner finish before re-reading
        try:
            return step(attempt)
        except ConcurrentUpdate:
            if attempt == attempts - 1:
                raise ConcurrentUpdate(f"{what} kept changing") from None
    raise AssertionError("unreachable")


def is_expired(item: Mapping[str, object], now: float | None = None) -> bool:
    """DynamoDB deletes TTL items late (and moto never): always check the expiry in code."""
    exp = item.get("expires_at")
    return isinstance(exp, int | float) and float(exp) <= (now if now is not None else time.time())
