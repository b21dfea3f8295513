"""Text-communication state: communication → customer links, chat and request progress (claimed steps),
per-contact lead claims, lost-chat task claims, the poller's watermark and marks."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from connector.errors import ConcurrentUpdate
from connector.models.raw import JsonValue
from connector.models.sync import PollerState
from connector.models.texts import ChatProgress, CustomerLink, LostTaskClaim, RequestProgress
from connector.store.base import DynamoTable, Item, from_ddb, int_pk, load, model_item, to_ddb

P = TypeVar("P", ChatProgress, RequestProgress)

PROGRESS_TTL_SECONDS = 180 * 86400  # a notification later than this is not expected; keeps the table bounded
# A claim older than this belongs to a dead worker: the text worker times out at 60 s (template.yaml).
STALE_CLAIM_SECONDS = 150.0
# How long a per-contact lead claim holds, and how long a released one remembers the lead it made: far
# longer than a find → claim gap, far shorter than a visitor's next message. Checked in code on every
# claim (DynamoDB's TTL deletes late).
CONTACT_CLAIM_SECONDS = 60


class TextStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    # --- the link the deals side reads ----------------------------------------------------------
    def link_customer(self, integration_id: str, customer_id: int, link: CustomerLink) -> bool:
        """Remember that the connector created `customer_id` from this UIS communication.

        Written once (the first communication that created the lead wins), so the first-sale deal
        carries the exact communication UIS should attribute it to. Returns False if already linked.
        """
        return self.t.put(
            {
                "pk": int_pk(integration_id),
                "sk": f"CUSTCOMM#{customer_id}",
                **model_item(link),
                "linked_at": int(time.time()),
            },
            if_absent=True,
        )

    def customer_link(self, integration_id: str, customer_id: int) -> CustomerLink | None:
        # consistent: the text worker writes the link just after AlfaCRM's create, whose webhook races it here
        return load(CustomerLink, self.t.get(int_pk(integration_id), f"CUSTCOMM#{customer_id}"))

    def customer_links(self, integration_id: str, customer_ids: list[int]) -> dict[int, CustomerLink]:
        """`customer_link` for many customers in one batch read (the uploader, once per flush)."""
        pk = int_pk(integration_id)
        items = self.t.batch_get([(pk, f"CUSTCOMM#{cid}") for cid in dict.fromkeys(customer_ids)])
        return {int(str(i["sk"]).removeprefix("CUSTCOMM#")): CustomerLink.model_validate(i) for i in items}

    # --- chat and request progress ----------------------------------------------------------------
    # One item per chat (`CHAT#<chat_id>`) and per request (`REQ#<key>`): the facts learned so far, the
    # AlfaCRM customer it is attached to, and one attribute per AlfaCRM write ("step": lead, transcript,
    # comment). A step is claimed with a conditional write before the AlfaCRM call and marked done after
    # it, so a redelivered event never repeats a finished write, and a claim whose worker died (older than
    # `stale_after`) can be taken over — the new owner is told (`retaken`) so it checks AlfaCRM first.

    def chat_progress(self, integration_id: str, chat_id: int) -> ChatProgress:
        """`CHAT#<chat_id>` (empty when nothing was recorded yet)."""
        return self._progress(ChatProgress, integration_id, chat_item(chat_id))

    def request_progress(self, integration_id: str, item: str) -> RequestProgress:
        """`REQ#om<id>` / `REQ#c<id>` (empty when nothing was recorded yet)."""
        return self._progress(RequestProgress, integration_id, item)

    def _progress(self, model: type[P], integration_id: str, item: str) -> P:
        return load(model, self.t.get(int_pk(integration_id), item)) or model()

    def remember(self, integration_id: str, item: str, update: ChatProgress | RequestProgress) -> None:
        """Write the fields `update` was built with (and only those) into a progress item, created when
        absent: `remember(iid, "CHAT#7", ChatProgress(customer_id=5))` leaves every other attribute alone."""
        fields = update.model_dump(mode="json", exclude_unset=True)
        self.t.update_fields(
            int_pk(integration_id),
            item,
            {**fields, "expires_at": int(time.time()) + PROGRESS_TTL_SECONDS},
            must_exist=False,
        )

    def alias(self, integration_id: str, item: str, target: str) -> bool:
        """Make `item` (`REQ#c<communication_id>`) point at `target`, the request's progress item, unless
        `item` exists already (an alias, or an item written before aliases existed). One write."""
        if item == target:
            return False
        return self.t.put(
            {
                "pk": int_pk(integration_id),
                "sk": item,
                "alias_of": target,
                "expires_at": int(time.time()) + PROGRESS_TTL_SECONDS,
            },
            if_absent=True,
        )

    def claim_step(
        self,
        integration_id: str,
        item: str,
        step: str,
        *,
        stale_after: float = STALE_CLAIM_SECONDS,
        now: float | None = None,
    ) -> StepClaim:
        """Claim `step` of `item` before its AlfaCRM write: claimed, already done (with its result), or busy."""
        now = time.time() if now is None else now
        attr = f"step_{step}"
        self.t.calls += 1
        try:
            reply = self.t.table.update_item(
                Key={"pk": int_pk(integration_id), "sk": item},
                UpdateExpression="SET #s = :claim, expires_at = :exp",
                ConditionExpression=(
                    "attribute_not_exists(#s)"
                    " OR (#s.#state = :failed AND (attribute_not_exists(#s.#settle) OR #s.#settle < :now))"
                    " OR (#s.#state = :claimed AND #s.#at < :stale)"
                ),
                ExpressionAttributeNames={"#s": attr, "#state": "state", "#at": "at", "#settle": "settle_until"},
                ExpressionAttributeValues={
                    ":claim": {"state": "claimed", "at": to_ddb(now)},
                    ":failed": "failed",
                    ":now": to_ddb(now),
                    ":claimed": "claimed",
                    ":stale": to_ddb(now - stale_after),
                    ":exp": int(now) + PROGRESS_TTL_SECONDS,
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = _old_item(exc)
            if not old:
                # older boto3/moto without ReturnValuesOnConditionCheckFailure: read it
                old = self.t.get(int_pk(integration_id), item) or {}
            state = old.get(attr)
            if isinstance(state, dict) and state.get("state") == "done":
                return StepClaim("done", result=state.get("result"))
            return StepClaim("busy")
        previous = from_ddb((reply.get("Attributes") or {}).get(attr) or {})
        error = previous.get("error")
        return StepClaim("claimed", retaken=bool(previous), previous_error=error if isinstance(error, str) else None)

    def finish_step(
        self,
        integration_id: str,
        item: str,
        step: str,
        result: JsonValue = None,
        *,
        progress: ChatProgress | RequestProgress | None = None,
    ) -> None:
        """Mark the step done with its result; `progress` (the fields it was built with) goes in the same write,
        so what the step produced (the lead's customer) is recorded together with the step."""
        fields: dict[str, object] = {f"step_{step}": {"state": "done", "at": int(time.time()), "result": result}}
        if progress is not None:
            fields.update(progress.model_dump(mode="json", exclude_unset=True))
            fields["expires_at"] = int(time.time()) + PROGRESS_TTL_SECONDS
        self.t.update_fields(int_pk(integration_id), item, fields, must_exist=False)

    def fail_step(
        self, integration_id: str, item: str, step: str, error: str, *, now: float | None = None, settle: float = 0.0
    ) -> None:
        """The write failed: the next delivery may claim it (and will check AlfaCRM first) at once, or once
        `settle` seconds have passed (a write whose answer was lost may still land meanwhile)."""
        now = time.time() if now is None else now
        failed: dict[str, object] = {"state": "failed", "at": int(now), "error": error[:500]}
        if settle > 0:
            failed["settle_until"] = to_ddb(now + settle)
        self.t.update_fields(int_pk(integration_id), item, {f"step_{step}": failed}, must_exist=False)

    # --- per-contact lead claims ---------------------------------------------------------------------
    # `CHAT#`/`REQ#` claims are per communication: two chats, or a chat and a request, from one phone do
    # not see each other and could both miss the customer and both create a lead. So the creation of a
    # lead is also claimed per contact (`LEADCLAIM#<hash>`: the E.164 phone, else the e-mail) — only when
    # a lead is about to be created, never for events that reuse a known customer. The key is a salted
    # hash (no phone or e-mail in the table). Released with the lead's id for a short while, so a worker
    # whose search ran just before that lead existed uses it instead of creating a second one.

    @staticmethod
    def contact_key(integration_id: str, contact: str) -> str:
        digest = hashlib.sha256(f"{integration_id}\x00{contact}".encode()).hexdigest()
        return f"LEADCLAIM#{digest[:40]}"

    def claim_contact(
        self,
        integration_id: str,
        contact: str,
        owner: str,
        *,
        now: float | None = None,
        hold_for: int = CONTACT_CLAIM_SECONDS,
    ) -> ContactClaim:
        """Claim the right to create the lead for this contact (E.164 phone or lower-cased e-mail).

        `claimed`: create it, then `release_contact`. `busy`: another worker is creating one right now
        (retry later: its lead will then be found). `created`: another worker has just created
        `customer_id` for this contact. One conditional write.
        """
        now = time.time() if now is None else now
        pk, sk = int_pk(integration_id), self.contact_key(integration_id, contact)
        self.t.calls += 1
        try:
            self.t.table.put_item(
                Item=to_ddb(
                    {"pk": pk, "sk": sk, "state": "claimed", "owner": owner, "expires_at": int(now) + hold_for}
                ),
                # an expired claim (its worker died, or a released one grown old) is free again
                ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now OR #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":now": int(now), ":owner": owner},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = _old_item(exc) or self.t.get(pk, sk) or {}
            made = old.get("customer_id")
            if old.get("state") == "created" and isinstance(made, int | float):
                return ContactClaim("created", customer_id=int(made))
            return ContactClaim("busy")
        return ContactClaim("claimed")

    def release_contact(
        self,
        integration_id: str,
        contact: str,
        owner: str,
        *,
        customer_id: int | None = None,
        now: float | None = None,
        hold_for: int = CONTACT_CLAIM_SECONDS,
    ) -> None:
        """After the create: remember `customer_id` for a short while (one write). Without a customer
        (the create failed): drop the claim if it is still ours, so the next attempt need not wait."""
        now = time.time() if now is None else now
        pk, sk = int_pk(integration_id), self.contact_key(integration_id, contact)
        self.t.calls += 1
        if customer_id is not None:
            self.t.table.put_item(
                Item=to_ddb(
                    {
                        "pk": pk,
                        "sk": sk,
                        "state": "created",
                        "owner": owner,
                        "customer_id": int(customer_id),
                        "expires_at": int(now) + hold_for,
                    }
                )
            )
            return
        try:
            self.t.table.delete_item(
                Key={"pk": pk, "sk": sk},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": owner},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    # --- lost chats and the chat poller: the poller's watermark, lost-chat task claims, poller marks -------
    # Kept in their own sort keys (`WM#<name>`, `CHAT#<id>#lost_task`, `CHAT#<id>#polled_<kind>`) so
    # these writes never race the text worker's writes to `CHAT#<id>`.
    # a lost chat's claim and the poller's marks outlive any window the poller re-reads (≤ 3 months)
    CHAT_MARK_TTL = 120 * 86400

    def get_watermark(self, integration_id: str, name: str) -> PollerState | None:
        """The poller's `WM#<name>` item (with `version`), or None before the first successful run."""
        return load(PollerState, self.t.get(int_pk(integration_id), f"WM#{name}"))

    def put_watermark(self, integration_id: str, name: str, value: PollerState, *, expected_version: int) -> int:
        """Write `WM#<name>` only if nobody moved it since it was read (0 = absent); → the new version.

        Raises ConcurrentUpdate when another run wrote first: that run's watermark stands.
        """
        version = expected_version + 1
        self.t.put(
            {
                "pk": int_pk(integration_id),
                "sk": f"WM#{name}",
                **model_item(value, exclude={"version"}),
                "version": version,
            },
            expected_version=expected_version,
        )
        return version

    def lost_task(self, integration_id: str, chat_id: int) -> LostTaskClaim | None:
        return load(LostTaskClaim, self.t.get(int_pk(integration_id), _lost_sk(chat_id)))

    def claim_lost_task(
        self, integration_id: str, chat_id: int, *, token: str, now: float, stale_after: float
    ) -> tuple[Literal["claimed", "done", "busy"], LostTaskClaim]:
        """Claim the right to create this chat's lost-chat task → (`claimed`|`done`|`busy`, the claim).

        `claimed`: the caller must create the task, then `update_lost_task(... state="done")`.
        `done`: a task exists (its id is in the claim). `busy`: another worker holds a fresh claim.
        A claim older than `stale_after` seconds, or one released after a failure, is taken over (one released
        after a lost answer once its `settle_until` has passed).
        """
        pk, sk = int_pk(integration_id), _lost_sk(chat_id)
        fresh = LostTaskClaim(state="claimed", token=token, claimed_at=now, attempts=1, version=1)
        expires = int(now) + self.CHAT_MARK_TTL
        if self.t.put({"pk": pk, "sk": sk, **model_item(fresh), "expires_at": expires}, if_absent=True):
            return "claimed", fresh
        found = self.lost_task(integration_id, chat_id)
        if found is None:
            return "busy", fresh  # deleted in between (never, but no claim to take over)
        if found.state == "done":
            return "done", found
        if found.state in {"claimed", "sending"} and now - found.claimed_at < stale_after:
            return "busy", found
        if found.state == "released" and found.settle_until is not None and now < found.settle_until:
            return "busy", found  # its task's create lost its answer and may still land (`fail_step`'s settle)
        taken = found.model_copy(
            update={
                "state": "claimed",
                "token": token,
                "claimed_at": now,
                "attempts": found.attempts + 1,
                "taken_over": found.state,
            }
        )
        try:
            return "claimed", self._put_lost_task(pk, sk, taken, expires)
        except ConcurrentUpdate:
            return "busy", found

    def update_lost_task(
        self, integration_id: str, chat_id: int, claim: LostTaskClaim, **changes: object
    ) -> LostTaskClaim:
        """Move a claim on (`sending`, `done`, `released`); ConcurrentUpdate if it was taken over meanwhile."""
        updated = LostTaskClaim.model_validate({**claim.model_dump(), **changes})
        expires = int(time.time()) + self.CHAT_MARK_TTL
        return self._put_lost_task(int_pk(integration_id), _lost_sk(chat_id), updated, expires)

    def _put_lost_task(self, pk: str, sk: str, claim: LostTaskClaim, expires_at: int) -> LostTaskClaim:
        """Write the claim if its stored version is still `claim.version`; → the claim as stored."""
        stored = claim.model_copy(update={"version": claim.version + 1})
        self.t.put({"pk": pk, "sk": sk, **model_item(stored), "expires_at": expires_at}, expected_version=claim.version)
        return stored

    def lost_tasks_done(self, integration_id: str, chat_ids: list[int]) -> set[int]:
        """Which of these chats already have their lost-chat task."""
        pk = int_pk(integration_id)
        items = self.t.batch_get([(pk, _lost_sk(cid)) for cid in chat_ids])
        return {int(str(i["sk"]).split("#")[1]) for i in items if i.get("state") == "done"}

    def polled_chats(self, integration_id: str, kind: str, chat_ids: list[int]) -> set[int]:
        """Which of these chats the poller already announced as `kind` (`started`, `lost`)."""
        pk = int_pk(integration_id)
        items = self.t.batch_get([(pk, f"CHAT#{cid}#polled_{kind}") for cid in chat_ids])
        return {int(str(i["sk"]).split("#")[1]) for i in items}

    def mark_polled(self, integration_id: str, kind: str, chat_ids: list[int], *, at: float) -> None:
        """Remember that the poller sent this `kind` of event for these chats."""
        pk = int_pk(integration_id)
        self.t.put_many(
            [
                {
                    "pk": pk,
                    "sk": f"CHAT#{cid}#polled_{kind}",
                    "chat_id": cid,
                    "sent_at": int(at),
                    "expires_at": int(at) + self.CHAT_MARK_TTL,
                }
                for cid in chat_ids
            ]
        )


def chat_item(chat_id: int) -> str:
    return f"CHAT#{chat_id}"


def _lost_sk(chat_id: int) -> str:
    return f"CHAT#{chat_id}#lost_task"


def _old_item(exc: ClientError) -> Item:
    """The item a failed condition returned (`ReturnValuesOnConditionCheckFailure`): the error carries it in
    DynamoDB's wire format (`{"S": ...}`) even through the resource API, so it is deserialised here."""
    raw = cast("dict[str, object]", exc.response.get("Item") or {})
    deserializer = TypeDeserializer()
    return {k: from_ddb(deserializer.deserialize(v)) for k, v in raw.items()}  # type: ignore[arg-type]


@dataclass(frozen=True)
class StepClaim:
    status: Literal["claimed", "done", "busy"]
    result: JsonValue = None
    retaken: bool = False  # an earlier attempt claimed this step: its write may have happened
    previous_error: str | None = None


@dataclass(frozen=True)
class ContactClaim:
    status: Literal["claimed", "busy", "created"]
    customer_id: int | None = None  # `created`: the lead another worker has just made for this contact
