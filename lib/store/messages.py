"""HL7 message bookkeeping: processed messages (duplicates, single-use signatures) and rejected messages.

``hl7_messages`` (partition key ``/messageKey``): one partition per message, named by
:meth:`ProcessedMessages.partition` (an HMAC of ``{environment}|{sending facility}|{MSH-10}``, 22 URL-safe
characters), holding the ACK we answered (document ``ack``) and one document per signature ``jti`` that
carried the message (``jti|<jti>``). A signature covers the body, so a ``jti`` can only ever come with one
message: claiming it inside the message's partition is claiming it everywhere. A visit booked by a message
takes that partition as its join-link ID, so the visit's join link (document ``link``,
:mod:`lib.store.links`) lives there too. Each step is one round trip, a transactional batch within the
partition:

- :meth:`ProcessedMessages.check` = [create ``jti|<jti>``, read ``ack``]: a resend of an accepted message
  is answered from here in one call (its ``jti`` recorded); a replayed ``jti`` fails the create (409); a
  new message fails the read (404), and the batch's create is rolled back with it.
- :meth:`ProcessedMessages.record` = [create ``jti|<jti>``, upsert ``link``, upsert ``ack``]: the ``jti``
  is claimed, the join link of the visit the message booked written and the ACK remembered atomically,
  after the message was applied.

Where a store cannot run transactional batches (``transactional_batch=False``: the upstream local
Cosmos-compatible server), the same steps run one document at a time: :meth:`check` reads ``ack`` and then
claims the ``jti`` only for a duplicate; :meth:`record` claims the ``jti``, upserts ``link`` and then
``ack`` (the ACK always last).

``rejected``: the raw bytes of a message we could not accept, restricted to operators, kept for ``ttl``
seconds, never logged; with how the request was authenticated (``authentication``, see :class:`RejectedMessage`)
and, for a body sent to an environment that did not exist yet, the signature it came with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from azure.cosmos import exceptions as cosmos_errors

from lib.models import cosmos_ttl, iso, safe_key
from lib.store.cosmos import CosmosStore, delete_if_exists, read_or_none, translated_errors
from lib.store.errors import AlreadyExists

Seen = Literal["new", "duplicate", "replayed", "reused"]
#: How the request of a kept message was authenticated when it arrived: ``verified`` (its signature was checked),
#: ``not-required`` (the environment took unsigned requests), ``unverified`` (the environment did not exist: nothing
#: to check it against; its signature, if any, is kept and checked on replay).
Authentication = Literal["verified", "not-required", "unverified"]
_ACK_ID = "ack"


def processed_id(environment_id: str, sending_facility: str, control_id: str) -> str:
    """The message key of one message: what makes it the same message. Hashed when MSH-4/MSH-10 cannot be
    part of a Cosmos id (``lib.models.safe_key``)."""
    return safe_key(environment_id, sending_facility, control_id)


def message_partition_key(link_signing_key: bytes) -> bytes:
    """The secret that names message partitions, derived from ``Settings.link_signing_key`` (the partition of
    a booking message becomes its visit's join-link ID, which must not be predictable from the MSH-10)."""
    return hmac.new(link_signing_key, b"hl7-message-partition-v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class Signature:
    """The single-use part of a signed request: its ``jti`` and until when it must stay claimed."""

    jti: str
    expires: datetime
    now: datetime


class ProcessedMessages:
    """MSH-10 duplicate detection per environment and sender, with the single use of signatures."""

    def __init__(
        self, store: CosmosStore, partition_key: bytes, *, ttl_seconds: int = 30 * 86400,
        transactional_batch: bool = True,
    ) -> None:
        self._container = store.container("hl7_messages")
        self._partition_key = partition_key
        self._ttl = ttl_seconds
        self._batch = transactional_batch

    def partition(self, message_key: str) -> str:
        """The partition of the message ``message_key`` (:func:`processed_id`): 16 bytes of HMAC-SHA256 under
        :func:`message_partition_key`, URL-safe base64, the shape of a join-link ID."""
        digest = hmac.new(self._partition_key, message_key.encode("utf-8"), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def check(
        self, partition: str, signature: Signature | None, body_sha256: str | None = None
    ) -> tuple[Seen, bytes | None]:
        """Whether this message was accepted before: ``("duplicate", ack)`` (and the signature is now used),
        ``("replayed", None)`` (this signature was used before), or ``("new", None)`` (nothing recorded).
        With ``body_sha256``: ``("reused", None)`` when the message accepted under this key had another body
        (the sender reused MSH-10; records written without a digest count as the same body).

        Raises:
            StoreUnavailable, StoreError: see :func:`lib.store.cosmos.translated_errors`.
        """
        if signature is None:
            doc = read_or_none(self._container, _ACK_ID, partition)
            return _seen(doc, body_sha256) if doc else ("new", None)
        if not self._batch:
            doc = read_or_none(self._container, _ACK_ID, partition)
            if doc is None:
                return "new", None
            return _seen(doc, body_sha256) if self._claim(partition, signature) else ("replayed", None)
        try:
            with translated_errors():
                results = self._container.execute_item_batch(
                    [("create", (self._jti_doc(partition, signature),)), ("read", (_ACK_ID,))],
                    partition_key=partition)
        except cosmos_errors.CosmosBatchOperationError as failed:
            if failed.error_index == 0 and failed.status_code == 409:
                return "replayed", None
            if failed.error_index == 1 and failed.status_code == 404:
                return "new", None
            with translated_errors():
                raise cosmos_errors.CosmosHttpResponseError(status_code=failed.status_code,
                                                            message="transactional batch failed") from failed
        return _seen(results[1]["resourceBody"], body_sha256)

    def record(
        self, partition: str, signature: Signature | None, ack: bytes, *, code: str, now: datetime,
        body_sha256: str | None = None, link: dict[str, Any] | None = None,
    ) -> bool:
        """Remember the ACK (``code`` = MSA-1) answered for this message, the SHA-256 of its body, and claim its
        signature, together; with ``link`` (:func:`lib.store.links.link_document` of the visit this message
        booked, whose link ID is ``partition``), the visit's join link too.

        Returns ``False`` when the signature was claimed meanwhile (the same request, replayed concurrently,
        was accepted first): nothing is recorded then.

        Raises:
            StoreUnavailable, StoreError: see :func:`lib.store.cosmos.translated_errors`.
        """
        ack_doc = {"id": _ACK_ID, "messageKey": partition, "ack": base64.b64encode(ack).decode(), "code": code,
                   "at": iso(now), "ttl": self._ttl, "body_sha256": body_sha256}
        if link is not None and link["messageKey"] != partition:
            raise ValueError("a join link is recorded with a message only in that message's partition")
        if self._batch and (signature is not None or link is not None):
            operations: list[tuple[str, tuple[Any, ...]]] = []
            if signature is not None:
                operations.append(("create", (self._jti_doc(partition, signature),)))
            if link is not None:
                operations.append(("upsert", (link,)))
            operations.append(("upsert", (ack_doc,)))
            try:
                with translated_errors():
                    self._container.execute_item_batch(operations, partition_key=partition)
                return True
            except cosmos_errors.CosmosBatchOperationError as failed:
                if signature is not None and failed.error_index == 0 and failed.status_code == 409:
                    return False
                with translated_errors():
                    raise cosmos_errors.CosmosHttpResponseError(status_code=failed.status_code,
                                                                message="transactional batch failed") from failed
        if signature is not None and not self._claim(partition, signature):
            return False
        with translated_errors():
            if link is not None:
                self._container.upsert_item(link)
            self._container.upsert_item(ack_doc)
        return True

    def _claim(self, partition: str, signature: Signature) -> bool:
        try:
            with translated_errors():
                self._container.create_item(self._jti_doc(partition, signature))
            return True
        except AlreadyExists:
            return False

    def _jti_doc(self, partition: str, signature: Signature) -> dict[str, Any]:
        # Kept as long as the ACK, so a replay is refused as long as the message is remembered.
        return {"id": safe_key("jti", signature.jti), "messageKey": partition, "expires": iso(signature.expires),
                "ttl": self._ttl}


def _ack(doc: dict[str, Any]) -> bytes:
    return base64.b64decode(doc["ack"])


def _seen(doc: dict[str, Any], body_sha256: str | None) -> tuple[Seen, bytes | None]:
    """A recorded ACK document read back: the same message (``duplicate``) or another one under its key."""
    stored = doc.get("body_sha256")
    if body_sha256 and stored and stored != body_sha256:
        return "reused", None
    return "duplicate", _ack(doc)


@dataclass(frozen=True)
class RejectedMessage:
    """A message we did not accept: enough for an operator to see why and replay it.

    ``raw`` holds the original bytes (PHI): it is only returned to operators, never logged. ``authentication``
    (:data:`Authentication`) says how its request was authenticated on arrival; ``signature`` is the compact JWS
    it came with when that could not be checked then (``unverified``), else None, and ``signature_received`` the
    wall time (ISO UTC) it arrived, by the signature checker's clock.
    """

    id: str
    environment_id: str
    received_utc: str
    reason: str
    err_code: str
    control_id: str | None
    raw: bytes
    authentication: Authentication = "verified"
    signature: str | None = None
    signature_received: str | None = None
    appointment_key: str | None = None
    delete_after: str | None = None

    @property
    def authenticated(self) -> bool:
        """Whether the request was authenticated as its environment required when it arrived."""
        return self.authentication != "unverified"


class RejectedMessages:
    """Store, list, read and delete rejected messages (container ``rejected``)."""

    def __init__(self, store: CosmosStore, *, ttl_seconds: int = 30 * 86400) -> None:
        self._container = store.container("rejected")
        self._ttl = ttl_seconds

    def add(
        self, environment_id: str, raw: bytes, *, reason: str, err_code: str, control_id: str | None, now: datetime,
        delete_after: datetime | None = None, appointment_key: str | None = None,
        authentication: Authentication = "verified", signature: str | None = None,
        signature_received: datetime | None = None,
    ) -> str:
        """Keep a rejected message; returns its ID (quoted in the ACK / problem response).

        ``authentication``, ``signature`` and ``signature_received``: see :class:`RejectedMessage`.

        ``delete_after`` (UTC): when its visit is over; the message then goes sooner than its TTL (Cosmos
        ``ttl`` shortened, and :meth:`expired` lists it for the purge timer). ``appointment_key``: the visit it
        belongs to, when it can be read, so it is purged with that visit's phone number
        (:meth:`delete_for_appointment`).
        """
        doc_id = str(uuid.uuid4())
        ttl = self._ttl
        if delete_after is not None:
            ttl = cosmos_ttl(min(ttl, (delete_after - now).total_seconds()))
        with translated_errors():
            self._container.create_item(
                {
                    "id": doc_id,
                    "environmentId": environment_id,
                    "received_utc": iso(now),
                    "reason": reason,
                    "err_code": err_code,
                    "control_id": control_id,
                    "raw": base64.b64encode(raw).decode(),
                    "delete_after": iso(delete_after),
                    "appointmentKey": appointment_key,
                    "authentication": authentication,
                    "signature": signature,
                    "signature_received": iso(signature_received),
                    "ttl": ttl,
                }
            )
        return doc_id

    def delete_for_appointment(self, environment_id: str, appointment_key: str) -> int:
        """Delete every kept message of one visit (its phone number goes with the visit's); returns how many.

        A single-partition query (partition = environment), then point deletes.
        """
        with translated_errors():
            rows = list(
                self._container.query_items(
                    "SELECT c.id FROM c WHERE c.environmentId = @env AND c.appointmentKey = @key",
                    parameters=[{"name": "@env", "value": environment_id}, {"name": "@key", "value": appointment_key}],
                    partition_key=environment_id,
                )
            )
        return sum(1 for row in rows if delete_if_exists(self._container, row["id"], environment_id))

    def expired(self, now: datetime, *, limit: int = 500) -> list[tuple[str, str]]:
        """``(environment ID, message ID)`` of kept messages whose visit is over (for the purge timer)."""
        with translated_errors():
            rows = self._container.query_items(
                "SELECT TOP @limit c.id, c.environmentId FROM c "
                "WHERE IS_STRING(c.delete_after) AND c.delete_after <= @now",
                parameters=[{"name": "@limit", "value": limit}, {"name": "@now", "value": iso(now)}],
                enable_cross_partition_query=True,
            )
            return [(row["environmentId"], row["id"]) for row in rows]

    def list(self, environment_id: str, *, limit: int = 100) -> list[RejectedMessage]:
        """The newest rejected messages of one environment."""
        with translated_errors():
            docs = self._container.query_items(
                "SELECT TOP @limit * FROM c WHERE c.environmentId = @env ORDER BY c.received_utc DESC",
                parameters=[{"name": "@limit", "value": limit}, {"name": "@env", "value": environment_id}],
                partition_key=environment_id,
            )
            return [_rejected(d) for d in docs]

    def get(self, environment_id: str, doc_id: str) -> RejectedMessage | None:
        """One rejected message, or ``None``."""
        doc = read_or_none(self._container, doc_id, environment_id)
        return _rejected(doc) if doc else None

    def delete(self, environment_id: str, doc_id: str) -> bool:
        """Forget a rejected message (after a successful replay)."""
        return delete_if_exists(self._container, doc_id, environment_id)


def _rejected(doc: dict[str, Any]) -> RejectedMessage:
    authentication = doc.get("authentication")
    if authentication not in get_args(Authentication):
        # Kept before authentication was recorded: only a body for a missing environment went unchecked.
        authentication = "unverified" if doc.get("reason") == "unknown environment" else "verified"
    return RejectedMessage(
        id=doc["id"],
        environment_id=doc["environmentId"],
        received_utc=doc["received_utc"],
        reason=doc["reason"],
        err_code=doc["err_code"],
        control_id=doc.get("control_id"),
        raw=base64.b64decode(doc["raw"]),
        authentication=authentication,
        signature=doc.get("signature"),
        signature_received=doc.get("signature_received"),
        appointment_key=doc.get("appointmentKey"),
        delete_after=doc.get("delete_after"),
    )
