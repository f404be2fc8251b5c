"""The patient's join link (from the SMS, or the end of a MyChart launch): ``GET /api/join/{token}`` and
``POST /api/join/{token}/events``.

Token -> :meth:`lib.sms.links.JoinLinks.verify` (signature, expiry) -> link ID -> ``links`` -> appointment
key -> appointment -> its Teams meeting (created with the environment's fallback organizer when the visit
has none yet) -> the join page. The page shows no PHI: the organization's name and the visit time in the
environment's zone. Its Join button records a ``connected`` event for the patient, then opens the meeting.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lib.clock import Clock
from lib.models import ENDED_STATUSES, Appointment, EnvironmentConfig
from lib.smart.errors import LaunchError
from lib.sms.links import InvalidLink, JoinLinks
from lib.store.appointments import AppointmentRepository
from lib.store.environments import EnvironmentRepository
from lib.store.links import LinkRepository
from lib.visits.events import VisitEventRecorder
from lib.visits.framing import FrameContext, check_frame, origin_of
from lib.visits.meetings import MeetingService
from lib.visits.pages import Page, format_visit_time, join_page

log = logging.getLogger(__name__)

#: Event types the join page may post: joining, and the device test's result (camera + microphone).
PATIENT_EVENT_TYPES = frozenset({"connected", "disconnected", "device_test_passed", "device_test_failed"})
_ATTEMPT = re.compile(r"[A-Za-z0-9_-]{8,64}")


class InvalidEvent(Exception):
    """The posted event is not acceptable (unknown type, wrong shape). ``reason`` is safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RecordedEvent:
    """The outcome of :meth:`JoinService.record_event`: the event ID and whether its write-back is pending."""

    event_id: str
    writeback: str


class JoinService:
    """Serves the join page and records the patient's events.

    Args:
        join_links: token checker.
        links, appointments, environments: repositories.
        meetings: ensures the Teams meeting.
        events: records visit events.
        clock: the clock.
    """

    def __init__(self, *, join_links: JoinLinks, links: LinkRepository, appointments: AppointmentRepository,
                 environments: EnvironmentRepository, meetings: MeetingService, events: VisitEventRecorder,
                 clock: Clock, public_base_url: str = "") -> None:
        self._join_links = join_links
        self._links = links
        self._appointments = appointments
        self._environments = environments
        self._meetings = meetings
        self._events = events
        self._clock = clock
        self._own_origin = origin_of(public_base_url) or ""

    def page(self, token: str, *, correlation_id: str | None = None, frame: FrameContext | None = None) -> Page:
        """The join page of the visit behind ``token``.

        Framable by the environment's Epic origins (``frame_origins``); a frame of another known origin gets the
        ``FRAME_NOT_ALLOWED`` page.

        Raises:
            LaunchError: ``LINK_INVALID``, ``LINK_EXPIRED``, ``FRAME_NOT_ALLOWED``, ``APPOINTMENT_NOT_FOUND``,
                ``APPOINTMENT_CANCELLED``,
                ``GRAPH_*``, ``ORGANIZER_MISSING``.
            StoreUnavailable: Cosmos DB is down.
        """
        environment, appointment = self._resolve(token)
        check_frame(frame, environment.frame_origins, self._own_origin)
        appointment = self._meetings.ensure(environment, appointment)
        assert appointment.meeting is not None
        log.info("join page served environment=%s correlation=%s", environment.id, correlation_id)
        return join_page(
            organization=environment.display_name,
            visit_time=format_visit_time(appointment.start_utc, environment.time_zone),
            join_url=appointment.meeting.join_url,
            events_url=f"./{token}/events",
            attempt=secrets.token_urlsafe(12),
            frame_ancestors=environment.frame_origins,
        )

    def record_event(self, token: str, body: Any, *, correlation_id: str | None = None) -> RecordedEvent:
        """Record a patient event posted by the join page: ``{"type": "connected" | "disconnected" |
        "device_test_passed" | "device_test_failed", "attempt": "<page id>"}``.

        ``attempt`` (from the page) makes the event ID deterministic per page load, so a double click or a
        retried POST stores one event; without it the current UTC minute is used.

        Raises:
            InvalidEvent: the body is not an object with an accepted ``type``.
            LaunchError: the token or its visit is not valid (as :meth:`page`).
            StoreUnavailable: Cosmos DB is down.
        """
        if not isinstance(body, Mapping) or body.get("type") not in PATIENT_EVENT_TYPES:
            raise InvalidEvent(f"type must be one of {sorted(PATIENT_EVENT_TYPES)}")
        attempt = body.get("attempt")
        if not isinstance(attempt, str) or not _ATTEMPT.fullmatch(attempt):
            attempt = self._clock.now().strftime("minute-%Y%m%dT%H%M")
        _, appointment = self._resolve(token)
        event = self._events.record(appointment, event_type=body["type"], role="patient", participant_id="patient",
                                    attempt=attempt, correlation_id=correlation_id)
        return RecordedEvent(event_id=event.id, writeback=event.writeback)

    def _resolve(self, token: str) -> tuple[EnvironmentConfig, Appointment]:
        now = self._clock.now()
        try:
            link_id = self._join_links.verify(token, now=now)
        except InvalidLink as exc:
            raise LaunchError("LINK_EXPIRED" if "expired" in exc.reason else "LINK_INVALID") from None
        key = self._links.appointment_key(link_id, now=now)
        if key is None:
            raise LaunchError("LINK_INVALID", "The join link's ID is unknown or its record expired.")
        appointment = self._appointments.get(key)
        if appointment is None:
            raise LaunchError("APPOINTMENT_NOT_FOUND")
        if appointment.status in ENDED_STATUSES:
            raise LaunchError("APPOINTMENT_CANCELLED")
        environment = self._environments.get(appointment.environment_id)
        if environment is None:
            raise LaunchError("APPOINTMENT_NOT_FOUND", "The visit's environment is no longer configured.")
        return environment, appointment
