"""Who organizes a visit's Teams meeting (the :class:`lib.teams.graph.OrganizerResolver` of the app).

Order (docs/launch.md "Organizer"):
1. the launching clinician's Entra object ID, from ``users[{environmentId}|{ehrUserId}]`` (written by the
   one-time Microsoft 365 sign-in, :mod:`lib.visits.signin`);
2. the department's fallback organizer, ``EnvironmentConfig.department_organizers[department]`` where the
   department is the appointment's (HL7) or, failing that, the launch URL's ``departmentId``;
3. the environment's ``fallback_organizer_id``.

Graph's ``createOrGet`` is unique per (tenant, organizer, ``externalId``): the organizer chosen the first time
is stored with the meeting on the appointment, and every later launch, relaunch, second clinician or
interpreter reuses that stored meeting (:class:`lib.visits.meetings.MeetingService`), so a different
organizer later never makes a second meeting.
"""

from __future__ import annotations

from typing import Protocol

from lib.models import Appointment, EnvironmentConfig
from lib.smart.errors import LaunchError
from lib.store.users import UserMapping


class UserLookup(Protocol):
    """What :class:`lib.store.users.UserRepository` offers."""

    def get(self, environment_id: str, ehr_user_id: str) -> UserMapping | None:
        """The clinician's mapping, or ``None``."""
        ...


class DirectoryOrganizerResolver:
    """Clinician (signed in once) -> department fallback -> environment fallback.

    Args:
        users: EHR user ID -> Entra object ID mappings.
    """

    def __init__(self, users: UserLookup) -> None:
        self._users = users

    def organizer_for(self, environment: EnvironmentConfig, appointment: Appointment,
                      ehr_user_id: str | None = None, department: str | None = None) -> str:
        """The organizer's Entra object ID.

        Raises:
            LaunchError: ``ORGANIZER_MISSING`` when neither a mapping nor a fallback is configured.
            StoreUnavailable: Cosmos DB is down.
        """
        if ehr_user_id:
            mapping = self._users.get(environment.id, ehr_user_id)
            if mapping is not None:
                return mapping.entra_object_id
        return fallback_organizer(environment, appointment.department or department)


def fallback_organizer(environment: EnvironmentConfig, department: str | None) -> str:
    """The department's fallback organizer, else the environment's.

    Raises:
        LaunchError: ``ORGANIZER_MISSING``.
    """
    if department and environment.department_organizers.get(department):
        return environment.department_organizers[department]
    if not environment.fallback_organizer_id:
        raise LaunchError("ORGANIZER_MISSING")
    return environment.fallback_organizer_id
