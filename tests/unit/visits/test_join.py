"""JoinService: token checks, meeting on first open, no PHI on the page, deterministic patient events."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from lib.clock import FixedClock
from lib.models import Appointment, EnvironmentConfig, Meeting
from lib.smart.errors import LaunchError
from lib.sms.links import JoinLinks
from lib.teams.graph import FallbackOrganizerResolver, GraphClient
from lib.visits.events import VisitEventRecorder
from lib.visits.join import InvalidEvent, JoinService
from lib.visits.meetings import MeetingService
from tests.unit.smart.fake_http import fake_client
from tests.unit.visits import fakes

NOW = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)
START = datetime(2026, 3, 3, 19, 30, tzinfo=UTC)
GRAPH = "https://graph.example.org/v1.0"


class Tokens:
    def token(self) -> str:
        return "t"


class World:
    def __init__(self, status: str = "booked", meeting: Meeting | None = None) -> None:
        self.env = EnvironmentConfig(id="env1", kind="test", display_name="Contoso <Health>", fhir_base_urls=(),
                                     approved=True, epic_client_id="c", time_zone="America/New_York",
                                     fallback_organizer_id="org-1")
        self.appointments = fakes.Appointments()
        self.links = fakes.Links()
        self.events = fakes.VisitEvents()
        self.queue = fakes.Queue()
        self.clock = FixedClock(NOW)
        self.join_links = JoinLinks(b"s" * 32)
        self.link_id = secrets.token_urlsafe(16)
        self.appointments.create(Appointment("env1", "777", status, START, START + timedelta(minutes=30), 30,  # type: ignore[arg-type]
                                             "America/New_York", link_id=self.link_id, meeting=meeting))
        self.expires = START + timedelta(hours=3)
        self.links.put(self.link_id, "env1|777", expires=self.expires, now=NOW)
        self.token = self.join_links.token(self.link_id, self.expires)
        http, self.fake = fake_client()
        self.fake.on("POST", f"{GRAPH}/users/org-1/onlineMeetings/createOrGet",
                     (201, {"id": "m-1", "joinWebUrl": "https://teams.example.org/l/meetup-join/m1"}))
        meetings = MeetingService(appointments=self.appointments,  # type: ignore[arg-type]
                                  graph=GraphClient(base_url=GRAPH, tokens=Tokens(), http=http),
                                  organizers=FallbackOrganizerResolver())
        self.service = JoinService(
            join_links=self.join_links, links=self.links, appointments=self.appointments,  # type: ignore[arg-type]
            environments=fakes.Environments(self.env), meetings=meetings,  # type: ignore[arg-type]
            events=VisitEventRecorder(visit_events=self.events, queues=self.queue, clock=self.clock),  # type: ignore[arg-type]
            clock=self.clock,
        )


def test_join_page_creates_the_meeting_once_and_shows_organization_and_local_time():
    world = World()
    page = world.service.page(world.token)
    world.service.page(world.token)
    assert sum("createOrGet" in c.url for c in world.fake.calls) == 1
    assert "Contoso &lt;Health&gt;" in page.html
    assert "Tuesday, March 3, 2026 at 2:30 PM EST" in page.html
    assert 'data-join-url="https://teams.example.org/l/meetup-join/m1"' in page.html
    assert f'data-events="./{world.token}/events"' in page.html
    assert "777" not in page.html  # no CSN on the page
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]


def test_an_existing_meeting_is_used_without_calling_graph():
    world = World(meeting=Meeting("m-0", "https://teams.example.org/l/meetup-join/m0", "org-1", "x"))
    page = world.service.page(world.token)
    assert world.fake.calls == []
    assert "meetup-join/m0" in page.html


def test_a_tampered_token_is_link_invalid():
    world = World()
    tampered = world.token[:-2] + ("A" if world.token[-2] != "A" else "B") + world.token[-1]
    with pytest.raises(LaunchError) as err:
        world.service.page(tampered)
    assert err.value.code == "LINK_INVALID"
    assert world.fake.calls == []


def test_an_expired_token_is_link_expired():
    world = World()
    world.clock.set(world.expires + timedelta(seconds=1))
    with pytest.raises(LaunchError) as err:
        world.service.page(world.token)
    assert err.value.code == "LINK_EXPIRED"


def test_a_cancelled_visit_is_appointment_cancelled():
    world = World(status="cancelled")
    with pytest.raises(LaunchError) as err:
        world.service.page(world.token)
    assert err.value.code == "APPOINTMENT_CANCELLED"


def test_the_join_click_is_recorded_once_per_page_attempt_as_a_click_not_presence():
    world = World()
    first = world.service.record_event(world.token, {"type": "connected", "attempt": "attempt-123"})
    again = world.service.record_event(world.token, {"type": "connected", "attempt": "attempt-123"})
    other = world.service.record_event(world.token, {"type": "connected", "attempt": "attempt-456"})
    assert first.event_id == again.event_id != other.event_id
    event = world.events.get("env1|777", first.event_id)
    assert (event.role, event.participant_id, event.type, event.writeback, event.source) == (  # type: ignore[union-attr]
        "patient", "patient", "patient_opened_page", "none", "click")
    assert world.queue.sent == []  # presence is written back from the meeting's roster, not from clicks


@pytest.mark.parametrize("body", [{"type": "recording_started"}, ["connected"], None, {"kind": "connected"}])
def test_unknown_event_types_are_refused(body):
    world = World()
    with pytest.raises(InvalidEvent):
        world.service.record_event(world.token, body)
    assert world.events.docs == {}


def test_events_with_a_tampered_token_are_refused():
    world = World()
    with pytest.raises(LaunchError):
        world.service.record_event("x" * 48, {"type": "connected"})


@pytest.mark.parametrize("event_type", ["device_test_passed", "device_test_failed"])
def test_the_device_test_result_is_recorded_and_queued_for_write_back(event_type):
    world = World()
    recorded = world.service.record_event(world.token, {"type": event_type, "attempt": "attempt-123"})
    event = world.events.get("env1|777", recorded.event_id)
    assert (event.type, event.role, recorded.writeback) == (event_type, "patient", "pending")  # type: ignore[union-attr]
    assert world.queue.sent[-1][1]["id"] == recorded.event_id


def test_the_join_page_posts_the_device_test_result():
    from lib.visits.pages import JOIN_SCRIPT

    assert "post('device_test_passed')" in JOIN_SCRIPT and "post('device_test_failed')" in JOIN_SCRIPT
