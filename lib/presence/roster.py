"""Meeting call events -> participant events.

Graph sends ``callStarted``, ``callEnded`` and ``rosterUpdated`` (with the whole current roster). Each roster
is kept as a snapshot in event-time order (:mod:`lib.store.presence`); joins and leaves are the differences
between a snapshot and the one before it, so a duplicate changes nothing and a late, out-of-order roster is
slotted in and its differences with both neighbours computed. Event IDs are deterministic (visit, participant,
type, time), so recomputing never stores an event twice.

A participant is a person, not a meeting identity (:mod:`lib.presence.participants`): it connects when the
first of its identities joins and disconnects when the last one leaves.

The stored events always converge on what the snapshots give, whatever order the notifications came in:
events no longer wanted are marked ``superseded`` (if not written yet), and a superseded event that a
later-arriving snapshot proves right again is revived (it was never sent, so Epic gets it once).

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
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lib.clock import Clock
from lib.models import parse_iso
from lib.presence.participants import WRITTEN_BACK_ROLES, WRITTEN_BACK_TYPES, participant_ref, transitions
from lib.queues import VISIT_EVENTS_QUEUE
from lib.store.errors import AlreadyExists, ConcurrencyConflict
from lib.store.participant_identities import ParticipantIdentityRepository
from lib.store.presence import MAX_SNAPSHOTS, Presence, PresenceRepository, RosterEntry, Snapshot
from lib.store.users import UserRepository
from lib.store.visit_events import VisitEvent, VisitEventRepository
from lib.visits.events import QueueSender, event_id
from lib.visits.writeback import message_for

log = logging.getLogger(__name__)

#: ``writeback_reason`` of an event a later snapshot proved wrong (revived if another proves it right again).
ROSTER_REORDERED = "roster_reordered"
#: Attempts to store a roster change against concurrent notifications of the same visit, with jittered
#: exponential backoff between them (``BACKOFF_BASE * 2^attempt``, at most ``BACKOFF_CAP`` seconds).
SAVE_ATTEMPTS = 8
BACKOFF_BASE = 0.025
BACKOFF_CAP = 0.4
#: Rounds of "make the events match the snapshots, then check nobody stored a newer snapshot meanwhile".
CONVERGE_ROUNDS = 4


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


def _backoff(attempt: int) -> float:
    """Full-jitter delay before save attempt ``attempt`` (1-based), in seconds."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)
    return secrets.randbelow(int(ceiling * 1000) + 1) / 1000


class RosterService:
    """Applies one decrypted call event to a visit.

    Args:
        presence, visit_events, users, identities: repositories.
        queues: the write-back queue producer.
        clock: the app's clock (only for ``updated_utc``; event times are Graph's).
        max_snapshots: the roster history kept per visit (older snapshots fold into the baseline).
        sleep: waits between save attempts (tests pass their own).
    """

    def __init__(self, *, presence: PresenceRepository, visit_events: VisitEventRepository, users: UserRepository,
                 identities: ParticipantIdentityRepository, queues: QueueSender, clock: Clock,
                 reports: Any = None, max_snapshots: int = MAX_SNAPSHOTS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._max_snapshots = max_snapshots
        self._sleep = sleep
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
        """Record what ``call_event`` changes; returns the events created or revived now (duplicates: none).

        Raises:
            InvalidCallEvent: not a call event (no type, time or ID).
            StoreUnavailable: Cosmos DB is down (Graph retries the notification).
            ConcurrencyConflict: other notifications of the visit kept changing its roster through every retry
                (answer 503: Graph delivers again, and every effect is idempotent).
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
        presence, call_end = self._record(appointment_key, kind, Snapshot(at, graph_event_id, entries))
        call_events: list[tuple[RosterEntry | None, str, datetime]] = []
        if kind == "callStarted":
            call_events.append((None, "call_started", at))
        elif kind == "callEnded":
            call_events.append((None, "call_ended", at))
        created = self._converge(appointment_key, environment_id, appointment_id, presence, call_events,
                                 correlation_id)
        if call_end:
            self._look_for_call_record(appointment_key, at)
        return created

    def _record(self, appointment_key: str, kind: str, snapshot: Snapshot) -> tuple[Presence, bool]:
        """Store the call event in the visit's presence document (ETag-guarded, retried with jittered backoff
        while other notifications of the visit land first). Returns the stored document and whether this was
        a call's end not seen before."""
        at = snapshot.at_utc
        for attempt in range(SAVE_ATTEMPTS):
            if attempt:
                self._sleep(_backoff(attempt))
            presence = self._presence.get(appointment_key) or Presence(appointment_key)
            changes: dict[str, Any] = {}
            if kind == "callStarted":
                if presence.call_started_utc is None or at < presence.call_started_utc:
                    changes["call_started_utc"] = at
            else:
                if kind == "callEnded" and (presence.call_ended_utc is None or at > presence.call_ended_utc):
                    changes["call_ended_utc"] = at
                snapshots = _insert(presence, snapshot)
                if snapshots != presence.snapshots:
                    changes["snapshots"] = snapshots
            if not changes:
                return presence, False
            updated = dataclasses.replace(presence, updated_utc=self._clock.now(), **changes)
            try:
                saved = self._presence.save(updated.trimmed(self._max_snapshots))
            except (ConcurrencyConflict, AlreadyExists):
                continue  # another notification of this visit landed first: recompute on the fresh roster
            return saved, kind == "callEnded" and "snapshots" in changes  # a new end: each call of the meeting
        raise ConcurrencyConflict("presence kept changing")

    def _converge(self, appointment_key: str, environment_id: str, appointment_id: str, presence: Presence,
                  call_events: list[tuple[RosterEntry | None, str, datetime]],
                  correlation_id: str | None) -> list[VisitEvent]:
        """Make the stored events those of the newest roster history. A notification that stored its snapshot
        may sync after a newer one was stored (and undo part of its sync), so after each sync the document is
        read again and, if it changed, synced again."""
        created: list[VisitEvent] = []
        for _ in range(CONVERGE_ROUNDS):
            created += self._sync(appointment_key, environment_id, appointment_id, presence, call_events,
                                  correlation_id)
            call_events = []
            fresh = self._presence.get(appointment_key)
            if fresh is None or fresh.etag == presence.etag:
                return created
            presence = fresh
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
            due_utc=self._clock.now(), participant_ref=participant_ref(who) if who else None)

    def _sync(self, appointment_key: str, environment_id: str, appointment_id: str, presence: Presence,
              call_events: list[tuple[RosterEntry | None, str, datetime]],
              correlation_id: str | None) -> list[VisitEvent]:
        """Make the stored roster events those the snapshots give: create the missing ones (enqueueing those to
        write back), mark ``superseded`` the ones a late snapshot made wrong that are not written yet, and
        revive the ones superseded that way which the snapshots now give again."""
        derived = [*_derive(presence.baseline, presence.snapshots), *call_events]
        wanted = {e.id: e for e in (self._event(appointment_key, environment_id, appointment_id, who, kind, at,
                                                correlation_id) for who, kind, at in derived)}
        existing = {e.id: e for e in self._events.for_appointment(appointment_key)}
        for stale in existing.values():
            if (stale.id not in wanted and stale.source == "roster" and stale.role != "call"
                    and stale.writeback in ("pending", "none") and _derived_span(presence, stale.at_utc)):
                try:
                    self._events.update(stale, writeback="superseded", writeback_reason=ROSTER_REORDERED)
                except ConcurrencyConflict:
                    pass  # the write-back claimed it meanwhile: the order rule settles it
        created_now: list[VisitEvent] = []
        revived: list[VisitEvent] = []
        for event in wanted.values():
            found = existing.get(event.id)
            if found is not None:
                if found.writeback == "superseded" and found.writeback_reason == ROSTER_REORDERED:
                    back = self._revive(found, event)
                    if back is not None:
                        revived.append(back)
                continue
            stored, created = self._events.create_once(event)
            if created:
                created_now.append(stored)
                self._enqueue(stored, environment_id)
        if revived:
            log.info("presence events revived=%s environment=%s correlation=%s",
                     ",".join(f"{e.role}:{e.type}" for e in revived), environment_id, correlation_id)
        if created_now:
            log.info("presence events=%s environment=%s correlation=%s",
                     ",".join(f"{e.role}:{e.type}" for e in created_now), environment_id, correlation_id)
            tell_reports(self._reports, appointment_key, created_now)
        return created_now + revived

    def _revive(self, superseded: VisitEvent, wanted: VisitEvent) -> VisitEvent | None:
        """A snapshot that arrived later proved a superseded (never sent) event right again: pending again (or
        ``none`` for what is not written back), enqueued for the write-back."""
        try:
            back = self._events.update(superseded, writeback=wanted.writeback, writeback_reason=None,
                                       writeback_utc=None, due_utc=self._clock.now())
        except ConcurrencyConflict:
            return None  # another notification's sync revived it first
        self._enqueue(back, back.environment_id)
        return back

    def _enqueue(self, event: VisitEvent, environment_id: str) -> None:
        if event.writeback != "pending":
            return
        try:
            self._queues.send(VISIT_EVENTS_QUEUE, message_for(event))
        except Exception:  # stored and pending: the write-back sweep enqueues it
            log.warning("presence event not enqueued environment=%s", environment_id)

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
                # The same identity listed twice: in the meeting if either listing is.
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
                    person = _ref("person", issued.person) if issued.person else key
                    return RosterEntry(key, "interpreter", f"interpreter:{person}", lobby)
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


def _insert(presence: Presence, snapshot: Snapshot) -> tuple[Snapshot, ...]:
    """The visit's snapshots with ``snapshot`` in its event-time place (a duplicate changes nothing; one older
    than the kept history's baseline cannot be slotted in any more and changes nothing either)."""
    snapshots = presence.snapshots
    if any(s.event_id == snapshot.event_id for s in snapshots):
        return snapshots
    baseline = presence.baseline
    if baseline is not None and (snapshot.at_utc, snapshot.event_id) <= (baseline.at_utc, baseline.event_id):
        log.info("roster update older than the kept roster history ignored")
        return snapshots
    return tuple(sorted((*snapshots, snapshot), key=lambda s: (s.at_utc, s.event_id)))


def _derived_span(presence: Presence, at: datetime) -> bool:
    """Whether the snapshots (from the baseline on) decide events at ``at``: events older than the kept history
    were derived before it was cut and are left as they are."""
    if presence.baseline is not None:
        return at > presence.baseline.at_utc
    return bool(presence.snapshots) and at >= presence.snapshots[0].at_utc


def _derive(baseline: Snapshot | None, snapshots: tuple[Snapshot, ...]) -> list[tuple[RosterEntry, str, datetime]]:
    """Every participant event the snapshots give, each at the time of the snapshot that shows it, starting
    from the baseline's roster (empty when the whole history is kept)."""
    found: list[tuple[RosterEntry, str, datetime]] = []
    before: tuple[RosterEntry, ...] = baseline.entries if baseline is not None else ()
    for snapshot in snapshots:
        found.extend((who, kind, snapshot.at_utc) for who, kind in transitions(before, snapshot.entries))
        before = snapshot.entries
    return found


__all__ = ["WRITTEN_BACK_ROLES", "WRITTEN_BACK_TYPES", "InvalidCallEvent", "RosterService", "tell_reports",
           "transitions"]
