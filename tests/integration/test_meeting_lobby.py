"""A visit meeting's lobby follows the environment's ``lobby_bypass_scope``, through the real Graph client against
the Graph stand-in: ``createOrGet`` hands back an existing meeting unchanged, so a meeting made under another
setting is PATCHed (``lobbyBypassSettings``) once and stored with its new scope, and a launch where nothing
changed calls Graph not at all. The stand-in refuses a PATCH Graph refuses."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from lib.models import Appointment
from local.bench_launch import OutboundRecorder
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration


def _standin(settings: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{settings['GRAPH_STANDIN_URL']}/_standin/{path}", json=body,
                                verify=settings["REQUESTS_CA_BUNDLE"], timeout=30)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _scope_in_graph(settings: dict[str, str], meeting_id: str) -> str:
    (meeting,) = [m for m in _standin(settings, "GET", "meetings") if m["id"] == meeting_id]
    return meeting["lobbyBypassSettings"]["scope"]


@contextmanager
def graph_calls(settings: dict[str, str]) -> Iterator[list[str]]:
    """The Graph API calls made inside the block (not Entra's token calls), as ``METHOD /path`` with the IDs
    replaced by ``{id}``."""
    netloc = settings["GRAPH_STANDIN_URL"].split("://", 1)[1]
    seen: list[str] = []
    with OutboundRecorder({netloc}).installed() as recorder:
        recorder.recording = True
        yield seen
        recorder.recording = False
        for method, path, _ in recorder.take():
            parts = path.split("/", 1)[1].split("/")
            if parts[0] != "v1.0":
                continue
            seen.append(method + " /" + "/".join("{id}" if i == 2 or (i == 4 and p != "createOrGet") else p
                                                 for i, p in enumerate(parts)))


@pytest.fixture
def env(app: Any, environment_id: str, service_settings: dict[str, str]) -> Any:
    organizer = str(uuid.uuid4())
    _standin(service_settings, "POST", "users", {"id": organizer, "policy": True})
    return make_environment(app, environment_id, fallback_organizer_id=organizer)


def _visit(app: Any, env: Any) -> Appointment:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    return app.repos.appointments.create(Appointment(env.id, str(uuid.uuid4().int % 10**10), "booked", start,
                                                     start + timedelta(minutes=20), 20, "UTC"))


def test_a_changed_lobby_setting_is_patched_once_and_a_launch_with_nothing_changed_calls_graph_not_at_all(
        app: Any, env: Any, service_settings: dict[str, str]) -> None:
    visit = _visit(app, env)
    with graph_calls(service_settings) as made:
        first = app.meetings.ensure(env, visit, watch=False)
    assert made == ["POST /v1.0/users/{id}/onlineMeetings/createOrGet"]
    assert first.meeting.lobby_scope == "organization" == _scope_in_graph(service_settings, first.meeting.id)

    stricter = dataclasses.replace(env, lobby_bypass_scope="organizer")
    with graph_calls(service_settings) as made:
        moved = app.meetings.ensure(stricter, first, watch=False)
    assert made == ["PATCH /v1.0/users/{id}/onlineMeetings/{id}"]
    assert moved.meeting.id == first.meeting.id  # the same meeting, its lobby changed
    assert _scope_in_graph(service_settings, first.meeting.id) == "organizer"
    assert app.repos.appointments.get(visit.key).meeting.lobby_scope == "organizer"

    with graph_calls(service_settings) as made:  # the next launch: nothing changed, nothing called
        app.meetings.ensure(stricter, app.repos.appointments.get(visit.key), watch=False)
    assert made == []

    # An evolvable Graph enum member: sent with Prefer: include-unknown-enum-members, as Graph requires.
    no_guests = dataclasses.replace(env, lobby_bypass_scope="organizationExcludingGuests")
    app.meetings.ensure(no_guests, app.repos.appointments.get(visit.key), watch=False)
    assert _scope_in_graph(service_settings, first.meeting.id) == "organizationExcludingGuests"


def test_an_existing_meeting_returned_unchanged_by_create_or_get_gets_the_environments_lobby_before_it_is_stored(
        app: Any, env: Any, service_settings: dict[str, str]) -> None:
    visit = _visit(app, env)
    made_open = app.meetings.ensure(dataclasses.replace(env, lobby_bypass_scope="organizationAndFederated"), visit,
                                    watch=False)
    # The record loses its meeting (as a visit stored before meetings were kept); Graph still has it.
    forgotten = app.repos.appointments.replace(dataclasses.replace(made_open, meeting=None))
    with graph_calls(service_settings) as made:
        again = app.meetings.ensure(env, forgotten, watch=False)
    assert made == ["POST /v1.0/users/{id}/onlineMeetings/createOrGet", "PATCH /v1.0/users/{id}/onlineMeetings/{id}"]
    assert again.meeting.id == made_open.meeting.id
    assert _scope_in_graph(service_settings, again.meeting.id) == "organization"
    assert app.repos.appointments.get(visit.key).meeting.lobby_scope == "organization"


def test_a_meeting_stored_before_its_lobby_was_recorded_is_patched_once(
        app: Any, env: Any, service_settings: dict[str, str]) -> None:
    made = app.meetings.ensure(env, _visit(app, env), watch=False)
    legacy = app.repos.appointments.replace(dataclasses.replace(
        made, meeting=dataclasses.replace(made.meeting, lobby_scope=None)))
    with graph_calls(service_settings) as calls:
        app.meetings.ensure(env, legacy, watch=False)
        app.meetings.ensure(env, app.repos.appointments.get(made.key), watch=False)
    assert calls == ["PATCH /v1.0/users/{id}/onlineMeetings/{id}"]
    assert app.repos.appointments.get(made.key).meeting.lobby_scope == "organization"


def test_a_failed_lobby_update_does_not_stop_the_visit_and_the_next_launch_tries_again(
        app: Any, env: Any, service_settings: dict[str, str]) -> None:
    made = app.meetings.ensure(env, _visit(app, env), watch=False)
    stricter = dataclasses.replace(env, lobby_bypass_scope="organizer")
    path = f"/v1.0/users/{made.meeting.organizer_id}/onlineMeetings/{made.meeting.id}"
    _standin(service_settings, "POST", "faults", {"path_prefix": path, "responses": [{"status": 503}]})

    still = app.meetings.ensure(stricter, made, watch=False)
    assert still.meeting.join_url == made.meeting.join_url  # the clinician still goes in
    assert app.repos.appointments.get(made.key).meeting.lobby_scope == "organization"
    assert _scope_in_graph(service_settings, made.meeting.id) == "organization"

    app.meetings.ensure(stricter, app.repos.appointments.get(made.key), watch=False)
    assert _scope_in_graph(service_settings, made.meeting.id) == "organizer"
    assert app.repos.appointments.get(made.key).meeting.lobby_scope == "organizer"


@pytest.mark.parametrize(("body", "prefer"), [
    ({"lobbyBypassSettings": {"scope": "nobody"}}, True),
    ({"lobbyBypassSettings": {"scope": "organizationExcludingGuests"}}, False),  # evolvable enum without Prefer
    ({"lobbyBypassSettings": {"scope": "organizer", "isDialInBypassEnabled": "yes"}}, True),
    ({"lobbyBypassSettings": "organizer"}, True),
])
def test_the_graph_standin_refuses_a_lobby_update_graph_refuses(
        app: Any, env: Any, service_settings: dict[str, str], body: dict[str, Any], prefer: bool) -> None:
    made = app.meetings.ensure(env, _visit(app, env), watch=False)
    headers = {"Authorization": f"Bearer {app.graph_tokens.token()}"}
    if prefer:
        headers["Prefer"] = "include-unknown-enum-members"
    url = (f"{service_settings['GRAPH_STANDIN_URL']}/v1.0/users/{made.meeting.organizer_id}/onlineMeetings/"
           f"{made.meeting.id}")
    refused = requests.patch(url, json=body, headers=headers, verify=service_settings["REQUESTS_CA_BUNDLE"],
                             timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadRequest"
    assert _scope_in_graph(service_settings, made.meeting.id) == "organization"
