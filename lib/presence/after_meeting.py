"""What is read about a visit after its meeting, and when (queue ``call-records``; docs/presence.md).

Messages (IDs only):

- ``{"appointmentKey", "callEndedUtc"?}``: read the call records (queued by the roster each time a call of the
  meeting ended, with that ``callEnded``'s time: its record is waited for; by the subscription timer when the
  roster may have missed the end, without it).
- ``{"appointmentKey", "read": "call_record", "then": "attendance_report"}``: read the call record; if the tenant
  refuses it (403), read the attendance report instead. Queued when the environment's ``presence_source`` is
  ``auto`` and Graph refused the visit's call-events subscription as not permitted.
- ``{"appointmentKey", "read": "attendance_report"}``: read the attendance report (``presence_source``
  ``attendance_report``, or the fallback above).

Without a known end of the call (no roster), nothing is read before the visit's scheduled end +
:data:`LOOK_AFTER_END`: an early message (a visit more than a week away is scheduled at the queue's longest
visibility timeout; a visit moved later) comes back then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from lib.clock import Clock
from lib.models import iso, parse_iso
from lib.queues import CALL_RECORDS_QUEUE
from lib.store.appointments import AppointmentRepository
from lib.store.presence import PresenceRepository
from lib.visits.events import QueueSender

log = logging.getLogger(__name__)

Read = Literal["call_record", "attendance_report"]
#: First look this long after the scheduled end when the roster did not show the call's end.
LOOK_AFTER_END = timedelta(minutes=5)
#: Longest visibility timeout of a Storage queue message is 7 days.
MAX_DELAY = timedelta(days=7) - timedelta(minutes=1)


@dataclass(frozen=True)
class AfterMeetingWork:
    """One message of the queue, parsed."""

    appointment_key: str
    read: Read = "call_record"
    then: Read | None = None
    call_ended_utc: datetime | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> AfterMeetingWork:
        """From a decoded message.

        Raises:
            ValueError: no appointment key, or an unknown ``read`` / ``then``.
        """
        key = body.get("appointmentKey")
        if not isinstance(key, str) or "|" not in key:
            raise ValueError("call-records message without an appointmentKey")
        read = body.get("read", "call_record")
        then = body.get("then")
        if read not in ("call_record", "attendance_report") or then not in (None, "attendance_report"):
            raise ValueError("call-records message with an unknown read")
        ended = body.get("callEndedUtc")
        try:
            call_ended = parse_iso(ended) if isinstance(ended, str) else None
        except ValueError:
            raise ValueError("call-records message with an unreadable callEndedUtc") from None
        if ended is not None and (call_ended is None or call_ended.tzinfo is None):
            raise ValueError("call-records message with an unreadable callEndedUtc")
        return cls(key, read, then, call_ended)

    def message(self) -> dict[str, str]:
        """The queue message of this work."""
        body = {"appointmentKey": self.appointment_key}
        if self.read != "call_record" or self.then:
            body["read"] = self.read
        if self.then:
            body["then"] = self.then
        if self.call_ended_utc is not None:
            body["callEndedUtc"] = iso(self.call_ended_utc) or ""
        return body


def schedule(queues: QueueSender, work: AfterMeetingWork, *, visible_at: datetime, now: datetime) -> None:
    """Queue ``work`` to become visible at ``visible_at`` (at most :data:`MAX_DELAY` ahead).

    Raises:
        Exception: the queue did not take it (the caller keeps its state so that it tries again).
    """
    delay = min(max(visible_at - now, timedelta(0)), MAX_DELAY)
    queues.send(CALL_RECORDS_QUEUE, work.message(), visibility_timeout=int(delay.total_seconds()))


@dataclass(frozen=True)
class AfterMeetingOutcome:
    """What one message did: the ``read`` tried, its ``outcome``, and ``retry`` (the work to queue again in
    ``retry_in`` seconds) or ``None``."""

    read: Read
    outcome: str
    added_events: int = 0
    retry: AfterMeetingWork | None = None
    retry_in: int | None = None


class AfterMeeting:
    """Runs one after-the-meeting message: waits for the meeting's end, reads the call record or the
    attendance report, falls back from one to the other where the message says so.

    Args:
        appointments, presence: repositories (scheduled end; the call's end as the roster saw it).
        call_records: :class:`lib.presence.call_records.CallRecordService`.
        attendance: :class:`lib.presence.attendance_reports.AttendanceReportService`.
        clock: the app's clock.
    """

    def __init__(self, *, appointments: AppointmentRepository, presence: PresenceRepository, call_records: Any,
                 attendance: Any, clock: Clock) -> None:
        self._appointments = appointments
        self._presence = presence
        self._call_records = call_records
        self._attendance = attendance
        self._clock = clock

    def run(self, work: AfterMeetingWork) -> AfterMeetingOutcome:
        """Do ``work``.

        Raises:
            StoreUnavailable: Cosmos DB is down (the queue retries).
        """
        wait = self._too_early(work.appointment_key)
        if wait is not None:
            return AfterMeetingOutcome(work.read, "not_yet", retry=work, retry_in=wait)
        if work.read == "call_record":
            settled = self._call_records.settle(work.appointment_key, call_ended=work.call_ended_utc)
            if settled.outcome == "not_allowed" and work.then == "attendance_report":
                log.info("call record not allowed: the attendance report fills the visit")
                return self._pull(AfterMeetingWork(work.appointment_key, "attendance_report"))
            return AfterMeetingOutcome("call_record", settled.outcome, settled.added_events,
                                       work if settled.retry_in is not None else None, settled.retry_in)
        return self._pull(work)

    def _pull(self, work: AfterMeetingWork) -> AfterMeetingOutcome:
        pulled = self._attendance.pull(work.appointment_key)
        return AfterMeetingOutcome("attendance_report", pulled.outcome, pulled.added_events,
                                   work if pulled.retry_in is not None else None, pulled.retry_in)

    def _too_early(self, appointment_key: str) -> int | None:
        """Seconds to wait when the call's end is unknown and the scheduled end + :data:`LOOK_AFTER_END` is
        still ahead; ``None`` when it is time."""
        presence = self._presence.get(appointment_key)
        if presence is not None and presence.call_ended_utc is not None:
            return None
        appointment = self._appointments.get(appointment_key)
        end = appointment.end_utc if appointment else None
        if end is None:
            return None
        ahead = end + LOOK_AFTER_END - self._clock.now()
        if ahead <= timedelta(0):
            return None
        return max(1, int(min(ahead, MAX_DELAY).total_seconds()))
