"""Writing participant events back to the EHR (queue ``visit-events``, poison ``visit-events-poison``).

At-least-once and idempotent: an event already ``written`` (or ``failed``) is skipped; a transient EHR
failure raises so the queue redelivers (the host moves the message to the poison queue after 5 attempts);
a permanent one marks the event ``failed`` and returns. Marks are ETag-guarded (``If-Match``).

The sweep (:meth:`WritebackService.sweep`, timer ``writeback_sweep`` every 5 minutes) re-enqueues events
still ``pending`` after :data:`SWEEP_AFTER` (their enqueue failed while the visit went on, or the message
was lost), at most :data:`MAX_REQUEUES` times each; then they are marked ``failed`` (``requeue_exhausted``).
A duplicate message is harmless: the write-back skips an event that is no longer ``pending``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from lib.clock import Clock
from lib.ehr.writeback import CONNECTION_STATUS, PermanentWritebackError, TransientWritebackError
from lib.models import EnvironmentConfig
from lib.store.environments import EnvironmentRepository
from lib.store.errors import ConcurrencyConflict
from lib.store.visit_events import VisitEvent, VisitEventRepository

log = logging.getLogger(__name__)

#: An event still pending this long after it happened is re-enqueued by the sweep.
SWEEP_AFTER = timedelta(minutes=15)
#: Re-enqueues per event before it is marked failed.
MAX_REQUEUES = 5
SWEEP_BATCH = 100


class EhrWriteback(Protocol):
    """The EHR call (:class:`lib.ehr.writeback.EpicWritebackClient`)."""

    def set_connection_status(self, environment: EnvironmentConfig, *, conference_id: str, external_id: str,
                              status: str, fhir_base_url: str | None = None) -> None:
        """Write one participant status."""
        ...


@dataclass(frozen=True)
class WritebackOutcome:
    """``outcome``: ``written``, ``skipped`` (already done), ``missing`` (no such event) or ``failed``;
    ``reason``: short code for ``failed``."""

    outcome: str
    reason: str | None = None


class WritebackService:
    """Writes one visit event back to the EHR.

    Args:
        visit_events, environments: repositories.
        ehr: the EHR client.
        clock: the clock.
    """

    def __init__(self, *, visit_events: VisitEventRepository, environments: EnvironmentRepository,
                 ehr: EhrWriteback, clock: Clock) -> None:
        self._events = visit_events
        self._environments = environments
        self._ehr = ehr
        self._clock = clock

    def write(self, event_id: str, appointment_key: str, *, correlation_id: str | None = None) -> WritebackOutcome:
        """Write the event ``event_id`` of ``appointment_key`` unless it is already written or failed.

        Raises:
            TransientWritebackError: the EHR may accept it later (the queue retries).
            StoreUnavailable: Cosmos DB is down (the queue retries).
        """
        event = self._events.get(appointment_key, event_id)
        if event is None:
            log.warning("writeback: event missing correlation=%s", correlation_id)
            return WritebackOutcome("missing")
        if event.writeback != "pending":
            return WritebackOutcome("skipped")
        if event.type not in CONNECTION_STATUS:
            return self._fail(event, "unsupported_event_type", correlation_id)
        environment = self._environments.get(event.environment_id)
        if environment is None:
            return self._fail(event, "environment_missing", correlation_id)
        try:
            self._ehr.set_connection_status(environment, conference_id=event.appointment_id,
                                            external_id=event.participant_id, status=event.type)
        except PermanentWritebackError as exc:
            return self._fail(event, exc.reason, correlation_id)
        except TransientWritebackError as exc:
            log.warning("writeback transient failure reason=%s environment=%s correlation=%s", exc.reason,
                        event.environment_id, correlation_id)
            raise
        self._mark(event, "written")
        log.info("writeback written type=%s role=%s environment=%s correlation=%s", event.type, event.role,
                 event.environment_id, correlation_id)
        return WritebackOutcome("written")

    def sweep(self, queues: Any, *, correlation_id: str | None = None) -> dict[str, int]:
        """Re-enqueue events still ``pending`` :data:`SWEEP_AFTER` after they happened (and after their last
        re-enqueue). Returns ``{"requeued": n, "exhausted": n}``.

        Args:
            queues: the queue producer (``send(queue, message)``).

        Raises:
            StoreUnavailable: Cosmos DB is down (the timer runs again in 5 minutes).
        """
        from lib.queues import VISIT_EVENTS_QUEUE

        now = self._clock.now()
        cutoff = now - SWEEP_AFTER
        counts = {"requeued": 0, "exhausted": 0}
        for event in self._events.pending_before(cutoff, limit=SWEEP_BATCH):
            if event.requeued_utc is not None and event.requeued_utc > cutoff:
                continue
            if event.requeue_count >= MAX_REQUEUES:
                self._fail(event, "requeue_exhausted", event.correlation_id)
                counts["exhausted"] += 1
                continue
            try:
                self._events.update(event, requeued_utc=now, requeue_count=event.requeue_count + 1)
            except ConcurrencyConflict:
                continue  # the write-back is working on it right now
            try:
                queues.send(VISIT_EVENTS_QUEUE, {"id": event.id, "appointmentKey": event.appointment_key,
                                                 "correlationId": event.correlation_id})
            except Exception:
                log.warning("writeback sweep could not enqueue environment=%s correlation=%s",
                            event.environment_id, correlation_id)
                break  # the queue is down: try again at the next run
            counts["requeued"] += 1
        if counts["requeued"] or counts["exhausted"]:
            log.info("writeback sweep requeued=%s exhausted=%s correlation=%s", counts["requeued"],
                     counts["exhausted"], correlation_id)
        return counts

    def mark_poisoned(self, event_id: str, appointment_key: str, *, correlation_id: str | None = None) \
            -> WritebackOutcome:
        """Record that the queue gave up on an event (poison queue): mark it ``failed`` unless written.

        Raises:
            StoreUnavailable: Cosmos DB is down.
        """
        event = self._events.get(appointment_key, event_id)
        if event is None:
            return WritebackOutcome("missing")
        if event.writeback != "pending":
            return WritebackOutcome("skipped")
        return self._fail(event, "poisoned", correlation_id)

    def _fail(self, event: VisitEvent, reason: str, correlation_id: str | None) -> WritebackOutcome:
        log.warning("writeback failed reason=%s environment=%s correlation=%s", reason, event.environment_id,
                    correlation_id)
        self._mark(event, "failed", reason)
        return WritebackOutcome("failed", reason)

    def _mark(self, event: VisitEvent, state: str, reason: str | None = None) -> None:
        """Set ``writeback`` with If-Match; on a lost race re-read, and accept a final state set by another."""
        current = event
        for _ in range(3):
            try:
                self._events.update(
                    current, writeback=state, writeback_utc=self._clock.now(), writeback_reason=reason
                )
                return
            except ConcurrencyConflict:
                fresh = self._events.get(event.appointment_key, event.id)
                if fresh is None or fresh.writeback != "pending":
                    return
                current = fresh
        raise ConcurrencyConflict("visit event kept changing")
