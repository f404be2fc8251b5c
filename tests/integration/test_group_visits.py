"""Group visits: every appointment sharing a conference ID lands in one Teams meeting, whoever opens it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.models import Appointment, Meeting
from lib.visits.meetings import MeetingService
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


class RecordingGraph:
    """Stands in for ``GraphClient``: one meeting per (organizer, externalId), as createOrGet keys them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def create_or_get_meeting(self, organizer, external_id, subject, start, end, lobby_scope) -> Meeting:
        self.calls.append((organizer, external_id))
        return Meeting(id=f"m-{organizer}-{external_id}", join_url=f"https://teams.example/{organizer}/{external_id}",
                       organizer_id=organizer, external_id=external_id, lobby_scope=lobby_scope)


class TakingTurnsOrganizers:
    """A different organizer each time (the first launch by one clinician, a text link by another)."""

    def __init__(self) -> None:
        self.n = 0

    def organizer_for(self, environment, appointment, ehr_user_id, department) -> str:
        self.n += 1
        return f"organizer-{self.n}"


def appointment(env_id: str, appointment_id: str, conference_id: str | None) -> Appointment:
    return Appointment(environment_id=env_id, appointment_id=appointment_id, status="booked", start_utc=START,
                       end_utc=START + timedelta(minutes=60), duration_minutes=60, source_time_zone=None,
                       order_key="k", conference_id=conference_id)


def test_appointments_of_one_group_share_the_first_meeting(app, environment_id):
    env = make_environment(app, environment_id)
    graph = RecordingGraph()
    meetings = MeetingService(appointments=app.repos.appointments, graph=graph, organizers=TakingTurnsOrganizers())
    first = app.repos.appointments.create(appointment(env.id, "G1", "CONF-77"))
    second = app.repos.appointments.create(appointment(env.id, "G2", "CONF-77"))
    a = meetings.ensure(env, first)
    b = meetings.ensure(env, second)
    assert a.meeting.join_url == b.meeting.join_url
    assert len(graph.calls) == 1
    assert graph.calls[0][1].startswith("vv1-")
    assert app.repos.appointments.get(second.key).meeting.join_url == a.meeting.join_url


def test_a_group_in_another_environment_gets_its_own_meeting(app, environment_id):
    env = make_environment(app, environment_id)
    other = make_environment(app, environment_id + "-other")
    graph = RecordingGraph()
    meetings = MeetingService(appointments=app.repos.appointments, graph=graph, organizers=TakingTurnsOrganizers())
    a = meetings.ensure(env, app.repos.appointments.create(appointment(env.id, "G1", "CONF-78")))
    b = meetings.ensure(other, app.repos.appointments.create(appointment(other.id, "G1", "CONF-78")))
    assert a.meeting.join_url != b.meeting.join_url
    assert graph.calls[0][1] != graph.calls[1][1]


def test_single_visits_keep_one_meeting_each(app, environment_id):
    env = make_environment(app, environment_id)
    graph = RecordingGraph()
    meetings = MeetingService(appointments=app.repos.appointments, graph=graph, organizers=TakingTurnsOrganizers())
    a = meetings.ensure(env, app.repos.appointments.create(appointment(env.id, "S1", None)))
    b = meetings.ensure(env, app.repos.appointments.create(appointment(env.id, "S2", None)))
    assert a.meeting.join_url != b.meeting.join_url
