"""Visit events (container ``visit_events``, partition ``/appointmentKey``): joins, leaves, device tests.

Each event is written once under a deterministic ID, then written back to the EHR by the queue-triggered
write-back; ``writeback`` records that outcome so a redelivered message is not written twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from lib.models import iso, parse_iso
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import AlreadyExists

EventType = Literal["connected", "disconnected", "device_test_passed", "device_test_failed", "page_opened",
                    "call_identity_issued"]
ParticipantRole = Literal["provider", "patient"]


@dataclass(frozen=True)
class VisitEvent:
    """One participant event of a visit.

    ``participant_id`` is the EHR user ID for a clinician and the literal ``patient`` for the patient (no
    patient identifier is stored). ``writeback`` is ``pending``, ``written`` or ``failed``;
    ``writeback_reason`` a short code saying why it failed (e.g. ``poisoned``, ``ehr_rejected``).
    ``requeued_utc`` / ``requeue_count``: when and how often the write-back sweep re-enqueued it (its first
    enqueue failed, or its message was lost).

    ``writeback`` is ``none`` for events the EHR never gets (``page_opened``: the patient opened the join
    page, a click and not presence; ``call_identity_issued``: the ACS identity the page joined with, which
    meeting presence maps back to "patient"). ``details``: a few non-personal values (the device test's
    steps and measures, the ACS identity ID).
    """

    id: str
    appointment_key: str
    environment_id: str
    appointment_id: str
    type: EventType
    role: ParticipantRole
    participant_id: str
    at_utc: datetime
    correlation_id: str | None = None
    writeback: str = "pending"
    writeback_utc: datetime | None = None
    writeback_reason: str | None = None
    requeued_utc: datetime | None = None
    requeue_count: int = 0
    details: dict[str, Any] | None = None
    etag: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document."""
        return {
            "id": self.id,
            "appointmentKey": self.appointment_key,
            "environmentId": self.environment_id,
            "appointmentId": self.appointment_id,
            "type": self.type,
            "role": self.role,
            "participant_id": self.participant_id,
            "at_utc": iso(self.at_utc),
            "correlation_id": self.correlation_id,
            "writeback": self.writeback,
            "writeback_utc": iso(self.writeback_utc),
            "writeback_reason": self.writeback_reason,
            "requeued_utc": iso(self.requeued_utc),
            "requeue_count": self.requeue_count,
            "details": self.details,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> VisitEvent:
        """Build from a stored document, keeping its ``_etag``."""
        return cls(
            id=doc["id"],
            appointment_key=doc["appointmentKey"],
            environment_id=doc["environmentId"],
            appointment_id=doc["appointmentId"],
            type=doc["type"],
            role=doc["role"],
            participant_id=doc["participant_id"],
            at_utc=parse_iso(doc["at_utc"]),  # type: ignore[arg-type]
            correlation_id=doc.get("correlation_id"),
            writeback=doc.get("writeback", "pending"),
            writeback_utc=parse_iso(doc.get("writeback_utc")),
            writeback_reason=doc.get("writeback_reason"),
            requeued_utc=parse_iso(doc.get("requeued_utc")),
            requeue_count=int(doc.get("requeue_count") or 0),
            details=doc.get("details"),
            etag=doc.get("_etag"),
        )


class VisitEventRepository:
    """Create-once, read and update :class:`VisitEvent` documents."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("visit_events")

    def create_once(self, event: VisitEvent) -> tuple[VisitEvent, bool]:
        """Store ``event`` unless one with its ID exists; returns ``(stored event, created?)``."""
        try:
            with translated_errors():
                doc = self._container.create_item(event.to_doc())
            return VisitEvent.from_doc(doc), True
        except AlreadyExists:
            existing = self.get(event.appointment_key, event.id)
            assert existing is not None
            return existing, False

    def get(self, appointment_key: str, event_id: str) -> VisitEvent | None:
        """One event, or ``None``."""
        doc = read_or_none(self._container, event_id, appointment_key)
        return VisitEvent.from_doc(doc) if doc else None

    def update(self, event: VisitEvent, **changes: object) -> VisitEvent:
        """ETag-guarded update.

        Raises:
            ConcurrencyConflict: it changed since it was read.
        """
        updated = dataclasses.replace(event, **changes)  # type: ignore[arg-type]
        with translated_errors():
            doc = self._container.replace_item(item=event.id, body=updated.to_doc(), **if_match(event.etag))
        return VisitEvent.from_doc(doc)

    def for_appointment(self, appointment_key: str) -> list[VisitEvent]:
        """All events of one visit, oldest first (single-partition query)."""
        with translated_errors():
            docs = self._container.query_items(
                "SELECT * FROM c WHERE c.appointmentKey = @key ORDER BY c.at_utc",
                parameters=[{"name": "@key", "value": appointment_key}],
                partition_key=appointment_key,
            )
            return [VisitEvent.from_doc(d) for d in docs]

    def pending_before(self, cutoff: datetime, *, limit: int = 100) -> list[VisitEvent]:
        """Events still ``pending`` that happened before ``cutoff``, oldest first, at most ``limit``.

        A cross-partition query, filtered on the indexed ``writeback`` and ``at_utc``: its cost grows with the
        pending events, which the write-back keeps near zero.
        """
        with translated_errors():
            docs = self._container.query_items(
                "SELECT * FROM c WHERE c.writeback = @pending AND c.at_utc < @cutoff",
                parameters=[{"name": "@pending", "value": "pending"}, {"name": "@cutoff", "value": iso(cutoff)}],
                enable_cross_partition_query=True,
            )
            events = [VisitEvent.from_doc(d) for d in docs]
        events.sort(key=lambda e: e.at_utc)
        return events[:limit]
