"""Recording click and device-test events from our pages: one ``VisitEvent`` per (appointment, participant,
event, attempt), then, for device tests, a ``visit-events`` queue message for the write-back.

Clicks (:data:`lib.store.visit_events.CLICK_TYPES`: "clinician launched", "patient opened the page") are
stored with ``writeback`` ``none``: presence written to Epic comes from the meeting's roster
(:mod:`lib.presence`), not from clicks.

The event ID is deterministic (:func:`event_id`), so a retried callback or a double-clicked Join button
stores it once. The queue message carries IDs only (``{"id", "appointmentKey", "correlationId"}``).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any, Protocol

from lib.clock import Clock
from lib.ehr.writeback import CONNECTION_STATUS
from lib.models import Appointment
from lib.queues import VISIT_EVENTS_QUEUE
from lib.store.visit_events import CLICK_TYPES, EventType, ParticipantRole, VisitEvent, VisitEventRepository

log = logging.getLogger(__name__)


class QueueSender(Protocol):
    """What :class:`lib.queues.QueueProducer` offers."""

    def send(self, queue: str, message: Any, *, visibility_timeout: int | None = None) -> None:
        """Enqueue one message."""
        ...


def event_id(appointment_key: str, role: str, participant_id: str, event_type: str, attempt: str) -> str:
    """Deterministic event ID: 32 hex digits of SHA-256 over the five parts (``|``-joined)."""
    raw = "|".join((appointment_key, role, participant_id, event_type, attempt))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class VisitEventRecorder:
    """Stores participant events once and hands them to the write-back queue.

    Args:
        visit_events: the repository.
        queues: the queue producer.
        clock: the clock.
    """

    def __init__(self, *, visit_events: VisitEventRepository, queues: QueueSender, clock: Clock,
                 identities: Any = None) -> None:
        self._events = visit_events
        self._queues = queues
        self._clock = clock
        self._identities = identities

    def of_visit(self, appointment_key: str) -> list[VisitEvent]:
        """Every event of one visit, oldest first (one single-partition query)."""
        return self._events.for_appointment(appointment_key)

    def record(self, appointment: Appointment, *, event_type: EventType, role: ParticipantRole,
               participant_id: str, attempt: str, correlation_id: str | None = None,
               details: dict[str, Any] | None = None, at_utc: datetime | None = None,
               hold_writeback: str | None = None) -> VisitEvent:
        """Store the event (once per deterministic ID) and enqueue it while its write-back is pending.

        ``at_utc``: when it happened, when that was before now (a click recorded later by a queue trigger).
        ``hold_writeback``: why an event Epic has a status for is nevertheless not written back (stored with
        ``writeback="none"`` and this reason).

        Events the EHR has no status for (``page_opened``, ``call_identity_issued``) are stored with
        ``writeback="none"`` and never enqueued.

        A failed enqueue is logged and swallowed: the visit must go on; the event stays ``pending``.

        Raises:
            StoreUnavailable: Cosmos DB is down.
        """
        event = VisitEvent(
            id=event_id(appointment.key, role, participant_id, event_type, attempt),
            appointment_key=appointment.key,
            environment_id=appointment.environment_id,
            appointment_id=appointment.appointment_id,
            type=event_type,
            role=role,
            participant_id=participant_id,
            at_utc=at_utc or self._clock.now(),
            correlation_id=correlation_id,
            source="click" if event_type in CLICK_TYPES else "device_test",
            writeback="pending" if event_type in CONNECTION_STATUS and event_type not in CLICK_TYPES
            and hold_writeback is None else "none",
            writeback_reason=hold_writeback,
            details=details,
        )
        stored, created = self._events.create_once(event)
        acs_user_id = (details or {}).get("acsUserId")
        if event_type == "call_identity_issued" and self._identities is not None and isinstance(acs_user_id, str):
            # The meeting's roster names this identity "patient" (lib/presence/roster.py).
            now = self._clock.now()
            self._identities.register(acs_user_id, appointment.key, "patient",
                                      expires=max(appointment.end_utc or now, now) + timedelta(days=1), now=now)
        if stored.writeback == "pending":
            try:
                self._queues.send(VISIT_EVENTS_QUEUE, {"id": stored.id, "appointmentKey": stored.appointment_key,
                                                       "correlationId": correlation_id})
            except Exception:  # the queue is down: the event is stored, the write-back waits
                log.warning("visit event not enqueued environment=%s correlation=%s",
                            appointment.environment_id, correlation_id)
        log.info("visit event %s role=%s created=%s environment=%s correlation=%s", event_type, role, created,
                 appointment.environment_id, correlation_id)
        return stored
