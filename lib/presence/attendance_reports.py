"""After the meeting, where the tenant allows neither call-event subscriptions nor call records: the meeting's
attendance report fills the same participant events (queue ``call-records``, message ``read``
``attendance_report``; docs/presence.md "Attendance-report fallback").

- Each report of the meeting (one per session) lists attendance records; each record is one person with their
  join/leave intervals. Each interval becomes a ``connected`` (``joinDateTime``) and a ``disconnected``
  (``leaveDateTime``) event, ``source`` ``attendance_report``.
- Who is who comes from ``identity.id`` only, through :meth:`lib.presence.roster.RosterService.classify` (the
  same rules and opaque references as the roster): an Entra object ID mapped to an EHR user is the clinician,
  an ACS identity our join page registered is the patient or interpreter, anyone else is ``other``. Names and
  e-mail addresses in the records are never read.
- Connects and disconnects of clinician and patient are written back like roster events (the write-back keeps
  them in order per participant); others are recorded for the reports only.
- The report only fills what is missing: an event of the same participant and type within
  :data:`SAME_MOMENT` (from the roster or the call record) already tells it. Event IDs are deterministic, so a
  rerun or a redelivered message adds nothing.
- Until a report exists (404 or an empty list) the message comes back every :data:`RETRY_EVERY`; after a 429
  or 5xx after Graph's ``Retry-After``; :data:`GIVE_UP_AFTER` past the scheduled end it stops with
  ``not_available``. A 403 is ``not_allowed``. The outcome is kept in the visit's ``call_quality`` document
  (``attendance_report``), which ``./dev ops visit timeline`` shows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lib.clock import Clock
from lib.models import Appointment, iso, parse_iso
from lib.presence.participants import WRITTEN_BACK_ROLES, WRITTEN_BACK_TYPES, merged_stays, participant_ref
from lib.presence.roster import tell_reports
from lib.queues import VISIT_EVENTS_QUEUE
from lib.store.appointments import AppointmentRepository
from lib.store.call_quality import CallQualityRepository
from lib.store.presence import RosterEntry
from lib.store.visit_events import VisitEvent, VisitEventRepository
from lib.teams.attendance_reports import AttendanceReportsClient, AttendanceReportsError
from lib.visits.events import QueueSender, event_id
from lib.visits.writeback import message_for

log = logging.getLogger(__name__)

#: While no report is ready, look again this often.
RETRY_EVERY = timedelta(minutes=10)
#: Stop looking this long after the visit's scheduled end.
GIVE_UP_AFTER = timedelta(hours=24)
#: An event of the same participant and type this close already tells a join or leave.
SAME_MOMENT = timedelta(minutes=2)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

Classify = Callable[[dict[str, Any]], RosterEntry | None]


def roster_identity(identity: Any) -> dict[str, Any]:
    """An attendance record's flat ``identity`` (``{"@odata.type"?, "id", ...}``) in the shape the roster's
    ``identitySet`` has, so :meth:`RosterService.classify` reads it: an ACS identity (its type, or an ID
    starting ``8:acs:``) -> ``azureCommunicationServicesUser``; a Teams user (``communicationsUserIdentity``, or
    an Entra object ID) -> ``user``; anyone else -> ``guest``. Only the ID is carried over."""
    if not isinstance(identity, dict) or not isinstance(identity.get("id"), str) or not identity["id"]:
        return {}
    raw = identity["id"]
    kind = str(identity.get("@odata.type") or "")
    if "azureCommunicationServicesUser" in kind or raw.startswith("8:acs:"):
        return {"azureCommunicationServicesUser": {"id": raw}}
    if "communicationsUserIdentity" in kind or _GUID.match(raw):
        return {"user": {"id": raw}}
    return {"guest": {"id": raw}}


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        at = parse_iso(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


@dataclass
class Stay:
    """One participant's intervals in the meeting (``leave`` ``None`` when the report lacks it)."""

    who: RosterEntry
    intervals: list[tuple[datetime, datetime | None]] = field(default_factory=list)


def stays(records: list[dict[str, Any]], classify: Classify) -> dict[tuple[str, str], Stay]:
    """The attendance records of every report, per participant (:attr:`RosterEntry.participant`: the patient's
    two devices are one participant), overlapping intervals of its identities merged, sorted; an interval
    without a join time is skipped (Graph leaves times it lacks ``null``)."""
    found: dict[tuple[str, str], Stay] = {}
    for record in records:
        who = classify(roster_identity(record.get("identity")))
        if who is None:
            continue
        for interval in record.get("attendanceIntervals") or []:
            if not isinstance(interval, dict):
                continue
            joined, left = _when(interval.get("joinDateTime")), _when(interval.get("leaveDateTime"))
            if joined is None:
                continue
            stay = found.setdefault(who.participant, Stay(who))
            if (joined, left) not in stay.intervals:  # the same session in two reports counts once
                stay.intervals.append((joined, left))
    for stay in found.values():
        stay.intervals[:] = merged_stays(stay.intervals)
    return found


def participant_events(found: dict[tuple[str, str], Stay]) -> list[tuple[RosterEntry, str, datetime]]:
    """``(participant, connected|disconnected, at)`` for every interval, in time order per participant."""
    events: list[tuple[RosterEntry, str, datetime]] = []
    for stay in found.values():
        for joined, left in stay.intervals:
            events.append((stay.who, "connected", joined))
            if left is not None:
                events.append((stay.who, "disconnected", left))
    return events


@dataclass(frozen=True)
class PullOutcome:
    """``settled``, ``retry`` (in ``retry_in`` seconds), ``not_available`` (gave up), ``not_allowed`` (403),
    ``refused`` (another 4xx), ``no_meeting``."""

    outcome: str
    retry_in: int | None = None
    added_events: int = 0


class AttendanceReportService:
    """Reads a visit's attendance reports once the meeting is over and adds the participant events they show.

    Args:
        appointments: the appointment repository (meeting ID, organizer, scheduled end).
        client: the attendance-reports client.
        classify: :meth:`lib.presence.roster.RosterService.classify`.
        visit_events, quality, queues, clock: repositories, the write-back queue producer, the app's clock.
        reports: the report feed (optional).
    """

    def __init__(self, *, appointments: AppointmentRepository, client: AttendanceReportsClient,
                 classify: Callable[[str, str, dict[str, Any], bool], RosterEntry | None],
                 visit_events: VisitEventRepository, quality: CallQualityRepository, queues: QueueSender,
                 clock: Clock, reports: Any = None) -> None:
        self._appointments = appointments
        self._client = client
        self._classify = classify
        self._events = visit_events
        self._quality = quality
        self._queues = queues
        self._clock = clock
        self._reports = reports

    def pull(self, appointment_key: str) -> PullOutcome:
        """Read the reports of the visit's meeting and add the events they show that are missing.

        Raises:
            StoreUnavailable: Cosmos DB is down (the queue retries).
        """
        appointment = self._appointments.get(appointment_key)
        if appointment is None or appointment.meeting is None:
            return PullOutcome("no_meeting")
        now = self._clock.now()
        meeting = appointment.meeting
        try:
            reports = self._client.reports(meeting.organizer_id, meeting.id)
            records: list[dict[str, Any]] | None = [] if reports else None
            for report in reports or []:
                found = self._client.records(meeting.organizer_id, meeting.id, str(report.get("id") or ""))
                if found is None:  # listed but not readable yet
                    records = None
                    break
                records.extend(found)  # type: ignore[union-attr]
        except AttendanceReportsError as exc:
            if exc.transient:
                return self._later(appointment, now, max(60, int(exc.retry_after or 0)), exc.reason)
            status = "not_allowed" if exc.not_permitted else "refused"
            log.warning("attendance report %s reason=%s environment=%s", status, exc.reason,
                        appointment.environment_id)
            self._record(appointment_key, {"status": status, "reason": exc.reason, "checked_utc": iso(now)})
            return PullOutcome(status)
        if records is None:
            return self._later(appointment, now, int(RETRY_EVERY.total_seconds()), "report_not_ready")
        added = self._apply(appointment, stays(records, lambda identity: self._classify(
            appointment.environment_id, appointment_key, identity, False)), now, len(reports or []))
        return PullOutcome("settled", added_events=added)

    def _later(self, appointment: Appointment, now: datetime, seconds: int, reason: str) -> PullOutcome:
        end = appointment.end_utc or appointment.start_utc or now
        if now - end > GIVE_UP_AFTER:
            log.warning("attendance report gave up reason=%s environment=%s", reason, appointment.environment_id)
            self._record(appointment.key, {"status": "not_available", "reason": f"gave_up_after_24h:{reason}",
                                           "checked_utc": iso(now)})
            return PullOutcome("not_available")
        self._record(appointment.key, {"status": "waiting", "reason": reason, "checked_utc": iso(now)})
        return PullOutcome("retry", retry_in=max(1, seconds))

    def _record(self, appointment_key: str, state: dict[str, Any]) -> None:
        """The pull's outcome in the visit's ``call_quality`` document (other fields kept)."""
        doc = self._quality.get(appointment_key) or {"id": appointment_key}
        doc = {k: v for k, v in doc.items() if not k.startswith("_")}
        doc["attendance_report"] = state
        self._quality.put(doc)

    def _apply(self, appointment: Appointment, found: dict[tuple[str, str], Stay], now: datetime,
               report_count: int) -> int:
        existing = self._events.for_appointment(appointment.key)
        added: list[VisitEvent] = []
        for who, kind, at in participant_events(found):
            if any(e.type == kind and (e.role, e.participant_id) == (who.role, who.participant_id)
                   and e.writeback != "superseded" and abs(e.at_utc - at) <= SAME_MOMENT for e in existing):
                continue  # the roster (or the call record) already told it
            event = self._add(appointment, who, kind, at, now)
            if event is not None:
                added.append(event)
        tell_reports(self._reports, appointment.key, added)
        self._record(appointment.key, {
            "status": "settled", "reports": report_count, "settled_utc": iso(now), "checked_utc": iso(now),
            "added_events": len(added),
            "report_events": len(added) + sum(e.source == "attendance_report" for e in existing),
            "participants": [{"role": s.who.role, "participant_id": s.who.participant_id,
                              "intervals": [[iso(a), iso(b)] for a, b in s.intervals],
                              "seconds_present": int(sum((b - a).total_seconds() for a, b in s.intervals if b))}
                             for s in found.values()]})
        log.info("attendance report settled participants=%s added_events=%s environment=%s", len(found),
                 len(added), appointment.environment_id)
        return len(added)

    def _add(self, appointment: Appointment, who: RosterEntry, kind: str, at: datetime,
             now: datetime) -> VisitEvent | None:
        written = who.role in WRITTEN_BACK_ROLES and kind in WRITTEN_BACK_TYPES
        event = VisitEvent(
            id=event_id(appointment.key, who.role, who.participant_id, kind, at.isoformat()),
            appointment_key=appointment.key, environment_id=appointment.environment_id,
            appointment_id=appointment.appointment_id, type=kind, role=who.role,  # type: ignore[arg-type]
            participant_id=who.participant_id, at_utc=at, source="attendance_report",
            writeback="pending" if written else "none", due_utc=now,
            participant_ref=participant_ref(who))
        stored, created = self._events.create_once(event)
        if created and stored.writeback == "pending":
            try:
                self._queues.send(VISIT_EVENTS_QUEUE, message_for(stored))
            except Exception:  # stored and pending: the write-back sweep enqueues it
                log.warning("attendance-report event not enqueued environment=%s", appointment.environment_id)
        return stored if created else None
