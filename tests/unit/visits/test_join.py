"""JoinService: token checks, the visit's state on the page (in the patient's language, no PHI), the
meeting made while the visit can happen, one ACS identity per join, and the page's events (page opened is
never written back; the device test is, as passed or failed)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest

from lib.clock import FixedClock
from lib.models import Appointment, EnvironmentConfig, Meeting
from lib.smart.errors import LaunchError
from lib.sms.links import JoinLinks
from lib.teams.graph import FallbackOrganizerResolver, GraphClient
from lib.visits.call_identity import CallCredential, CallIdentityUnavailable
from lib.visits.events import VisitEventRecorder
from lib.visits.join import InvalidEvent, JoinService, VisitNotOpen
from lib.visits.meetings import MeetingService
from tests.unit.smart.fake_http import fake_client
from tests.unit.visits import fakes

START = datetime(2026, 3, 3, 19, 30, tzinfo=UTC)
NOW = START - timedelta(minutes=10)
GRAPH = "https://graph.example.org/v1.0"
STEPS = {"speaker": "passed", "microphone": "passed", "camera": "failed", "connection": "passed",
         "test_call": "skipped"}


class Tokens:
    def token(self) -> str:
        return "t"


class Identities:
    def __init__(self) -> None:
        self.issued = 0
        self.down = False

    def issue(self) -> CallCredential:
        if self.down:
            raise CallIdentityUnavailable("ACS answered HTTP 503")
        self.issued += 1
        return CallCredential(f"8:acs:r_{self.issued}", f"token-{self.issued}", NOW + timedelta(hours=1))


class World:
    def __init__(self, status: str = "booked", meeting: Meeting | None = None, language: str | None = None,
                 revision: int = 1) -> None:
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
                                             "America/New_York", link_id=self.link_id, meeting=meeting,
                                             language=language, schedule_revision=revision))
        self.expires = START + timedelta(hours=3)
        self.links.put(self.link_id, "env1|777", expires=self.expires, now=NOW)
        self.token = self.join_links.token(self.link_id, self.expires)
        http, self.fake = fake_client()
        self.fake.on("POST", f"{GRAPH}/users/org-1/onlineMeetings/createOrGet",
                     (201, {"id": "m-1", "joinWebUrl": "https://teams.example.org/l/meetup-join/m1",
                            "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": False}}))
        meetings = MeetingService(appointments=self.appointments,  # type: ignore[arg-type]
                                  graph=GraphClient(base_url=GRAPH, tokens=Tokens(), http=http),
                                  organizers=FallbackOrganizerResolver())
        self.identities = Identities()
        self.service = JoinService(
            join_links=self.join_links, links=self.links, appointments=self.appointments,  # type: ignore[arg-type]
            environments=fakes.Environments(self.env), meetings=meetings,  # type: ignore[arg-type]
            events=VisitEventRecorder(visit_events=self.events, queues=self.queue, clock=self.clock),  # type: ignore[arg-type]
            call_identities=self.identities, relay_urls=("stun:relay.example.org:3478",),  # type: ignore[arg-type]
            clock=self.clock,
        )


def data(page_html: str, name: str) -> str:
    found = re.search(rf'data-{name}="([^"]*)"', page_html)
    assert found, name
    return unescape(found.group(1))


def test_open_visit_page_makes_the_meeting_once_and_shows_only_organization_and_local_time():
    world = World()
    page = world.service.page(world.token)
    world.service.page(world.token)
    assert page.status == 200
    assert sum("createOrGet" in c.url for c in world.fake.calls) == 1
    assert "Video visit with Contoso &lt;Health&gt;" in page.html
    assert "Tuesday, March 3, 2026, 2:30\u202fPM (Eastern Standard Time)" in page.html
    assert (data(page.html, "phase"), data(page.html, "call-url")) == ("open", f"./{world.token}/call")
    assert data(page.html, "relays") == "stun:relay.example.org:3478"
    assert "777" not in page.html and "meetup-join" not in page.html  # no CSN, the link comes with the token
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy and "wss://*.skype.com" in policy


def test_too_early_says_when_the_room_opens_and_offers_the_device_test_but_no_join():
    world = World()
    world.clock.set(START - timedelta(hours=2))
    page = world.service.page(world.token)
    assert data(page.html, "phase") == "too_early"
    assert "The room opens at 2:00\u202fPM (Eastern Standard Time)." in page.html
    assert 'id="start-test"' in page.html and 'id="join"' not in page.html
    assert "*.skype.com" not in page.headers["Content-Security-Policy"]  # no call from this page


def test_the_page_speaks_the_visits_language_and_the_switcher_wins():
    world = World(language="SPA")
    spanish = world.service.page(world.token)
    assert '<html lang="es"' in spanish.html and "Visita por video con Contoso" in spanish.html
    assert "martes, 3 de marzo de 2026" in spanish.html
    english = world.service.page(world.token, language="en", accept_language="es")
    assert '<html lang="en"' in english.html


def test_a_moved_visit_says_so_with_its_new_time():
    world = World(revision=2)
    page = world.service.page(world.token)
    assert 'id="moved"' in page.html and "The new time is Tuesday, March 3, 2026" in page.html


@pytest.mark.parametrize(("change", "phase", "status"), [
    ("tamper", "invalid", 404), ("expire", "expired", 410), ("cancel", "cancelled", 410), ("over", "over", 200)])
def test_link_and_visit_problems_are_states_of_the_page_without_a_meeting(change, phase, status):
    world = World(status="cancelled" if change == "cancel" else "booked")
    token = world.token
    if change == "tamper":
        token = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    if change == "expire":
        world.clock.set(world.expires + timedelta(seconds=1))
    if change == "over":
        world.clock.set(START + timedelta(minutes=91))
    page = world.service.page(token, accept_language="es-MX,es;q=0.9")
    assert (page.status, data(page.html, "phase")) == (status, phase)
    assert '<html lang="es"' in page.html  # no visit language known: the browser's
    assert world.fake.calls == [] and 'type="module"' not in page.html


def test_call_issues_a_new_identity_per_join_with_the_meeting_link_and_records_it_unwritten():
    world = World()
    first, second = world.service.call(world.token), world.service.call(world.token)
    assert (first.token, second.token) == ("token-1", "token-2")
    assert first.meeting_link == "https://teams.example.org/l/meetup-join/m1" and first.display_name == "Patient"
    issued = [e for e in world.events.docs.values() if e.type == "call_identity_issued"]
    assert sorted(e.details["acsUserId"] for e in issued) == ["8:acs:r_1", "8:acs:r_2"]  # type: ignore[index]
    assert {e.writeback for e in issued} == {"none"} and world.queue.sent == []


@pytest.mark.parametrize(("now", "code"), [(START - timedelta(hours=1), "VISIT_TOO_EARLY"),
                                           (START + timedelta(hours=2), "VISIT_OVER")])
def test_no_call_token_outside_the_room_hours(now, code):
    world = World()
    world.clock.set(now)
    with pytest.raises(VisitNotOpen) as caught:
        world.service.call(world.token)
    assert caught.value.code == code and world.identities.issued == 0


def test_call_for_a_cancelled_visit_or_bad_link_is_a_launch_error_and_acs_outage_propagates():
    with pytest.raises(LaunchError) as caught:
        World(status="cancelled").service.call(World().token)
    assert caught.value.code in ("LINK_INVALID", "APPOINTMENT_CANCELLED")
    world = World()
    world.identities.down = True
    with pytest.raises(CallIdentityUnavailable):
        world.service.call(world.token)


def test_page_opened_is_recorded_once_per_page_and_never_written_back():
    world = World()
    first = world.service.record_event(world.token, {"type": "page_opened", "attempt": "attempt-123"})
    again = world.service.record_event(world.token, {"type": "page_opened", "attempt": "attempt-123"})
    assert first.event_id == again.event_id and first.writeback == "none"
    event = world.events.get("env1|777", first.event_id)
    assert (event.role, event.participant_id, event.type) == ("patient", "patient", "page_opened")  # type: ignore[union-attr]
    assert world.queue.sent == []


def test_the_device_test_is_stored_with_its_steps_and_queued_for_write_back():
    world = World()
    recorded = world.service.record_event(world.token, {"type": "device_test", "attempt": "attempt-123",
                                                        "steps": STEPS, "measures": {"rttMs": 40}})
    event = world.events.get("env1|777", recorded.event_id)
    assert (event.type, recorded.writeback) == ("device_test_failed", "pending")  # type: ignore[union-attr]
    assert event.details == {"steps": STEPS, "measures": {"rttMs": 40.0}}  # type: ignore[union-attr]
    assert world.queue.sent[-1][1]["id"] == recorded.event_id


@pytest.mark.parametrize("body", [{"type": "connected"}, {"type": "device_test_passed"}, ["page_opened"], None,
                                  {"type": "device_test", "steps": {"speaker": "ok"}}])
def test_presence_and_malformed_events_are_refused(body):
    world = World()
    with pytest.raises(InvalidEvent):
        world.service.record_event(world.token, body)
    assert world.events.docs == {}


def test_standalone_device_test_names_the_organization_or_says_the_link_does_not_work():
    world = World()
    page = world.service.device_test("env1", accept_language="es")
    assert page.status == 200 and data(page.html, "mode") == "standalone"
    assert "Prueba de equipo para Contoso &lt;Health&gt;" in page.html and "data-events-url" not in page.html
    for unknown in ("nope", "../x", None):
        missing = world.service.device_test(unknown)
        assert missing.status == 404 and data(missing.html, "phase") == "invalid"
