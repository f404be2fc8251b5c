"""Writing participant events back to the EHR (queue ``visit-events``, poison ``visit-events-poison``).

Exactly once, in order, surviving Epic outages (docs/writeback.md):

- **Claim before the call.** A worker moves the event ``pending -> sending`` with ``If-Match`` before it calls
  Epic, as the SMS outbox does, so an overlapping redelivery finds it claimed and leaves it alone. After the
  call it records ``written``, ``failed`` (a permanent refusal, with Epic's reason) or, for a transient
  failure, ``pending`` again with its next attempt due. A claim older than :data:`CLAIM_LEASE` belongs to a
  worker that died mid-call: the outcome is unknown and Epic cannot deduplicate, so the event is marked
  ``unknown`` (at most once; the operator sees it and can replay it) instead of being written again.
- **In order per participant.** An event waits while an earlier event of the same participant is still to be
  written (the writer of that earlier one enqueues it when done); an event older than one already written for
  that participant is ``superseded``, so a disconnect processed before its connect never leaves someone shown
  as connected.
- **A time-out is not resent.** ``SetExternalConnectionStatus`` has no idempotency key: a call that timed out
  may be in Epic already, or land later (after a newer status). So it is ``unknown`` at once (at most once,
  the ambiguity recorded, listed on the write-back failures page for an operator to check in Epic), and
  the participant's next status waits until :data:`AMBIGUOUS_SETTLE` after it, so whatever Epic applies
  last is the participant's latest state.
- **Backoff with the queue.** Transient failures (429 with ``Retry-After``, 5xx, connect failures) are retried after
  ``min(BACKOFF_BASE * 2^(attempts-1), BACKOFF_CAP)`` or Epic's ``Retry-After`` when longer, by enqueuing the
  message again with that visibility timeout (no sleeping); past the environment's retry horizon (default a
  day from the first attempt) the event is ``failed``. The sweep (timer ``writeback_sweep``) re-enqueues any
  event whose attempt is overdue (its message was lost, or the clock moved), and releases dead claims.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from lib.clock import Clock
from lib.ehr.writeback import PermanentWritebackError, TransientWritebackError
from lib.models import EnvironmentConfig
from lib.observability import metrics
from lib.queues import VISIT_EVENTS_QUEUE
from lib.store.environments import EnvironmentRepository
from lib.store.errors import ConcurrencyConflict
from lib.store.visit_events import FINAL_WRITEBACK, VisitEvent, VisitEventRepository
from lib.stored_settings import NOT_FOR_WRITEBACK, UnusableSetting, check_usable

log = logging.getLogger(__name__)

#: The sweep re-enqueues an event whose attempt has been due this long without being made.
SWEEP_AFTER = timedelta(seconds=60)
#: A ``sending`` claim older than this belongs to a worker that died mid-call (functionTimeout is 10 min).
CLAIM_LEASE = timedelta(minutes=11)
#: How long after a call that timed out (its claim) Epic may still apply it. The participant's next status
#: waits this long, so it lands after any slow original and Epic ends on the latest state. Assumption:
#: Interconnect is an ASP.NET application, whose default request execution timeout is 110 s.
AMBIGUOUS_SETTLE = timedelta(minutes=2)
#: The reason of an event whose call timed out (it may or may not be in Epic).
TIMEOUT_UNKNOWN = "outcome_unknown_epic_timeout"
#: First retry delay and the longest one between two attempts.
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
#: A message more than this early for its event's next attempt is a duplicate: the due one will come.
EARLY_TOLERANCE = timedelta(seconds=5)
#: Azure Queue's longest visibility timeout.
MAX_VISIBILITY = timedelta(days=7)
SWEEP_BATCH = 200


class EhrWriteback(Protocol):
    """The EHR call (:class:`lib.ehr.writeback.EpicWritebackClient`)."""

    def set_connection_status(self, environment: EnvironmentConfig, *, conference_id: str, external_id: str,
                              status: str, fhir_base_url: str | None = None) -> None:
        """Write one participant status."""
        ...


class QueueSender(Protocol):
    """What :class:`lib.queues.QueueProducer` offers."""

    def send(self, queue: str, message: Any, *, visibility_timeout: int | None = None) -> None:
        """Enqueue one message."""
        ...


@dataclass(frozen=True)
class WritebackOutcome:
    """``outcome``: ``written``; ``retry`` (transient failure, next attempt in ``retry_in`` seconds);
    ``failed`` / ``unknown`` / ``superseded`` (with ``reason``); ``skipped`` (already final); ``in_progress``
    (claimed by another worker); ``waiting`` (an earlier event of the participant goes first); ``not_due``
    (a duplicate message ahead of the event's next attempt); ``missing`` (no such event)."""

    outcome: str
    reason: str | None = None
    retry_in: int | None = None


def message_for(event: VisitEvent) -> dict[str, Any]:
    """The ``visit-events`` message of an event (IDs only)."""
    return {"id": event.id, "appointmentKey": event.appointment_key, "correlationId": event.correlation_id}


def _writes_back(event: VisitEvent) -> bool:
    return event.writeback not in ("none",)


#: The events whose order matters: a participant's connects and disconnects (device tests stand alone).
PRESENCE_TYPES = frozenset({"connected", "disconnected"})


def _same_participant(a: VisitEvent, b: VisitEvent) -> bool:
    """Same participant, and both presence events (ordering never involves a device test)."""
    return ((a.role, a.participant_id) == (b.role, b.participant_id)
            and a.type in PRESENCE_TYPES and b.type in PRESENCE_TYPES)


def _order(event: VisitEvent) -> tuple[datetime, int]:
    # At the same instant a connect goes before a disconnect.
    return event.at_utc, 0 if event.type == "connected" else 1


class WritebackService:
    """Writes visit events back to the EHR, once each, in order.

    Args:
        visit_events, environments: repositories.
        ehr: the EHR client.
        clock: the clock (the app's: tests and the demo move it).
        queues: the queue producer (successors and retries are enqueued through it).
    """

    def __init__(self, *, visit_events: VisitEventRepository, environments: EnvironmentRepository,
                 ehr: EhrWriteback, clock: Clock, queues: QueueSender | None = None) -> None:
        self._events = visit_events
        self._environments = environments
        self._ehr = ehr
        self._clock = clock
        self._queues = queues

    # ---- one message ------------------------------------------------------------------------------
    def write(self, event_id: str, appointment_key: str, *, correlation_id: str | None = None) -> WritebackOutcome:
        """Write the event ``event_id`` of ``appointment_key`` if it is due, first in line, and unclaimed.

        Raises:
            StoreUnavailable: Cosmos DB is down (the queue retries).
        """
        event = self._events.get(appointment_key, event_id)
        if event is None:
            log.warning("writeback: event missing correlation=%s", correlation_id)
            return WritebackOutcome("missing")
        now = self._clock.now()
        if event.writeback in FINAL_WRITEBACK:
            return WritebackOutcome("skipped")
        if event.writeback == "sending":
            if event.claimed_utc is not None and now - event.claimed_utc < CLAIM_LEASE:
                return WritebackOutcome("in_progress")
            return self._abandon(event, correlation_id)
        if event.due_utc is not None and event.due_utc - now > EARLY_TOLERANCE:
            return WritebackOutcome("not_due")
        try:
            environment = self._environments.get(event.environment_id)
            if environment is not None:
                check_usable(environment, ignore=NOT_FOR_WRITEBACK)
        except UnusableSetting as unusable:  # listed with its reason; replayed once the portal has it right
            log.warning("writeback refused: environment %s has unusable settings (%s) correlation=%s",
                        event.environment_id, ", ".join(p.setting for p in unusable.problems), correlation_id)
            return self._fail(event, "environment_settings_invalid", unusable.reason, correlation_id)
        if environment is None:
            return self._fail(event, "environment_missing", None, correlation_id)
        if environment.status_code(event.type) is None:
            return self._fail(event, "unsupported_event_type", None, correlation_id)
        siblings = [e for e in self._events.for_appointment(appointment_key)
                    if e.id != event.id and _same_participant(e, event) and _writes_back(e)]
        if any(_order(e) > _order(event) and e.writeback in ("written", "sending", "unknown") for e in siblings):
            return self._finish(event, "superseded", reason="later_event_already_written",
                                correlation_id=correlation_id)
        if any(_order(e) < _order(event) and e.writeback in ("pending", "sending") for e in siblings):
            return WritebackOutcome("waiting")
        settling = self._settling_until(event, siblings, now)
        if settling is not None:
            return self._wait_for_settle(event, settling, correlation_id)
        claimed = self._claim(event, now)
        if claimed is None:
            return WritebackOutcome("in_progress")
        try:
            self._ehr.set_connection_status(environment, conference_id=event.appointment_id,
                                            external_id=event.participant_id, status=event.type)
        except PermanentWritebackError as exc:
            outcome = self._fail(claimed, exc.reason, exc.detail, correlation_id)
        except TransientWritebackError as exc:
            if exc.ambiguous:  # Epic may have it, or may still apply it: never resent blindly
                outcome = self._timed_out(claimed, exc, correlation_id)
                self._release_successors(claimed, siblings)
                return outcome
            return self._retry_later(claimed, exc, environment, correlation_id)
        else:
            outcome = self._finish(claimed, "written", correlation_id=correlation_id)
            log.info("writeback written type=%s role=%s environment=%s correlation=%s", event.type, event.role,
                     event.environment_id, correlation_id)
        self._release_successors(claimed, siblings)
        return outcome

    def _claim(self, event: VisitEvent, now: datetime) -> VisitEvent | None:
        try:
            return self._events.update(event, writeback="sending", claimed_utc=now, claim_id=uuid.uuid4().hex,
                                       attempts=event.attempts + 1,
                                       first_attempt_utc=event.first_attempt_utc or now)
        except ConcurrencyConflict:
            return None  # another worker claimed it (or changed it) first

    def _retry_later(self, event: VisitEvent, exc: TransientWritebackError, environment: EnvironmentConfig,
                     correlation_id: str | None) -> WritebackOutcome:
        now = self._clock.now()
        delay = min(BACKOFF_BASE * (2 ** max(0, event.attempts - 1)), BACKOFF_CAP)
        if exc.retry_after is not None:
            delay = max(delay, timedelta(seconds=exc.retry_after))
        delay = min(delay, MAX_VISIBILITY)
        horizon = timedelta(minutes=environment.writeback_retry_horizon_minutes)
        first = event.first_attempt_utc or now
        ambiguous = event.ambiguous_attempts + (1 if exc.ambiguous else 0)
        if now + delay > first + horizon:
            return self._fail(event, f"retry_horizon_exceeded:{exc.reason}", exc.detail, correlation_id,
                              ambiguous_attempts=ambiguous)
        log.warning("writeback transient failure reason=%s attempt=%s retry_in=%ss environment=%s correlation=%s",
                    exc.reason, event.attempts, int(delay.total_seconds()), event.environment_id, correlation_id)
        self._finish(event, "pending", reason=None, correlation_id=correlation_id, due_utc=now + delay,
                     last_error=exc.reason, epic_detail=exc.detail, ambiguous_attempts=ambiguous)
        metrics.writeback("retry", exc.reason)
        return WritebackOutcome("retry", exc.reason, retry_in=max(1, int(delay.total_seconds())))

    def _timed_out(self, event: VisitEvent, exc: TransientWritebackError,
                   correlation_id: str | None) -> WritebackOutcome:
        """Epic did not answer in time: the status may be in Epic, or arrive there later. ``SetExternalConnection
        Status`` has no idempotency key, so a resend could reach Epic twice, and a slow original could land
        after a newer status. The event is ``unknown`` (at most once, the ambiguity recorded and listed on the
        write-back failures page); the participant's next status waits :data:`AMBIGUOUS_SETTLE`."""
        log.error("writeback timed out, outcome unknown reason=%s environment=%s correlation=%s", exc.reason,
                  event.environment_id, correlation_id)
        return self._finish(event, "unknown", reason=TIMEOUT_UNKNOWN, correlation_id=correlation_id,
                            last_error=exc.reason, ambiguous_attempts=event.ambiguous_attempts + 1)

    @staticmethod
    def _settling_until(event: VisitEvent, siblings: Iterable[VisitEvent], now: datetime) -> datetime | None:
        """When the last earlier call of the same participant that timed out can no longer land in Epic, if
        that is still ahead (``None`` otherwise)."""
        ends = [e.claimed_utc + AMBIGUOUS_SETTLE for e in siblings
                if e.writeback == "unknown" and e.claimed_utc is not None and _order(e) < _order(event)]
        latest = max(ends, default=None)
        return latest if latest is not None and latest > now else None

    def _wait_for_settle(self, event: VisitEvent, until: datetime, correlation_id: str | None) -> WritebackOutcome:
        """Come back at ``until`` (the message is enqueued again with that delay; ``due_utc`` tells the sweep)."""
        try:
            self._events.update(event, due_utc=until)
        except ConcurrencyConflict:
            return WritebackOutcome("in_progress")
        seconds = max(1, int((until - self._clock.now()).total_seconds()) + 1)
        log.info("writeback waits %ss for an earlier timed-out call to settle environment=%s correlation=%s",
                 seconds, event.environment_id, correlation_id)
        return WritebackOutcome("waiting", "earlier_call_timed_out", retry_in=seconds)

    def _abandon(self, event: VisitEvent, correlation_id: str | None) -> WritebackOutcome:
        """A dead worker's claim: the call may or may not have reached Epic. Record that; never call again."""
        log.error("writeback claim expired (worker died mid-call) environment=%s correlation=%s",
                  event.environment_id, correlation_id)
        outcome = self._finish(event, "unknown", reason="outcome_unknown_worker_died", correlation_id=correlation_id,
                               ambiguous_attempts=event.ambiguous_attempts + 1)
        self._release_successors(event, None)
        return outcome

    def _fail(self, event: VisitEvent, reason: str, detail: str | None, correlation_id: str | None,
              **extra: Any) -> WritebackOutcome:
        log.warning("writeback failed reason=%s environment=%s correlation=%s", reason, event.environment_id,
                    correlation_id)
        return self._finish(event, "failed", reason=reason, correlation_id=correlation_id, epic_detail=detail,
                            last_error=reason, **extra)

    def _finish(self, event: VisitEvent, state: str, *, reason: str | None = None, correlation_id: str | None,
                **extra: Any) -> WritebackOutcome:
        """Record ``state`` with If-Match. On a lost race, re-read: a claim that is still ours (same
        ``claim_id``) is applied again; anything else that another worker finished wins."""
        current = event
        for _ in range(3):
            try:
                self._events.update(current, writeback=state, writeback_utc=self._clock.now(),
                                    writeback_reason=reason, **extra)
                break
            except ConcurrencyConflict:
                fresh = self._events.get(event.appointment_key, event.id)
                if fresh is None or (fresh.claim_id != event.claim_id) or fresh.writeback in FINAL_WRITEBACK:
                    return WritebackOutcome("skipped")
                current = fresh
        else:
            raise ConcurrencyConflict("visit event kept changing")
        if state in ("failed", "unknown"):
            metrics.writeback(state, reason)
        elif state != "pending":
            metrics.writeback(state)
        return WritebackOutcome(state, reason)

    def _release_successors(self, event: VisitEvent, siblings: Iterable[VisitEvent] | None) -> None:
        """Enqueue the next pending event of the same participant, which waited for this one."""
        if self._queues is None:
            return
        if siblings is None:
            siblings = [e for e in self._events.for_appointment(event.appointment_key)
                        if e.id != event.id and _same_participant(e, event)]
        later = sorted((e for e in siblings if e.writeback == "pending" and _order(e) > _order(event)), key=_order)
        if later:
            try:
                self._queues.send(VISIT_EVENTS_QUEUE, message_for(later[0]))
            except Exception:  # the sweep picks it up
                log.warning("writeback successor not enqueued environment=%s", event.environment_id)

    # ---- timer -------------------------------------------------------------------------------------
    def sweep(self, queues: QueueSender | None = None, *, correlation_id: str | None = None) -> dict[str, int]:
        """Re-enqueue events whose attempt is overdue by :data:`SWEEP_AFTER` (and not re-enqueued since), mark
        claims older than :data:`CLAIM_LEASE` ``unknown``. Returns ``{"requeued": n, "abandoned": n}``.

        Raises:
            StoreUnavailable: Cosmos DB is down (the timer runs again in 5 minutes).
        """
        queues = queues or self._queues
        now = self._clock.now()
        cutoff = now - SWEEP_AFTER
        counts = {"requeued": 0, "abandoned": 0}
        for event in self._events.pending_before(cutoff, limit=SWEEP_BATCH):
            if event.writeback == "sending":
                if event.claimed_utc is not None and now - event.claimed_utc >= CLAIM_LEASE:
                    self._abandon(event, event.correlation_id)
                    counts["abandoned"] += 1
                continue
            if event.requeued_utc is not None and event.requeued_utc > cutoff:
                continue
            try:
                self._events.update(event, requeued_utc=now, requeue_count=event.requeue_count + 1)
            except ConcurrencyConflict:
                continue  # the write-back is working on it right now
            try:
                assert queues is not None
                queues.send(VISIT_EVENTS_QUEUE, message_for(event))
            except Exception:
                log.warning("writeback sweep could not enqueue environment=%s correlation=%s",
                            event.environment_id, correlation_id)
                break  # the queue is down: try again at the next run
            counts["requeued"] += 1
        if counts["requeued"] or counts["abandoned"]:
            log.info("writeback sweep requeued=%s abandoned=%s correlation=%s", counts["requeued"],
                     counts["abandoned"], correlation_id)
        return counts

    # ---- poison --------------------------------------------------------------------------------------
    def mark_poisoned(self, event_id: str, appointment_key: str, *, correlation_id: str | None = None) \
            -> WritebackOutcome:
        """Record that the queue gave up on an event (poison queue): mark it ``failed`` unless it is final or
        a live worker holds it.

        Raises:
            StoreUnavailable: Cosmos DB is down.
        """
        event = self._events.get(appointment_key, event_id)
        if event is None:
            return WritebackOutcome("missing")
        if event.writeback != "pending":
            return WritebackOutcome("skipped")
        return self._fail(event, "poisoned", None, correlation_id)

