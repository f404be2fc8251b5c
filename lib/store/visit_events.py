"""Visit events (container ``visit_events``, partition ``/appointmentKey``): joins, leaves, lobby, call
start/end, clicks, device tests. The document shape is documented in ``docs/presence.md`` (the reports read it).

Each event is stored once under a deterministic ID. Those with ``writeback`` ``pending`` are written back to
the EHR by the queue-triggered write-back, which moves ``writeback`` through ``pending -> sending ->
written | failed | unknown | superseded`` (``none``: never written back, e.g. a click or a lobby entry).
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
                    "call_identity_issued", "in_lobby", "left_lobby", "call_started", "call_ended",
                    "clinician_launched", "patient_opened_page", "patient_left_page"]
#: Clicks and page events: recorded as what they are, never written back as presence.
CLICK_TYPES = frozenset({"clinician_launched", "page_opened", "call_identity_issued", "patient_opened_page",
                         "patient_left_page"})
ParticipantRole = Literal["provider", "patient", "interpreter", "other", "call"]
#: Where an event came from: the meeting's roster (Graph call events), the call record after the meeting, the
#: meeting's attendance report (tenants that allow neither), a click or event of our pages, or the patient's
#: device test.
EventSource = Literal["roster", "call_record", "attendance_report", "click", "device_test"]
#: Write-back states that will not change any more (an operator's replay aside).
FINAL_WRITEBACK = frozenset({"written", "failed", "unknown", "superseded", "none"})


@dataclass(frozen=True)
class VisitEvent:
    """One participant event of a visit.

    ``participant_id`` is the EHR user ID for a clinician and the literal ``patient`` for the patient (no
    patient identifier is stored). ``writeback`` is ``pending``, ``written`` or ``failed``;
    ``writeback_reason`` a short code saying why it failed (e.g. ``poisoned``, ``ehr_rejected``).
    ``requeued_utc`` / ``requeue_count``: when and how often the write-back sweep re-enqueued it (its first
    enqueue failed, or its message was lost).

    Write-back bookkeeping: ``due_utc`` when the next attempt is due (the sweep re-enqueues what is overdue);
    ``attempts`` calls made; ``first_attempt_utc`` starts the retry horizon; ``claimed_utc``/``claim_id``
    the worker that moved it to ``sending`` (claim before the call); ``last_error`` the newest failure code and
    ``epic_detail`` Epic's own words for it; ``ambiguous_attempts`` calls whose outcome is unknown (time-outs
    that may have reached Epic). ``participant_ref`` is an opaque reference for participants without an EHR
    ID (interpreter, other), ``source`` where the event came from.
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
    source: str = "roster"
    due_utc: datetime | None = None
    attempts: int = 0
    first_attempt_utc: datetime | None = None
    claimed_utc: datetime | None = None
    claim_id: str | None = None
    last_error: str | None = None
    epic_detail: str | None = None
    ambiguous_attempts: int = 0
    participant_ref: str | None = None
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
            "source": self.source,
            "due_utc": iso(self.due_utc or self.at_utc) if self.writeback in ("pending", "sending") else None,
            "attempts": self.attempts,
            "first_attempt_utc": iso(self.first_attempt_utc),
            "claimed_utc": iso(self.claimed_utc),
            "claim_id": self.claim_id,
            "last_error": self.last_error,
            "epic_detail": self.epic_detail,
            "ambiguous_attempts": self.ambiguous_attempts,
            "participant_ref": self.participant_ref,
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
            source=doc.get("source") or "roster",
            due_utc=parse_iso(doc.get("due_utc")),
            attempts=int(doc.get("attempts") or 0),
            first_attempt_utc=parse_iso(doc.get("first_attempt_utc")),
            claimed_utc=parse_iso(doc.get("claimed_utc")),
            claim_id=doc.get("claim_id"),
            last_error=doc.get("last_error"),
            epic_detail=doc.get("epic_detail"),
            ambiguous_attempts=int(doc.get("ambiguous_attempts") or 0),
            participant_ref=doc.get("participant_ref"),
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
        """Events ``pending`` whose next attempt was due before ``cutoff``, or ``sending`` since before it
        (``due_utc`` is kept while an event is pending or sending), oldest due first, at most ``limit``.

        A cross-partition query, filtered on the indexed ``writeback`` and ``due_utc``: its cost grows with the
        events still to write, which the write-back keeps near zero.
        """
        with translated_errors():
            docs = self._container.query_items(
                "SELECT * FROM c WHERE (c.writeback = 'pending' OR c.writeback = 'sending') AND c.due_utc < @cutoff",
                parameters=[{"name": "@cutoff", "value": iso(cutoff)}],
                enable_cross_partition_query=True,
            )
            events = [VisitEvent.from_doc(d) for d in docs]
        events.sort(key=lambda e: e.due_utc or e.at_utc)
        return events[:limit]
