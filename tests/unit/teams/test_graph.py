"""Graph createOrGet: request shape, error mapping, stable external IDs, the organizer seam."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.models import Appointment, EnvironmentConfig
from lib.smart.errors import LaunchError
from lib.teams.graph import FallbackOrganizerResolver, GraphClient, meeting_external_id
from tests.unit.smart.fake_http import fake_client

BASE = "https://graph.example.org/v1.0"
URL = f"{BASE}/users/org-1/onlineMeetings/createOrGet"
START = datetime(2026, 3, 3, 19, 30, tzinfo=UTC)
END = datetime(2026, 3, 3, 20, 0, tzinfo=UTC)


class Tokens:
    def token(self) -> str:
        return "app-token"


def client():
    http, fake = fake_client()
    return GraphClient(base_url=BASE, tokens=Tokens(), http=http), fake


def meeting_doc(**overrides: object) -> dict:
    doc = {"id": "m-1", "joinWebUrl": "https://teams.example.org/l/meetup-join/abc", "externalId": "x"}
    doc.update(overrides)
    return doc


def test_create_or_get_sends_lobby_for_the_organization_subject_times_and_bearer():
    graph, fake = client()
    fake.on("POST", URL, (201, meeting_doc()))
    meeting = graph.create_or_get_meeting("org-1", "vv1-abc", "Video visit", START, END)
    call = fake.calls[0]
    assert call.headers["Authorization"] == "Bearer app-token"
    assert call.json() == {
        "externalId": "vv1-abc", "subject": "Video visit",
        "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": False},
        "startDateTime": "2026-03-03T19:30:00Z", "endDateTime": "2026-03-03T20:00:00Z",
    }
    assert (meeting.id, meeting.join_url, meeting.organizer_id, meeting.external_id) == \
        ("m-1", "https://teams.example.org/l/meetup-join/abc", "org-1", "vv1-abc")


def test_times_are_left_out_when_unknown():
    graph, fake = client()
    fake.on("POST", URL, (200, meeting_doc()))
    graph.create_or_get_meeting("org-1", "vv1-abc", "Video visit", None, END)
    assert "startDateTime" not in fake.calls[0].json() and "endDateTime" not in fake.calls[0].json()


@pytest.mark.parametrize(("status", "code"), [
    (401, "GRAPH_CONSENT_MISSING"), (403, "GRAPH_ACCESS_POLICY_MISSING"), (404, "GRAPH_ORGANIZER_NOT_FOUND"),
    (500, "GRAPH_UNAVAILABLE"), (503, "GRAPH_UNAVAILABLE"),
])
def test_graph_errors_map_to_launch_errors(status, code):
    graph, fake = client()
    fake.on("POST", URL, (status, {"error": {"code": "x", "message": "y"}}))
    with pytest.raises(LaunchError) as err:
        graph.create_or_get_meeting("org-1", "vv1-abc")
    assert err.value.code == code


def test_throttling_carries_retry_after():
    graph, fake = client()
    fake.on("POST", URL, (429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "7"}))
    with pytest.raises(LaunchError) as err:
        graph.create_or_get_meeting("org-1", "vv1-abc")
    assert (err.value.code, err.value.retry_after, err.value.status) == ("GRAPH_THROTTLED", 7, 503)


def test_a_meeting_without_an_https_join_url_is_refused():
    graph, fake = client()
    fake.on("POST", URL, (201, meeting_doc(joinWebUrl="javascript:alert(1)")))
    with pytest.raises(LaunchError) as err:
        graph.create_or_get_meeting("org-1", "vv1-abc")
    assert err.value.code == "GRAPH_UNAVAILABLE"


def test_unreachable_graph_is_graph_unavailable():
    http, _ = fake_client()
    graph = GraphClient(base_url="https://nowhere.example.org/v1.0", tokens=Tokens(), http=http)
    with pytest.raises(LaunchError) as err:
        graph.create_or_get_meeting("org-1", "vv1-abc")
    assert err.value.code == "GRAPH_UNAVAILABLE"


def test_external_id_is_stable_opaque_and_per_environment():
    a = meeting_external_id("prod", "123456789")
    assert a == meeting_external_id("prod", "123456789")
    assert a != meeting_external_id("test", "123456789")
    assert a.startswith("vv1-") and len(a) == 44
    assert "123456789" not in a


def environment(**overrides: object) -> EnvironmentConfig:
    args: dict = {"id": "e1", "kind": "test", "display_name": "Contoso", "fhir_base_urls": (), "approved": True,
                      "epic_client_id": "c"}
    args.update(overrides)
    return EnvironmentConfig(**args)


APPOINTMENT = Appointment("e1", "1", "booked", START, END, 30, "America/New_York")


def test_fallback_organizer_is_the_environments():
    resolver = FallbackOrganizerResolver()
    assert resolver.organizer_for(environment(fallback_organizer_id="oid-9"), APPOINTMENT, "E1") == "oid-9"


def test_no_fallback_organizer_is_organizer_missing():
    with pytest.raises(LaunchError) as err:
        FallbackOrganizerResolver().organizer_for(environment(), APPOINTMENT)
    assert err.value.code == "ORGANIZER_MISSING"


def test_create_or_get_asks_for_the_environments_lobby_and_reports_the_scope_the_meeting_has():
    graph, fake = client()
    existing = meeting_doc(lobbyBypassSettings={"scope": "organizer", "isDialInBypassEnabled": False})
    fake.on("POST", URL, (200, existing))  # createOrGet hands back an existing meeting unchanged
    meeting = graph.create_or_get_meeting("org-1", "vv1-abc", lobby_scope="organizationExcludingGuests")
    call = fake.calls[0]
    assert call.json()["lobbyBypassSettings"] == {"scope": "organizationExcludingGuests",
                                                  "isDialInBypassEnabled": False}
    assert call.headers["Prefer"] == "include-unknown-enum-members"  # Graph's evolvable enum members
    assert meeting.lobby_scope == "organizer"


def test_update_lobby_patches_the_organizers_meeting_and_returns_its_new_scope():
    graph, fake = client()
    url = f"{BASE}/users/org-1/onlineMeetings/m%2A1"
    fake.on("PATCH", url, (200, meeting_doc(lobbyBypassSettings={"scope": "organizer"})))
    assert graph.update_lobby("org-1", "m*1", "organizer") == "organizer"
    assert fake.calls[0].json() == {"lobbyBypassSettings": {"scope": "organizer", "isDialInBypassEnabled": False}}


def test_a_refused_lobby_update_is_a_graph_error():
    graph, fake = client()
    fake.on("PATCH", f"{BASE}/users/org-1/onlineMeetings/m-1", (404, {"error": {"code": "NotFound"}}))
    with pytest.raises(LaunchError) as err:
        graph.update_lobby("org-1", "m-1", "organizer")
    assert err.value.code == "GRAPH_ORGANIZER_NOT_FOUND"
