"""Meeting call events -> participant events.

Graph sends ``callStarted``, ``callEnded`` and ``rosterUpdated`` (with the whole current roster). Each roster
is kept as a snapshot in event-time order (:mod:`lib.store.presence`); joins and leaves are the differences
between a snapshot and the one before it, so a duplicate changes nothing and a late, out-of-order roster is
slotted in and its differences with both neighbours computed. Event IDs are deterministic (visit, participant,
type, time), so recomputing never stores an event twice.

Who a participant is comes from IDs only, never a name: a clinician by Entra object ID mapped back to the EHR
user ID (the one-time sign-in's mapping), the patient (or an interpreter) by the ACS identity our join page
issued (:mod:`lib.store.participant_identities`); anyone else is ``other`` with an opaque reference.
Connects and disconnects of the clinician and the patient are written back to Epic; lobby entries,
interpreters, others and call start/end are recorded only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from datetime import datetime
from typing import Any

from lib.clock import Clock
from lib.models import parse_iso
from lib.queues import VISIT_EVENTS_QUEUE
from lib.store.errors import AlreadyExists, ConcurrencyConflict
from lib.store.participant_identities import ParticipantIdentityRepository
from lib.store.presence import Presence, PresenceRepository, RosterEntry, Snapshot
from lib.store.users import UserRepository
from lib.store.visit_events import VisitEvent, VisitEventRepository
from lib.visits.events import QueueSender, event_id
from lib.visits.writeback import message_for

log = logging.getLogger(__name__)

WRITTEN_BACK_ROLES = frozenset({"provider", "patient"})
WRITTEN_BACK_TYPES = frozenset({"connected", "disconnected"})


class InvalidCallEvent(Exception):
    """The decrypted resource is not a call event we understand (``reason`` is safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def tell_reports(reports: Any, appointment_key: str, events: list[VisitEvent]) -> None:
    """Hand new presence events to the reports (``lib.reports.inputs.ReportFeed``); best effort: the reports
    can always be rebuilt from ``visit_events``."""
    if reports is None:
        return
    from lib.reports.inputs import ParticipantEvent

    try:
        for event in events:
            found = ParticipantEvent.from_visit_event(event)
            if found is not None:
                reports.participant_event(appointment_key, found)
    except Exception:
        log.warning("presence events not sent to the reports")


def _ref(kind: str, raw_id: str) -> str:
    return hashlib.sha256(f"{kind}:{raw_id}".encode()).hexdigest()[:16]


def transitions(before: tuple[RosterEntry, ...], after: tuple[RosterEntry, ...]) -> list[tuple[RosterEntry, str]]:
    """The participant events between two rosters: ``(participant, type)`` with type ``in_lobby``,
    ``connected`` (joined, or admitted from the lobby), ``disconnected`` (left the meeting) or ``left_lobby``."""
    old = {e.key: e for e in before}
    new = {e.key: e for e in after}
    found: list[tuple[RosterEntry, str]] = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key), new.get(key)
        was_state = None if was is None else ("lobby" if was.lobby else "in")
        now_state = None if now is None else ("lobby" if now.lobby else "in")
        if was_state == now_state:
            continue
        who = now or was
        assert who is not None
        if now_state == "in":
            found.append((who, "connected"))
        elif now_state == "lobby":
            if was_state == "in":
                found.append((who, "disconnected"))
            found.append((who, "in_lobby"))
        else:
            found.append((who, "disconnected" if was_state == "in" else "left_lobby"))
    return found


class RosterService:
    """Applies one decrypted call event to a visit.

    Args:
        presence, visit_events, users, identities: repositories.
        queues: the write-back queue producer.
        clock: the app's clock (only for ``updated_utc``; event times are Graph's).
    """

    def __init__(self, *, presence: PresenceRepository, visit_events: VisitEventRepository, users: UserRepository,
                 identities: ParticipantIdentityRepository, queues: QueueSender, clock: Clock,
                 reports: Any = None) -> None:
        self._presence = presence
        self._reports = reports
        self._events = visit_events
        self._users = users
        self._identities = identities
        self._queues = queues
        self._clock = clock
        self._clinicians: dict[tuple[str, str], str] = {}

    def apply(self, appointment_key: str, call_event: dict[str, Any], *, correlation_id: str | None = None) \
            -> list[VisitEvent]:
        """Record what ``call_event`` changes; returns the events created now (duplicates create none).

        Raises:
            InvalidCallEvent: not a call event (no type, time or ID).
            StoreUnavailable: Cosmos DB is down (Graph retries the notification).
        """
        kind = call_event.get("callEventType")
        at = _event_time(call_event.get("eventDateTime"))
        graph_event_id = call_event.get("id")
        if (kind not in ("callStarted", "callEnded", "rosterUpdated") or at is None
                or not isinstance(graph_event_id, str)):
            raise InvalidCallEvent("not_a_call_event")
        environment_id, _, appointment_id = appointment_key.partition("|")
        entries: tuple[RosterEntry, ...] = ()
        if kind == "rosterUpdated":
            entries = self._entries(environment_id, appointment_key, call_event.get("participants"))
        for _ in range(5):
            presence = self._presence.get(appointment_key) or Presence(appointment_key)
            changes: dict[str, Any] = {}
            call_events: list[tuple[RosterEntry | None, str, datetime]] = []
            snapshots = presence.snapshots
            if kind == "callStarted":
                if presence.call_started_utc is None or at < presence.call_started_utc:
                    changes["call_started_utc"] = at
                call_events.append((None, "call_started", at))
            else:
                if kind == "callEnded":
                    changes["call_ended_utc"] = max(at, presence.call_ended_utc or at)
                    call_events.append((None, "call_ended", at))
                snapshots = _insert(presence.snapshots, Snapshot(at, graph_event_id, entries))
                if snapshots != presence.snapshots:
                    changes["snapshots"] = snapshots
            created = self._sync(appointment_key, environment_id, appointment_id, snapshots, call_events,
                                 correlation_id)
            if not changes:
                return created
            try:
                self._presence.save(dataclasses.replace(presence, updated_utc=self._clock.now(), **changes))
                if kind == "callEnded" and snapshots != presence.snapshots:  # each call of the meeting, once
                    self._look_for_call_record(appointment_key, at)
                return created
            except (ConcurrencyConflict, AlreadyExists):
                continue  # another notification of this visit landed first: recompute on the fresh roster
        raise ConcurrencyConflict("presence kept changing")

    def _look_for_call_record(self, appointment_key: str, ended_at: datetime) -> None:
        """A call ended: look for its call record in a few minutes (queue ``call-records``)."""
        from lib.presence.after_meeting import AfterMeetingWork
        from lib.presence.call_records import CALL_RECORDS_QUEUE, FIRST_LOOK_AFTER

        try:
            self._queues.send(CALL_RECORDS_QUEUE, AfterMeetingWork(appointment_key, call_ended_utc=ended_at).message(),
                              visibility_timeout=int(FIRST_LOOK_AFTER.total_seconds()))
        except Exception:  # best effort: the report can trigger the pull later
            log.warning("call-record look-up not enqueued")

    def _event(self, appointment_key: str, environment_id: str, appointment_id: str, who: RosterEntry | None,
               event_type: str, at: datetime, correlation_id: str | None) -> VisitEvent:
        role = who.role if who else "call"
        participant_id = who.participant_id if who else "call"
        written = role in WRITTEN_BACK_ROLES and event_type in WRITTEN_BACK_TYPES
        return VisitEvent(
            id=event_id(appointment_key, role, participant_id, event_type, at.isoformat()),
            appointment_key=appointment_key, environment_id=environment_id, appointment_id=appointment_id,
            type=event_type, role=role, participant_id=participant_id, at_utc=at,  # type: ignore[arg-type]
            correlation_id=correlation_id, source="roster", writeback="pending" if written else "none",
            due_utc=self._clock.now(), participant_ref=who.key if who and role not in WRITTEN_BACK_ROLES else None)

    def _sync(self, appointment_key: str, environment_id: str, appointment_id: str,
              snapshots: tuple[Snapshot, ...], call_events: list[tuple[RosterEntry | None, str, datetime]],
              correlation_id: str | None) -> list[VisitEvent]:
        """Make the stored roster events those the snapshots give: create the missing ones (enqueueing those to
        write back), and mark ``superseded`` the ones a late snapshot made wrong that are not written yet."""
        derived = [(who, kind, at) for who, kind, at in _derive(snapshots)] + call_events
        wanted = {e.id: e for e in (self._event(appointment_key, environment_id, appointment_id, who, kind, at,
                                                correlation_id) for who, kind, at in derived)}
        existing = {e.id: e for e in self._events.for_appointment(appointment_key)}
        oldest = snapshots[0].at_utc if snapshots else None
        for stale in existing.values():
            if (stale.id not in wanted and stale.source == "roster" and stale.role != "call"
                    and stale.writeback in ("pending", "none") and oldest is not None and stale.at_utc >= oldest):
                try:
                    self._events.update(stale, writeback="superseded", writeback_reason="roster_reordered")
                except ConcurrencyConflict:
                    pass  # the write-back claimed it meanwhile: the order rule settles it
        created_now: list[VisitEvent] = []
        for event in wanted.values():
            if event.id in existing:
                continue
            stored, created = self._events.create_once(event)
            if not created:
                continue
            created_now.append(stored)
            if stored.writeback == "pending":
                try:
                    self._queues.send(VISIT_EVENTS_QUEUE, message_for(stored))
                except Exception:  # stored and pending: the write-back sweep enqueues it
                    log.warning("presence event not enqueued environment=%s", environment_id)
        if created_now:
            log.info("presence events=%s environment=%s correlation=%s",
                     ",".join(f"{e.role}:{e.type}" for e in created_now), environment_id, correlation_id)
            tell_reports(self._reports, appointment_key, created_now)
        return created_now

    # ---- who is who -----------------------------------------------------------------------------
    def _entries(self, environment_id: str, appointment_key: str, participants: Any) -> tuple[RosterEntry, ...]:
        if not isinstance(participants, list):
            raise InvalidCallEvent("participants_missing")
        entries: dict[str, RosterEntry] = {}
        for participant in participants:
            if not isinstance(participant, dict):
                continue
            info = participant.get("info") if isinstance(participant.get("info"), dict) else {}
            identity = info.get("identity") if isinstance(info.get("identity"), dict) else {}
            entry = self.classify(environment_id, appointment_key, identity, bool(participant.get("isInLobby")))
            if entry is not None:
                # One person on two devices is one participant: in the meeting if either device is.
                current = entries.get(entry.key)
                entries[entry.key] = entry if current is None or current.lobby else current
        return tuple(sorted(entries.values(), key=lambda e: e.key))

    def classify(self, environment_id: str, appointment_key: str, identity: dict[str, Any],
                  lobby: bool) -> RosterEntry | None:
        user = identity.get("user")
        if isinstance(user, dict) and isinstance(user.get("id"), str):
            oid = user["id"]
            key = _ref("user", oid)
            ehr_user_id = self._clinician(environment_id, oid)
            if ehr_user_id:
                return RosterEntry(key, "provider", ehr_user_id, lobby)
            return RosterEntry(key, "other", f"other:{key}", lobby)
        acs = identity.get("azureCommunicationServicesUser") or identity.get("acsUser")
        if isinstance(acs, dict) and isinstance(acs.get("id"), str):
            key = _ref("acs", acs["id"])
            issued = self._identities.get(acs["id"])
            if issued is not None and issued.appointment_key == appointment_key:
                if issued.role == "patient":
                    return RosterEntry(key, "patient", "patient", lobby)
                if issued.role == "interpreter":
                    return RosterEntry(key, "interpreter", f"interpreter:{key}", lobby)
            return RosterEntry(key, "other", f"other:{key}", lobby)
        for kind in ("guest", "phone", "application", "device", "encrypted"):
            value = identity.get(kind)
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                key = _ref(kind, value["id"])
                return RosterEntry(key, "other", f"other:{key}", lobby)
        return None

    def _clinician(self, environment_id: str, oid: str) -> str | None:
        cached = self._clinicians.get((environment_id, oid))
        if cached:
            return cached
        mapping = self._users.by_entra_object_id(environment_id, oid)
        if mapping is None:
            return None
        self._clinicians[(environment_id, oid)] = mapping.ehr_user_id
        return mapping.ehr_user_id


def _event_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = parse_iso(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


def _insert(snapshots: tuple[Snapshot, ...], snapshot: Snapshot) -> tuple[Snapshot, ...]:
    """``snapshots`` with ``snapshot`` in its event-time place (a duplicate changes nothing)."""
    if any(s.event_id == snapshot.event_id for s in snapshots):
        return snapshots
    return tuple(sorted((*snapshots, snapshot), key=lambda s: (s.at_utc, s.event_id)))


def _derive(snapshots: tuple[Snapshot, ...]) -> list[tuple[RosterEntry, str, datetime]]:
    """Every participant event the snapshots give, each at the time of the snapshot that shows it."""
    found: list[tuple[RosterEntry, str, datetime]] = []
    before: tuple[RosterEntry, ...] = ()
    for snapshot in snapshots:
        found.extend((who, kind, snapshot.at_utc) for who, kind in transitions(before, snapshot.entries))
        before = snapshot.entries
    return found
