"""One Teams meeting per visit: reuse the meeting stored on the appointment, else ``createOrGet`` it and
store it with ``If-Match`` (or, for a visit not stored yet, create the appointment with its meeting in one
write).

Whoever touches the visit first (provider launch, patient link, later the intake) creates it. The organizer
is claimed on the appointment first (``meeting_organizer_id``, If-Match): ``createOrGet`` is idempotent per
(organizer, ``externalId``) only, so two clinicians launching a new visit at the same moment must both ask
the *same* organizer, or the loser's meeting would be left behind as an orphan. The loser of the claim
re-reads and uses the claimed organizer, and gets the same meeting.

Lobby: a meeting's ``lobbyBypassSettings`` scope follows the environment's ``lobby_bypass_scope``. The scope Graph
reported is kept on the stored meeting, so the common launch compares two values in memory and calls nobody; a
meeting whose scope differs (made under another setting, or returned unchanged by ``createOrGet``) is PATCHed
once and stored with its new scope. A failed PATCH never fails the launch: the next launch or join tries again.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from lib.models import Appointment, EnvironmentConfig, Meeting, iso
from lib.smart.errors import LaunchError
from lib.store.appointments import AppointmentRepository
from lib.store.errors import AlreadyExists, ConcurrencyConflict
from lib.teams.graph import MEETING_SUBJECT, GraphClient, OrganizerResolver, meeting_external_id

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


class MeetingService:
    """Ensures an appointment has its Teams meeting.

    Args:
        appointments: the appointment repository.
        graph: the Graph client.
        organizers: chooses the organizer (the seam for provider sign-in).
    """

    def __init__(self, *, appointments: AppointmentRepository, graph: GraphClient,
                 organizers: OrganizerResolver, presence: Any = None) -> None:
        self._appointments = appointments
        self._graph = graph
        self._organizers = organizers
        self._presence = presence

    def ensure(self, environment: EnvironmentConfig, appointment: Appointment,
               *, ehr_user_id: str | None = None, department: str | None = None, watch: bool = True) -> Appointment:
        """``appointment`` with its ``meeting`` set (stored), creating the meeting when it has none.

        An ``appointment`` without an ETag has not been stored yet (a launch before any HL7 message): it is
        created with its meeting; when someone created it meanwhile, the stored one is used.

        ``ehr_user_id`` (the launching clinician) and ``department`` (the launch URL's ``departmentId``) only
        choose the organizer of a meeting created now; an existing meeting is always reused. ``watch`` False:
        the caller subscribes to the new meeting's call events itself, off its own path (a launch queues it,
        :mod:`lib.visits.launch_followup`).

        Raises:
            LaunchError: from Graph (``GRAPH_*``), ``ORGANIZER_MISSING``, ``APPOINTMENT_NOT_FOUND`` (deleted
                meanwhile), ``STORE_UNAVAILABLE`` (lost the ETag race three times).
            StoreUnavailable: Cosmos DB is down.
        """
        current = appointment
        for _ in range(MAX_ATTEMPTS):
            if current.meeting is not None:
                return self._with_lobby(environment, current)
            meeting = self._group_meeting(environment, current)
            if meeting is None:
                organizer = current.meeting_organizer_id
                if organizer is None:
                    organizer = self._organizers.organizer_for(environment, current, ehr_user_id, department)
                    claimed = dataclasses.replace(current, meeting_organizer_id=organizer)
                    try:  # a visit first seen now is stored with its claim
                        current = (self._appointments.create(claimed) if current.etag is None
                                   else self._appointments.replace(claimed))
                    except (ConcurrencyConflict, AlreadyExists):
                        fresh = self._appointments.get(current.key)
                        if fresh is None:
                            raise LaunchError("APPOINTMENT_NOT_FOUND", "The appointment was deleted while its "
                                                                       "meeting was created.") from None
                        current = fresh
                        continue  # another launch claimed it: use its organizer (or its meeting)
                meeting = self._graph.create_or_get_meeting(
                    organizer, self._external_id(environment, current), MEETING_SUBJECT,
                    current.start_utc, current.end_utc, lobby_scope=environment.lobby_bypass_scope,
                )
                meeting = dataclasses.replace(meeting, start_utc=iso(current.start_utc), end_utc=iso(current.end_utc))
            meeting = self._lobby_set(environment, meeting)  # stored below with the scope it now has
            try:
                with_meeting = dataclasses.replace(current, meeting=meeting)
                stored = (self._appointments.create(with_meeting) if current.etag is None  # group visit, first seen
                          else self._appointments.replace(with_meeting))
            except (ConcurrencyConflict, AlreadyExists):
                log.info("meeting store lost the race environment=%s; re-reading", environment.id)
                fresh = self._appointments.get(current.key)
                if fresh is None:
                    raise LaunchError("APPOINTMENT_NOT_FOUND", "The appointment was deleted while its meeting "
                                                               "was created.") from None
                current = fresh
                continue
            if watch and self._presence is not None:
                # subscribe to its call events now (the timer retries failures), or plan the read after it
                self._presence.watch(stored, source=environment.presence_source)
            return stored
        raise LaunchError("STORE_UNAVAILABLE", "The appointment kept changing while its meeting was stored.")

    def _lobby_set(self, environment: EnvironmentConfig, meeting: Meeting) -> Meeting:
        """``meeting`` with the environment's lobby scope: unchanged when it has it, else PATCHed (Graph); on a
        Graph failure unchanged, so the next launch tries again."""
        wanted = environment.lobby_bypass_scope
        if meeting.lobby_scope == wanted:
            return meeting
        try:
            scope = self._graph.update_lobby(meeting.organizer_id, meeting.id, wanted)
        except LaunchError as exc:
            log.warning("meeting lobby not updated environment=%s reason=%s; the next launch tries again",
                        environment.id, exc.code)
            return meeting
        log.info("meeting lobby updated environment=%s scope=%s", environment.id, scope)
        return dataclasses.replace(meeting, lobby_scope=scope)

    def _with_lobby(self, environment: EnvironmentConfig, appointment: Appointment) -> Appointment:
        """``appointment`` whose stored meeting has the environment's lobby scope (PATCHed and stored when not)."""
        assert appointment.meeting is not None
        meeting = self._lobby_set(environment, appointment.meeting)
        current = appointment
        for _ in range(MAX_ATTEMPTS):
            if current.meeting is None or current.meeting.id != meeting.id or current.meeting.lobby_scope == \
                    meeting.lobby_scope:
                return current
            try:
                return self._appointments.replace(dataclasses.replace(
                    current, meeting=dataclasses.replace(current.meeting, lobby_scope=meeting.lobby_scope)))
            except ConcurrencyConflict:
                current = self._appointments.get(current.key) or current
        return current

    def _group_meeting(self, environment: EnvironmentConfig, appointment: Appointment) -> Meeting | None:
        """For a group visit, the meeting another appointment of the group already has."""
        if not appointment.conference_id:
            return None
        return self._appointments.group_meeting(environment.id, appointment.conference_id)

    @staticmethod
    def _external_id(environment: EnvironmentConfig, appointment: Appointment) -> str:
        """The Graph ``externalId``: per conference ID for a group visit, per appointment otherwise."""
        if appointment.conference_id:
            return meeting_external_id(environment.id, f"conference:{appointment.conference_id}")
        return meeting_external_id(environment.id, appointment.appointment_id)
