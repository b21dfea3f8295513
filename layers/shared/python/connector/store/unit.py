"""One event's state access in few DynamoDB requests: a unit of work over the state table.

`UnitTable` is a `DynamoTable` that serves reads from what it has already read (`prefetch`: the items one
event needs and its idempotency record, in one BatchGetItem over both tables) and keeps the conditional
writes (`put` with `expected_version`, `delete_if_version`) until `commit`, which sends them with the event's
idempotency record as one TransactWriteItems: all or nothing. A lost race (any condition failing) raises
ConcurrentUpdate, and the caller runs the event again on a fresh unit; nothing was written. An idempotency
record that another delivery wrote first raises `AlreadyProcessed`. A commit whose answer is lost is retried
by botocore with the same client request token (DynamoDB answers a repeated token from the first attempt, 10
minutes), and a redelivery reads the idempotency record back: the ambiguous write is resolved by reading.

Reads see the unit's own writes (an `update` excepted: its item reads as before it). Writes the unit cannot
hold (claims answering at once, counters, batch writes) go straight to the table, as on `DynamoTable`. What
only counts once the writes landed (a container's memory of a write) waits in `after_commit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from connector.errors import ConcurrentUpdate
from connector.store.base import DynamoTable, Item, from_ddb, to_ddb

TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems
_SERIALIZER = TypeSerializer()


class AlreadyProcessed(Exception):
    """The event's idempotency record exists: another delivery of it committed first."""


@dataclass(frozen=True)
class OnceRecord:
    """The idempotency record an event's commit writes: `id` (the event's key), what it did, until when."""

    id: str
    data: str  # the outcome as JSON, returned to a repeated delivery
    expiration: int  # epoch s (the table's TTL attribute)


@dataclass
class _Write:
    key: tuple[str, str]
    item: Item | None  # None: a delete
    condition: str | None
    values: dict[str, object]  # the condition's and the update's
    update: str | None = None  # an UpdateExpression: the item is updated in place, not replaced


def _serialize(item: Mapping[str, object]) -> dict[str, Any]:
    return {k: _SERIALIZER.serialize(v) for k, v in item.items()}


class UnitTable(DynamoTable):
    """The state table for one unit of work (module doc). Built by `Store.unit_of_work()`."""

    def __init__(self, base: DynamoTable, idempotency_table: str) -> None:
        self.name, self.aws, self._table = base.name, base.aws, base._table
        self.base = base
        self.idempotency_table = idempotency_table
        self._read: dict[tuple[str, str], Item | None] = {}
        self._staged: dict[tuple[str, str], _Write] = {}
        self._after: list[Callable[[], None]] = []

    @property
    def calls(self) -> int:
        return self.base.calls

    @calls.setter
    def calls(self, value: int) -> None:
        self.base.calls = value

    @property
    def table(self) -> Any:
        return self.base.table

    # --- reads --------------------------------------------------------------------------------
    def prefetch(self, keys: list[tuple[str, str]], *, once_id: str | None = None) -> Item | None:
        """Read these items (and the idempotency record `once_id`) in one BatchGetItem (→ the record, if any
        and not expired). Absent items are remembered as absent."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._read and k not in self._staged]
        request: dict[str, Any] = {}
        if wanted:
            request[self.name] = {"Keys": [{"pk": pk, "sk": sk} for pk, sk in wanted], "ConsistentRead": True}
        if once_id is not None:
            request[self.idempotency_table] = {"Keys": [{"id": once_id}], "ConsistentRead": True}
        if len(wanted) > TRANSACTION_ITEMS - 1 or not request:
            self.batch_get(wanted)
            return None
        record: Item | None = None
        self._read.update({k: None for k in wanted})
        while request:
            self.base.calls += 1
            reply = self.aws.dynamodb.batch_get_item(RequestItems=request)
            responses = reply.get("Responses", {})
            for raw in responses.get(self.name, []):
                item = from_ddb(raw)
                self._read[(str(item["pk"]), str(item["sk"]))] = item
            for raw in responses.get(self.idempotency_table, []):
                record = from_ddb(raw)
            request = reply.get("UnprocessedKeys") or {}
        expiration = record.get("expiration") if record is not None else None
        if isinstance(expiration, int | float) and expiration <= time.time():
            return None  # DynamoDB's TTL deletes late
        return record

    def get(self, pk: str, sk: str, *, consistent: bool = True) -> Item | None:
        key = (pk, sk)
        if key in self._staged and self._staged[key].update is None:
            return self._staged[key].item
        if key not in self._read:
            self._read[key] = self.base.get(pk, sk, consistent=consistent)
        return self._read[key]

    def batch_get(self, keys: list[tuple[str, str]]) -> list[Item]:
        missing = [k for k in dict.fromkeys(keys) if k not in self._read and k not in self._staged]
        if missing:
            self._read.update({k: None for k in missing})
            for item in self.base.batch_get(missing):
                self._read[(str(item["pk"]), str(item["sk"]))] = item
        found = [self.get(pk, sk) for pk, sk in dict.fromkeys(keys)]
        return [item for item in found if item is not None]

    # --- writes held until the commit -----------------------------------------------------------
    def put(self, item: Mapping[str, object], *, if_absent: bool = False, expected_version: int | None = None) -> bool:
        if if_absent:
            return self.base.put(item, if_absent=True)  # the caller needs the answer now
        key = (str(item["pk"]), str(item["sk"]))
        held = cast(Item, dict(item))
        if expected_version is None:
            self._stage(key, held, None, {})
        elif expected_version == 0:
            self._stage(key, held, "attribute_not_exists(#pk)", {})
        else:
            self._stage(key, held, "#version = :v", {":v": expected_version})
        return True

    def delete_if_version(self, pk: str, sk: str, *, expected_version: int) -> None:
        self._stage((pk, sk), None, "attribute_not_exists(#pk) OR #version = :v", {":v": expected_version})

    def update(
        self, pk: str, sk: str, expression: str, values: Mapping[str, object], *, condition: str | None = None
    ) -> None:
        """An UpdateItem held until the commit (`condition` failing: ConcurrentUpdate, as a version does).
        Not for an item the unit puts or deletes; a later update of the same item replaces the earlier."""
        key = (pk, sk)
        earlier = self._staged.get(key)
        assert earlier is None or earlier.update is not None, f"{pk}/{sk}: put and updated in one unit"
        self._staged[key] = _Write(key, None, condition, dict(values), expression)

    def holds(self, pk: str, sk: str) -> bool:
        """Whether the unit has a write of this item waiting for the commit."""
        return (pk, sk) in self._staged

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the commit has written everything (never, if it fails)."""
        self._after.append(callback)

    def _stage(self, key: tuple[str, str], item: Item | None, condition: str | None, values: dict[str, object]) -> None:
        earlier = self._staged.get(key)
        if earlier is not None:
            # written twice in one unit: the condition is still on what DynamoDB holds (the first read)
            condition, values = earlier.condition, earlier.values
        self._staged[key] = _Write(key, item, condition, values)

    @property
    def pending_writes(self) -> int:
        return len(self._staged)

    def commit(self, once: OnceRecord | None = None) -> None:
        """Send the held writes and the idempotency record, all or nothing (chunks of 100 when more, the
        record in the last). ConcurrentUpdate: a condition failed, nothing of that chunk was written."""
        writes = list(self._staged.values())
        after, self._after = self._after, []
        self._staged.clear()
        if once is None and len(writes) == 1:
            self._write_one(writes[0])
        elif writes or once is not None:
            entries = [self._entry(w) for w in writes]
            if once is not None:
                entries.append(self._once_entry(once))
            for start in range(0, len(entries), TRANSACTION_ITEMS):
                last = start + TRANSACTION_ITEMS >= len(entries)
                self._transact(entries[start : start + TRANSACTION_ITEMS], has_once=once is not None and last)
        for callback in after:
            callback()

    def _write_one(self, write: _Write) -> None:
        pk, sk = write.key
        if write.update is not None:
            self._update_one(write)
            return
        if write.item is None:
            version = write.values.get(":v")
            assert isinstance(version, int)
            self.base.delete_if_version(pk, sk, expected_version=version)
            return
        version = write.values.get(":v", 0 if write.condition else None)
        assert version is None or isinstance(version, int)
        self.base.put(write.item, expected_version=version)

    def _update_one(self, write: _Write) -> None:
        pk, sk = write.key
        kwargs: dict[str, Any] = {
            "Key": {"pk": pk, "sk": sk},
            "UpdateExpression": write.update,
            "ExpressionAttributeValues": write.values,
        }
        if write.condition:
            kwargs["ConditionExpression"] = write.condition
        self.base.calls += 1
        try:
            self.base.table.update_item(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise ConcurrentUpdate(f"{pk}/{sk} changed meanwhile") from None

    def _entry(self, write: _Write) -> dict[str, Any]:
        pk, sk = write.key
        body: dict[str, Any] = {"TableName": self.name}
        if write.update is not None:
            body["Key"] = _serialize({"pk": pk, "sk": sk})
            body["UpdateExpression"] = write.update
            kind = "Update"
        elif write.item is None:
            body["Key"] = _serialize({"pk": pk, "sk": sk})
            kind = "Delete"
        else:
            body["Item"] = _serialize(to_ddb(write.item))  # type: ignore[arg-type]
            kind = "Put"
        if write.condition:
            body["ConditionExpression"] = write.condition
            names = {n: n[1:] for n in ("#pk", "#version") if n in write.condition}
            if names:
                body["ExpressionAttributeNames"] = names
        if write.values:
            body["ExpressionAttributeValues"] = _serialize(write.values)
        return {kind: body}

    def _once_entry(self, once: OnceRecord) -> dict[str, Any]:
        item = {"id": once.id, "status": "COMPLETED", "data": once.data, "expiration": once.expiration}
        return {
            "Put": {
                "TableName": self.idempotency_table,
                "Item": _serialize(item),
                # an expired record (DynamoDB's TTL deletes late) counts as absent
                "ConditionExpression": "attribute_not_exists(#id) OR #expiration < :now",
                "ExpressionAttributeNames": {"#id": "id", "#expiration": "expiration"},
                "ExpressionAttributeValues": _serialize({":now": int(time.time())}),
            }
        }

    def _transact(self, entries: list[dict[str, Any]], *, has_once: bool) -> None:
        self.base.calls += 1
        try:
            self.aws.dynamodb_client.transact_write_items(TransactItems=entries)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            once_index = len(entries) - 1
            if has_once and len(reasons) > once_index and reasons[once_index] == "ConditionalCheckFailed":
                raise AlreadyProcessed from None
            raise ConcurrentUpdate("a unit of work lost a race: " + ", ".join(str(r) for r in reasons)) from None
