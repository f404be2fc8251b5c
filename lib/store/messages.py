"""HL7 message bookkeeping: processed control IDs (duplicates) and rejected messages (replay).

``processed``: one document per (environment, sending facility, MSH-10) holding the ACK we answered, so a
resend gets the same ACK and is not applied twice. ``rejected``: the raw bytes of a message we could not
accept, restricted to operators, kept for ``ttl`` seconds, never logged.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.models import cosmos_ttl, iso, safe_key
from lib.store.cosmos import CosmosStore, delete_if_exists, read_or_none, translated_errors


def processed_id(environment_id: str, sending_facility: str, control_id: str) -> str:
    """The ``processed`` document ID for one message (hashed when MSH-4/MSH-10 cannot be in a Cosmos id)."""
    return safe_key(environment_id, sending_facility, control_id)


class ProcessedMessages:
    """MSH-10 duplicate detection per environment and sender."""

    def __init__(self, store: CosmosStore, *, ttl_seconds: int = 30 * 86400) -> None:
        self._container = store.container("processed")
        self._ttl = ttl_seconds

    def ack_for(self, doc_id: str) -> bytes | None:
        """The ACK answered earlier for this message, or ``None`` if it was never processed."""
        found = self.previous(doc_id)
        return found[0] if found else None

    def previous(self, doc_id: str) -> tuple[bytes, str | None] | None:
        """``(ACK answered, SHA-256 hex of the message body)`` of an earlier message with this ID, or ``None``.

        The digest is ``None`` for records written before digests were kept.
        """
        doc = read_or_none(self._container, doc_id, doc_id)
        return (base64.b64decode(doc["ack"]), doc.get("body_sha256")) if doc else None

    def record(self, doc_id: str, ack: bytes, *, code: str, now: datetime, body_sha256: str | None = None) -> None:
        """Remember the ACK (``code`` = MSA-1) answered for this message and the digest of its body."""
        with translated_errors():
            self._container.upsert_item(
                {"id": doc_id, "ack": base64.b64encode(ack).decode(), "code": code, "at": iso(now), "ttl": self._ttl,
                 "body_sha256": body_sha256}
            )


@dataclass(frozen=True)
class RejectedMessage:
    """A message we did not accept: enough for an operator to see why and replay it.

    ``raw`` holds the original bytes (PHI): it is only returned to operators, never logged.
    """

    id: str
    environment_id: str
    received_utc: str
    reason: str
    err_code: str
    control_id: str | None
    raw: bytes


class RejectedMessages:
    """Store, list, read and delete rejected messages (container ``rejected``)."""

    def __init__(self, store: CosmosStore, *, ttl_seconds: int = 30 * 86400) -> None:
        self._container = store.container("rejected")
        self._ttl = ttl_seconds

    def add(
        self, environment_id: str, raw: bytes, *, reason: str, err_code: str, control_id: str | None, now: datetime,
        delete_after: datetime | None = None, appointment_key: str | None = None,
    ) -> str:
        """Keep a rejected message; returns its ID (quoted in the ACK / problem response).

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
    return RejectedMessage(
        id=doc["id"],
        environment_id=doc["environmentId"],
        received_utc=doc["received_utc"],
        reason=doc["reason"],
        err_code=doc["err_code"],
        control_id=doc.get("control_id"),
        raw=base64.b64decode(doc["raw"]),
    )
