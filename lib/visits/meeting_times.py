"""Keep each visit's Teams meeting at the visit's time: after a reschedule (SIU S13/S14) or a new time read
from FHIR at launch, ``PATCH`` the meeting's start and end (timer ``meeting_times``, every 5 minutes).

A meeting records the times Graph was last given (``Meeting.start_utc``/``end_utc``); a visit whose times
differ is out of date. The query reads only upcoming visits that have a meeting.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from lib.clock import Clock
from lib.models import Appointment, iso
from lib.smart.errors import LaunchError
from lib.store.appointments import AppointmentRepository
from lib.store.cosmos import translated_errors
from lib.store.errors import ConcurrencyConflict
from lib.teams.meeting_times import MeetingTimesClient

log = logging.getLogger(__name__)
BATCH = 100


def out_of_date(appointment: Appointment) -> bool:
    """Whether the meeting's times differ from the visit's (and the visit has both times)."""
    meeting = appointment.meeting
    if meeting is None or appointment.start_utc is None or appointment.end_utc is None:
        return False
    return (meeting.start_utc, meeting.end_utc) != (iso(appointment.start_utc), iso(appointment.end_utc))


class MeetingTimesSync:
    """PATCHes meetings whose visit moved.

    Args:
        appointments: the repository (and its container for the query).
        graph: the meeting-times client.
        presence: the presence subscriptions (kept until the new end), or ``None``.
        clock: the app's clock.
    """

    def __init__(self, *, appointments: AppointmentRepository, container: Any, graph: MeetingTimesClient,
                 presence: Any, clock: Clock) -> None:
        self._appointments = appointments
        self._container = container
        self._graph = graph
        self._presence = presence
        self._clock = clock

    def run(self) -> dict[str, int]:
        """One pass: ``{"updated": n, "failed": n}``.

        Raises:
            StoreUnavailable: Cosmos DB is down (the next run tries again).
        """
        since = self._clock.now() - timedelta(hours=12)
        with translated_errors():
            docs = list(self._container.query_items(
                "SELECT * FROM c WHERE c.type = 'appointment' AND IS_DEFINED(c.meeting.id) AND c.status = 'booked' "
                "AND c.end_utc > @since "
                "AND (c.meeting.start_utc != c.start_utc OR c.meeting.end_utc != c.end_utc)",
                parameters=[{"name": "@since", "value": iso(since)}], enable_cross_partition_query=True))
        counts = {"updated": 0, "failed": 0}
        for doc in docs[:BATCH]:
            appointment = Appointment.from_doc(doc)
            if not out_of_date(appointment):
                continue
            counts["updated" if self.sync(appointment) else "failed"] += 1
        return counts

    def sync(self, appointment: Appointment) -> bool:
        """PATCH one meeting to its visit's times and record them; ``False`` when Graph refused or is down."""
        meeting = appointment.meeting
        assert meeting is not None and appointment.start_utc and appointment.end_utc
        try:
            self._graph.update_times(meeting.organizer_id, meeting.id, appointment.start_utc, appointment.end_utc)
        except LaunchError as exc:
            log.warning("meeting times not updated code=%s environment=%s", exc.code, appointment.environment_id)
            return False
        current = appointment
        for _ in range(3):
            try:
                assert current.meeting is not None
                self._appointments.replace(dataclasses.replace(current, meeting=dataclasses.replace(
                    current.meeting, start_utc=iso(current.start_utc), end_utc=iso(current.end_utc))))
                break
            except ConcurrencyConflict:
                fresh = self._appointments.get(current.key)
                if fresh is None or not out_of_date(fresh):
                    break
                if (fresh.start_utc, fresh.end_utc) != (current.start_utc, current.end_utc):
                    return self.sync(fresh)  # moved again meanwhile: send the newest times
                current = fresh
        if self._presence is not None:
            self._presence.reschedule(appointment)
        log.info("meeting times updated environment=%s", appointment.environment_id)
        return True

