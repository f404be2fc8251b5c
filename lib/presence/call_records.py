"""After the meeting: the Graph call record settles the final attendance and keeps media quality per
participant (queue ``call-records``, enqueued each time a call of the meeting ends).

- The records are found from shortly before the first call's start on, matched on the meeting's ``joinWebUrl``
  (:class:`lib.teams.call_records.CallRecordsClient`): one per call (everyone left and came back later is a
  second call), all read and applied together. Graph makes a record minutes to hours after its call: until the
  one of the call that just ended exists, and on 429/5xx (after ``Retry-After``), the message comes back later
  (visibility timeout), for up to :data:`GIVE_UP_AFTER` after the call ended.
- **Attendance.** Each session of the record is one participant's stay (caller = the participant). A stay
  whose join or leave the roster notifications did not show (a missed notification, a lost subscription) is
  added as a ``connected`` / ``disconnected`` event (``source`` ``call_record``) and written back like the
  others; the write-back's order rules keep Epic's final state right.
- **Quality.** Per participant and media (``main-audio``, ``main-video``): mean of the streams' average jitter
  and round-trip time (ms) and packet loss rate, stored in ``call_quality`` for the reports.
- A tenant that refuses call records (403, no ``CallRecords.Read.All``) is recorded as ``not_allowed``; the
  attendance-report fallback is not built (docs/presence.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lib import queues
from lib.clock import Clock
from lib.models import iso, parse_iso
from lib.presence.participants import WRITTEN_BACK_ROLES, merged_stays
from lib.presence.roster import RosterService, tell_reports
from lib.queues import VISIT_EVENTS_QUEUE
from lib.reports.inputs import duration_ms
from lib.store.appointments import AppointmentRepository
from lib.store.call_quality import CallQualityRepository
from lib.store.presence import PresenceRepository, RosterEntry
from lib.store.visit_events import VisitEvent, VisitEventRepository
from lib.teams.call_records import CallRecordsClient, CallRecordsError, RecordSummary
from lib.visits.events import QueueSender, event_id
from lib.visits.writeback import message_for

log = logging.getLogger(__name__)

CALL_RECORDS_QUEUE = queues.CALL_RECORDS_QUEUE
#: First look for the record this long after the call ended, then every RETRY_EVERY.
FIRST_LOOK_AFTER = timedelta(minutes=2)
RETRY_EVERY = timedelta(minutes=15)
GIVE_UP_AFTER = timedelta(hours=24)
#: A roster event this close to a stay's start (or end) already tells it.
SAME_MOMENT = timedelta(minutes=2)
#: The record's start (first join) is looked for this close to the call's start as the roster showed it.
WINDOW = timedelta(minutes=30)
#: Our roles -> the reports' roles (``lib.reports.inputs.Role``).
REPORT_ROLES = {"provider": "clinician", "patient": "patient", "interpreter": "interpreter", "other": "other"}


@dataclass(frozen=True)
class SettleOutcome:
    """``settled``, ``retry`` (in ``retry_in`` seconds), ``not_available`` (gave up), ``not_allowed``,
    ``no_meeting``."""

    outcome: str
    retry_in: int | None = None
    added_events: int = 0


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def media_quality(segments: list[Any]) -> dict[str, dict[str, float | None]]:
    """``{"audio"|"video": {"jitter_ms", "packet_loss_rate", "round_trip_ms"}}`` over the segments' streams."""
    found: dict[str, dict[str, list[float]]] = {}
    for segment in segments:
        for media in (segment.get("media") or []) if isinstance(segment, dict) else []:
            label = str(media.get("label") or "")
            kind = "audio" if "audio" in label else "video" if "video" in label and "sharing" not in label else None
            if kind is None:
                continue
            bucket = found.setdefault(kind, {"jitter_ms": [], "packet_loss_rate": [], "round_trip_ms": []})
            for stream in media.get("streams") or []:
                for name, value in (("jitter_ms", duration_ms(stream.get("averageJitter"))),
                                    ("packet_loss_rate", stream.get("averagePacketLossRate")),
                                    ("round_trip_ms", duration_ms(stream.get("averageRoundTripTime")))):
                    if isinstance(value, int | float):
                        bucket[name].append(float(value))
    return {kind: {name: _mean(values) for name, values in metrics.items()} for kind, metrics in found.items()}


class CallRecordService:
    """Reads a visit's call record once it exists and settles attendance and quality from it."""

    def __init__(self, *, appointments: AppointmentRepository, presence: PresenceRepository,
                 client: CallRecordsClient, roster: RosterService, visit_events: VisitEventRepository,
                 quality: CallQualityRepository, queues: QueueSender, clock: Clock, reports: Any = None) -> None:
        self._appointments = appointments
        self._reports = reports
        self._presence = presence
        self._client = client
        self._roster = roster
        self._events = visit_events
        self._quality = quality
        self._queues = queues
        self._clock = clock

    def settle(self, appointment_key: str, *, call_ended: datetime | None = None) -> SettleOutcome:
        """Find, read and apply every call record of one visit's meeting (one per call: a meeting everyone left
        and came back to has two). ``call_ended``: a call that ended then (its ``callEnded``): its record is
        waited for even when an earlier call's record is there.

        Raises:
            StoreUnavailable: Cosmos DB is down (the queue retries).
        """
        appointment = self._appointments.get(appointment_key)
        if appointment is None or appointment.meeting is None:
            return SettleOutcome("no_meeting")
        presence = self._presence.get(appointment_key)
        now = self._clock.now()
        ended = call_ended or (presence.call_ended_utc if presence else None) or appointment.end_utc or now
        started = (presence.call_started_utc if presence else None) or appointment.start_utc or ended
        latest = max(ended, appointment.end_utc or ended)
        try:
            found = self._client.find_all(since=started - WINDOW, until=min(now, latest + GIVE_UP_AFTER),
                                          join_url=appointment.meeting.join_url)
            waiting = not found or (call_ended is not None and not any(_covers(r, call_ended) for r in found))
            if waiting and now - ended <= GIVE_UP_AFTER:
                return SettleOutcome("retry", retry_in=int(RETRY_EVERY.total_seconds()))
            records = [(r.id, record) for r in found if (record := self._client.get(r.id)) is not None]
        except CallRecordsError as exc:
            if not exc.transient:
                log.warning("call record refused reason=%s environment=%s", exc.reason, appointment.environment_id)
                self._quality.put({"id": appointment_key, "status": "not_allowed", "reason": exc.reason,
                                   "checked_utc": iso(now)})
                return SettleOutcome("not_allowed")
            wait = max(60.0, exc.retry_after or 0.0)  # Graph said when; else a minute
            return self._later(ended, now, int(wait), appointment_key)
        if not records:
            return self._later(ended, now, int(RETRY_EVERY.total_seconds()), appointment_key)
        added = self._apply(appointment_key, appointment.environment_id, appointment.appointment_id, records, now)
        return SettleOutcome("settled", added_events=added)

    def _later(self, ended: datetime, now: datetime, seconds: int, appointment_key: str) -> SettleOutcome:
        if now - ended > GIVE_UP_AFTER:
            self._quality.put({"id": appointment_key, "status": "not_available", "checked_utc": iso(now)})
            return SettleOutcome("not_available")
        return SettleOutcome("retry", retry_in=max(1, seconds))

    def _apply(self, appointment_key: str, environment_id: str, appointment_id: str,
               records: list[tuple[str, dict[str, Any]]], now: datetime) -> int:
        stays: dict[tuple[str, str], dict[str, Any]] = {}  # per participant: all its identities' sessions
        for session in (s for _, record in records for s in record.get("sessions") or []):
            caller = (session.get("caller") or {}) if isinstance(session, dict) else {}
            identity = caller.get("identity") if isinstance(caller.get("identity"), dict) else {}
            who = self._roster.classify(environment_id, appointment_key, identity, False)
            start, end = parse_iso(_z(session.get("startDateTime"))), parse_iso(_z(session.get("endDateTime")))
            if who is None or start is None or end is None:
                continue
            stay = stays.setdefault(who.participant, {"who": who, "intervals": [], "segments": []})
            stay["intervals"].append((start, end))
            stay["segments"].extend(session.get("segments") or [])
        for stay in stays.values():  # two devices' overlapping sessions are one stay
            stay["intervals"] = merged_stays(stay["intervals"])
        existing = self._events.for_appointment(appointment_key)
        added_events: list[VisitEvent] = []
        for stay in stays.values():
            who: RosterEntry = stay["who"]
            if who.role not in WRITTEN_BACK_ROLES:
                continue
            for start, end in sorted(stay["intervals"]):
                for kind, at in (("connected", start), ("disconnected", end)):
                    if any(e.type == kind and (e.role, e.participant_id) == (who.role, who.participant_id)
                           and e.writeback != "superseded" and abs(e.at_utc - at) <= SAME_MOMENT for e in existing):
                        continue
                    event = self._add(appointment_key, environment_id, appointment_id, who, kind, at, now)
                    if event is not None:
                        added_events.append(event)
        added = len(added_events)
        tell_reports(self._reports, appointment_key, added_events)
        self._send_quality(appointment_key, stays)
        calls = [{"id": record_id, "version": record.get("version"),
                  "start_utc": iso(parse_iso(_z(record.get("startDateTime")))),
                  "end_utc": iso(parse_iso(_z(record.get("endDateTime"))))} for record_id, record in records]
        starts = [c["start_utc"] for c in calls if c["start_utc"]]
        ends = [c["end_utc"] for c in calls if c["end_utc"]]
        self._quality.put({
            "id": appointment_key, "status": "settled", "call_record_id": calls[0]["id"],
            "call_record_version": calls[0]["version"], "calls": calls,
            "start_utc": min(starts) if starts else None, "end_utc": max(ends) if ends else None,
            "settled_utc": iso(now),
            "participants": [{"role": s["who"].role, "participant_id": s["who"].participant_id,
                              "intervals": [[iso(a), iso(b)] for a, b in sorted(s["intervals"])],
                              "seconds_present": int(sum((b - a).total_seconds() for a, b in s["intervals"])),
                              **media_quality(s["segments"])} for s in stays.values()],
        })
        log.info("call record settled calls=%s participants=%s added_events=%s environment=%s", len(records),
                 len(stays), added, environment_id)
        return added

    def _send_quality(self, appointment_key: str, stays: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Every stream of every participant to the reports (``ReportFeed.call_quality``); best effort."""
        if self._reports is None:
            return
        from lib.reports.inputs import streams_from_media

        try:
            streams = []
            for stay in stays.values():
                who: RosterEntry = stay["who"]
                role = REPORT_ROLES.get(who.role, "other")
                for position, segment in enumerate(stay["segments"]):
                    segment_id = str(segment.get("id") or f"{position}")
                    for media in segment.get("media") or []:
                        label = str(media.get("label") or "")
                        kind = "audio" if "audio" in label else "video" if "video" in label else None
                        if kind is not None and "sharing" not in label:
                            streams.extend(streams_from_media(
                                who.participant_id, role, kind, list(media.get("streams") or []),  # type: ignore[arg-type]
                                segment_id=f"{segment_id}:{label}"))
            if streams:
                self._reports.call_quality(appointment_key, streams)
        except Exception:
            log.warning("call quality not sent to the reports")

    def _add(self, appointment_key: str, environment_id: str, appointment_id: str, who: RosterEntry, kind: str,
             at: datetime, now: datetime) -> VisitEvent | None:
        event = VisitEvent(id=event_id(appointment_key, who.role, who.participant_id, kind, at.isoformat()),
                           appointment_key=appointment_key, environment_id=environment_id,
                           appointment_id=appointment_id, type=kind, role=who.role,  # type: ignore[arg-type]
                           participant_id=who.participant_id, at_utc=at, source="call_record", due_utc=now)
        stored, created = self._events.create_once(event)
        if created and stored.writeback == "pending":
            try:
                self._queues.send(VISIT_EVENTS_QUEUE, message_for(stored))
            except Exception:  # the write-back sweep enqueues it
                log.warning("call-record event not enqueued environment=%s", environment_id)
        return stored if created else None


def _covers(record: RecordSummary, call_ended: datetime) -> bool:
    """Whether ``record`` is the record of the call that ended at ``call_ended``."""
    return (record.end_utc is not None and record.end_utc >= call_ended - SAME_MOMENT
            and (record.start_utc is None or record.start_utc <= call_ended + SAME_MOMENT))


def _z(value: Any) -> str | None:
    return value.replace("Z", "+00:00") if isinstance(value, str) else None
