"""The patient's join link (from the SMS, or the end of a MyChart launch).

Routes (``functions/join.py``): ``GET /api/join/{token}`` (the page), ``POST /api/join/{token}/call`` (an
ACS identity and token to join the meeting), ``POST /api/join/{token}/events`` (page opened, device test).

Token -> :meth:`lib.sms.links.JoinLinks.verify` (signature, expiry) -> link ID -> ``links`` -> appointment
key -> appointment -> where the visit stands (:mod:`lib.visits.visit_state`) -> the page in the patient's
language. The Teams meeting is ensured (created with the environment's fallback organizer when the visit
has none yet) while the visit can still happen. The page shows no PHI: the organization's name and the
visit's local time. Link, visit and browser problems are states of the same page, never an error page.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.clock import Clock
from lib.models import Appointment, EnvironmentConfig
from lib.smart.errors import LaunchError, unusable_settings_error
from lib.sms.links import InvalidLink, JoinLinks
from lib.store.appointments import AppointmentRepository
from lib.store.environments import EnvironmentRepository
from lib.store.errors import StoreUnavailable
from lib.store.links import LinkRepository
from lib.stored_settings import NOT_FOR_VISITS, UnusableSetting, check_usable
from lib.visits.call_identity import AcsCallIdentityIssuer, CallIdentityUnavailable
from lib.visits.device_test import InvalidDeviceTest, parse_device_test
from lib.visits.device_test_limits import writeback_hold
from lib.visits.events import VisitEventRecorder, event_id
from lib.visits.framing import FrameContext, check_frame, origin_of
from lib.visits.meetings import MeetingService
from lib.visits.pages import Page
from lib.visits.patient_pages import PatientPageContext, device_test_page, visit_page
from lib.visits.visit_state import VisitState, visit_state

log = logging.getLogger(__name__)

#: Event types the join page may post. Presence ("connected") comes from the meeting, not from a click.
PATIENT_EVENT_TYPES = frozenset({"page_opened", "device_test"})
#: The name the clinician sees in the lobby: nothing about the patient.
GUEST_DISPLAY_NAME = "Patient"
_ATTEMPT = re.compile(r"[A-Za-z0-9_-]{8,64}")
_ENVIRONMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Link and visit problems shown as a state of the page (in the patient's language).
_PAGE_STATES = {"LINK_INVALID": "invalid", "LINK_EXPIRED": "expired", "APPOINTMENT_NOT_FOUND": "invalid",
                "APPOINTMENT_CANCELLED": "cancelled", "ENVIRONMENT_DISABLED": "unavailable"}


class InvalidEvent(Exception):
    """The posted event is not acceptable (unknown type, wrong shape). ``reason`` is safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VisitNotOpen(Exception):
    """The visit cannot be joined now: ``code`` is ``VISIT_TOO_EARLY`` or ``VISIT_OVER`` (HTTP 409)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class RecordedEvent:
    """The outcome of :meth:`JoinService.record_event`: the event ID and whether its write-back is pending."""

    event_id: str
    writeback: str


@dataclass(frozen=True)
class CallGrant:
    """What ``POST .../call`` answers: the ACS token, its expiry, the meeting link and the guest name."""

    token: str
    expires_utc: datetime
    meeting_link: str
    display_name: str


class JoinService:
    """Serves the join page, the call credential and records the patient's events.

    Args:
        join_links: token checker.
        links, appointments, environments: repositories.
        meetings: ensures the Teams meeting.
        events: records visit events.
        call_identities: issues the ACS identity and token of one join.
        relay_urls: ICE server URLs the device test probes (``CALL_RELAY_URLS``).
        clock: the clock.
        public_base_url: our own origin (may frame its own pages).
        known_frame_origins: every environment's Epic origins, for pages of no known visit (a bad link must
            stay readable inside MyChart's frame).
    """

    def __init__(self, *, join_links: JoinLinks, links: LinkRepository, appointments: AppointmentRepository,
                 environments: EnvironmentRepository, meetings: MeetingService, events: VisitEventRecorder,
                 call_identities: AcsCallIdentityIssuer | None, relay_urls: tuple[str, ...] = (),
                 clock: Clock, public_base_url: str = "",
                 known_frame_origins: Callable[[], tuple[str, ...]] = tuple) -> None:
        self._join_links = join_links
        self._links = links
        self._appointments = appointments
        self._environments = environments
        self._meetings = meetings
        self._events = events
        self._call_identities = call_identities
        self._relay_urls = relay_urls
        self._clock = clock
        self._own_origin = origin_of(public_base_url) or ""
        self._known_frame_origins = known_frame_origins

    def page(self, token: str, *, language: str | None = None, accept_language: str | None = None,
             correlation_id: str | None = None, frame: FrameContext | None = None) -> Page:
        """The join page of the visit behind ``token``, in the patient's language: ``language`` (the
        page's switcher, ``?lang=``), else the visit's (PID-15), else the browser's ``Accept-Language``,
        else the environment's SMS default.

        Framable by the environment's Epic origins (``frame_origins``); a frame of another known origin gets the
        ``FRAME_NOT_ALLOWED`` page. Link problems are states of the page (``invalid`` answers 404: the
        trigger counts it as a guess).

        Raises:
            LaunchError: ``FRAME_NOT_ALLOWED``, ``GRAPH_*``, ``ORGANIZER_MISSING`` (the meeting could not be
                created).
        """
        context = PatientPageContext(requested_language=language, accept_language=accept_language,
                                     token=token, relay_urls=self._relay_urls, now=self._clock.now())
        try:
            environment, appointment = self._resolve(token)
        except LaunchError as exc:
            if exc.code not in _PAGE_STATES:
                raise
            log.info("join page state=%s correlation=%s", _PAGE_STATES[exc.code], correlation_id)
            return visit_page(context, problem=_PAGE_STATES[exc.code], frame_ancestors=self._known_frame_origins())
        except StoreUnavailable:
            log.warning("join page state=busy correlation=%s", correlation_id)
            return visit_page(context, problem="busy", frame_ancestors=self._known_frame_origins())
        check_frame(frame, environment.frame_origins, self._own_origin)
        state = visit_state(appointment, context.now)
        if state.phase in ("open", "too_early"):
            appointment = self._meetings.ensure(environment, appointment)
        log.info("join page served state=%s environment=%s correlation=%s", state.phase, environment.id,
                 correlation_id)
        return visit_page(context, environment=environment, appointment=appointment, state=state,
                          attempt=secrets.token_urlsafe(12), frame_ancestors=environment.frame_origins)

    def rate_limited_page(self, *, retry_after: int, language: str | None = None,
                          accept_language: str | None = None) -> Page:
        """The join page's ``rate_limited`` state (429): this address opened too many links that are not ours.
        In the patient's language like every state of the page; nothing of the link is looked at."""
        context = PatientPageContext(requested_language=language, accept_language=accept_language, token=None,
                                     relay_urls=self._relay_urls, now=self._clock.now())
        return visit_page(context, problem="rate_limited", retry_after=retry_after,
                          frame_ancestors=self._known_frame_origins())

    def device_test(self, environment_id: str | None, *, language: str | None = None,
                    accept_language: str | None = None) -> Page:
        """The device test on its own, opened from the EHR's device-test record (its context token names the
        environment: ``?env=<environment ID>``). No visit: the result is shown, not written back.

        The test itself needs no store: while Cosmos DB cannot be reached it still runs, without the
        organization's name (the environment is not checked then).
        """
        context = PatientPageContext(requested_language=language, accept_language=accept_language, token=None,
                                     relay_urls=self._relay_urls, now=self._clock.now())
        if not (environment_id and _ENVIRONMENT_ID.fullmatch(environment_id)):
            return device_test_page(context, environment=None, frame_ancestors=self._known_frame_origins())
        try:
            environment = self._environments.get(environment_id)
        except StoreUnavailable:
            log.warning("device test page without its environment: the store is unavailable")
            return device_test_page(context, environment=None, unchecked=True,
                                    frame_ancestors=self._known_frame_origins())
        origins = environment.frame_origins if environment is not None else self._known_frame_origins()
        return device_test_page(context, environment=environment, frame_ancestors=origins)

    def call(self, token: str, *, correlation_id: str | None = None) -> CallGrant:
        """A new ACS identity and ``voip`` token for joining the visit's meeting now.

        Raises:
            LaunchError: the link or visit is not valid (as :meth:`page`), or the meeting could not be made.
            VisitNotOpen: too early or over.
            CallIdentityUnavailable: ACS did not issue the identity.
            StoreUnavailable: Cosmos DB is down.
        """
        if self._call_identities is None:
            raise CallIdentityUnavailable("ACS is not configured (ACS_CONNECTION_STRING or ACS_ENDPOINT)")
        environment, appointment = self._resolve(token)
        state = self._open_state(appointment)
        if not state.joinable:
            raise VisitNotOpen("VISIT_TOO_EARLY" if state.phase == "too_early" else "VISIT_OVER")
        appointment = self._meetings.ensure(environment, appointment)
        assert appointment.meeting is not None
        credential = self._call_identities.issue()
        self._events.record(appointment, event_type="call_identity_issued", role="patient",
                            participant_id="patient", attempt=credential.user_id, correlation_id=correlation_id,
                            details={"acsUserId": credential.user_id})
        log.info("call identity issued environment=%s correlation=%s", environment.id, correlation_id)
        return CallGrant(token=credential.token, expires_utc=credential.expires_utc,
                         meeting_link=appointment.meeting.join_url, display_name=GUEST_DISPLAY_NAME)

    def record_event(self, token: str, body: Any, *, correlation_id: str | None = None) -> RecordedEvent:
        """Record an event posted by the join page: ``{"type": "page_opened", "attempt": "<page id>"}`` or
        a device test (:mod:`lib.visits.device_test`), written back to the EHR as ``device_test_passed`` or
        ``device_test_failed``.

        ``attempt`` (from the page) makes the event ID deterministic per page load, so a double click or a
        retried POST stores one event; without it the current UTC minute is used.

        Raises:
            InvalidEvent: the body is not an object with an accepted ``type`` and shape.
            lib.visits.device_test_limits.TooManyDeviceTests: the visit has the most device tests it records.
            LaunchError: the token or its visit is not valid (as :meth:`page`).
            StoreUnavailable: Cosmos DB is down.
        """
        _, appointment = self._resolve(token)  # the link first: a bad body on a link we never issued is a guess
        if not isinstance(body, Mapping) or body.get("type") not in PATIENT_EVENT_TYPES:
            raise InvalidEvent(f"type must be one of {sorted(PATIENT_EVENT_TYPES)}")
        details: dict[str, Any] | None = None
        event_type = "page_opened"
        if body["type"] == "device_test":
            try:
                result = parse_device_test(body)
            except InvalidDeviceTest as exc:
                raise InvalidEvent(exc.reason) from None
            event_type, details = result.outcome, {"steps": result.steps, "measures": result.measures}
        attempt = body.get("attempt")
        if not isinstance(attempt, str) or not _ATTEMPT.fullmatch(attempt):
            attempt = self._clock.now().strftime("minute-%Y%m%dT%H%M")
        hold = None
        if details is not None:  # a device test: limited per visit (lib/visits/device_test_limits.py)
            known = self._events.of_visit(appointment.key)
            wanted = event_id(appointment.key, "patient", "patient", event_type, attempt)
            again = next((e for e in known if e.id == wanted), None)
            if again is not None:  # a retried POST: answered as the first time, never counted twice
                return RecordedEvent(event_id=again.id, writeback=again.writeback)
            hold = writeback_hold(known)
        event = self._events.record(appointment, event_type=event_type, role="patient",  # type: ignore[arg-type]
                                    participant_id="patient", attempt=attempt, correlation_id=correlation_id,
                                    details=details, hold_writeback=hold)
        return RecordedEvent(event_id=event.id, writeback=event.writeback)

    def check_link(self, token: str) -> None:
        """Nothing when ``token`` leads to a visit (as :meth:`page` would show it), else why not.

        Raises:
            LaunchError: ``LINK_INVALID``, ``LINK_EXPIRED``, ``APPOINTMENT_NOT_FOUND``, ``APPOINTMENT_CANCELLED``.
            StoreUnavailable: Cosmos DB is down.
        """
        self._resolve(token)

    def _open_state(self, appointment: Appointment) -> VisitState:
        return visit_state(appointment, self._clock.now())

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
        if visit_state(appointment, now).phase == "cancelled":
            raise LaunchError("APPOINTMENT_CANCELLED")
        environment = self._environments.get(appointment.environment_id)
        if environment is None:
            raise LaunchError("APPOINTMENT_NOT_FOUND", "The visit's environment is no longer configured.")
        if environment.disabled:  # switched off in the portal: no patient joins (docs/portal.md)
            raise LaunchError("ENVIRONMENT_DISABLED")
        try:
            check_usable(environment, ignore=NOT_FOR_VISITS)
        except UnusableSetting as unusable:
            raise unusable_settings_error(unusable) from None
        return environment, appointment
