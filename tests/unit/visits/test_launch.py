"""LaunchService: the iss allowlist, state binding and single use, the callback's iss, the happy paths."""

from __future__ import annotations

import hashlib
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from lib.clock import FixedClock
from lib.config.approvals import seeded_approvals
from lib.models import Appointment, EnvironmentConfig
from lib.smart.discovery import SmartDiscovery
from lib.smart.errors import LaunchError
from lib.smart.id_token import IdTokenVerifier
from lib.smart.keys import SmartKeys
from lib.sms.links import JoinLinks
from lib.teams.graph import FallbackOrganizerResolver, GraphClient, meeting_external_id
from lib.visits.events import VisitEventRecorder
from lib.visits.launch import LAUNCH_COOKIE, LaunchService, clean_hint
from lib.visits.meetings import MeetingService
from lib.visits.pages import Page, Redirect
from tests.unit.smart.fake_http import FakeAdapter, fake_client
from tests.unit.smart.keys_for_tests import rsa_pem
from tests.unit.visits import fakes

BASE = "https://ehr.example.org/ic"
ISS = f"{BASE}/api/FHIR/R4"
PUBLIC = "https://app.example.org"
GRAPH = "https://graph.example.org/v1.0"
NOW = datetime(2026, 3, 3, 19, 0, tzinfo=UTC)
CSN = "880011"
EPIC_KEY = RSAKey.import_key(rsa_pem("epic"), {"kid": "epic-1"})


class Tokens:
    def token(self) -> str:
        return "graph-token"


class World:
    """A LaunchService wired to in-memory stores and a fake Epic + Graph."""

    def __init__(self, *, authorize_post: bool = False, approved: bool = True, organizer: str | None = "org-1",
                 id_user: str = "Practitioner/E1001", domain_clock: FixedClock | None = None,
                 env: dict[str, Any] | None = None, others: tuple[EnvironmentConfig, ...] = (),
                 keys: SmartKeys | None = None, organizers: Any = None, **service_extra: Any) -> None:
        self.env = EnvironmentConfig(**{"id": "env1", "kind": "test", "display_name": "Contoso",
                                        "fhir_base_urls": (ISS,), "approved": approved, "epic_client_id": "client-1",
                                        "fallback_organizer_id": organizer, **(env or {})})
        if approved:  # the Epic analyst approved the URL (docs/portal.md "Approval")
            self.env = seeded_approvals(self.env, at=NOW)
        self.environments = fakes.Environments(self.env, *others)
        #: id_token claim overrides (``None`` value drops a claim) and the key that signs it (attack tests).
        self.id_claims: dict[str, Any] = {}
        #: token response overrides (``None`` drops a field).
        self.token_extra: dict[str, Any] = {}
        self.id_key = EPIC_KEY
        self.states = fakes.LaunchStates()
        self.appointments = fakes.Appointments()
        self.links = fakes.Links()
        self.events = fakes.VisitEvents()
        self.queue = fakes.Queue()
        self.clock = FixedClock(NOW)
        self.http, self.fake = fake_client()
        self.id_user = id_user
        self.nonce: str | None = None
        self.join_links = JoinLinks(b"k" * 32)
        caps = ["launch-ehr", "permission-v1"] + (["authorize-post"] if authorize_post else [])
        self.fake.on("GET", f"{ISS}/.well-known/smart-configuration", (200, {
            "issuer": f"{BASE}/oauth2", "jwks_uri": f"{BASE}/oauth2/jwks",
            "authorization_endpoint": f"{BASE}/oauth2/authorize", "token_endpoint": f"{BASE}/oauth2/token",
            "code_challenge_methods_supported": ["S256"], "capabilities": caps}))
        self.fake.on("GET", f"{BASE}/oauth2/jwks", (200, {"keys": [EPIC_KEY.as_dict(private=False)]}))
        self.fake.on("POST", f"{BASE}/oauth2/token", handler=self._token)
        self.fake.on("GET", f"{ISS}/Appointment/fa-1", (200, {
            "resourceType": "Appointment", "id": "fa-1", "status": "booked",
            "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8", "value": CSN}],
            "start": "2026-03-03T19:30:00Z", "end": "2026-03-03T20:00:00Z",
            "participant": [{"actor": {"reference": "Practitioner/E1001"}, "status": "accepted"},
                            {"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}))
        self.fake.on("POST", f"{GRAPH}/users/org-1/onlineMeetings/createOrGet", (201, {
            "id": "m-1", "joinWebUrl": "https://teams.example.org/l/meetup-join/m1",
            "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": False}}))
        graph = GraphClient(base_url=GRAPH, tokens=Tokens(), http=self.http)
        keys = keys or SmartKeys.from_pem(rsa_pem("ours"))
        self.keys = keys
        self.service = LaunchService(
            environments=self.environments, launch_states=self.states, appointments=self.appointments,  # type: ignore[arg-type]
            links=self.links, discovery=SmartDiscovery(self.http), id_tokens=IdTokenVerifier(self.http),  # type: ignore[arg-type]
            keys=lambda kind: keys, http=self.http,
            meetings=MeetingService(appointments=self.appointments, graph=graph,  # type: ignore[arg-type]
                                    organizers=organizers or FallbackOrganizerResolver()),
            events=VisitEventRecorder(visit_events=self.events, queues=self.queue, clock=self.clock),  # type: ignore[arg-type]
            join_links=self.join_links, clock=domain_clock or self.clock, public_base_url=PUBLIC,
            wall_clock=self.clock, **service_extra,
        )

    def _token(self, call: Any) -> tuple[int, dict]:
        t = int(NOW.timestamp())
        _user_type, user_id = self.id_user.split("/")
        claims = {"iss": f"{BASE}/oauth2", "aud": "client-1", "sub": user_id, "fhirUser": f"{ISS}/{self.id_user}",
                  "iat": t, "exp": t + 300, "nonce": self.nonce, **self.id_claims}
        claims = {k: v for k, v in claims.items() if v is not None}
        id_token = jwt.encode({"alg": "RS256", "kid": "epic-1"}, claims, self.id_key)
        body = {"access_token": "at-1", "token_type": "bearer", "expires_in": 3240, "id_token": id_token,
                "appointment": "fa-1", "patient": "p1", "need_patient_banner": "false", **self.token_extra}
        return 200, {k: v for k, v in body.items() if v is not None}

    def begin(self, kind: str = "provider", cookie: str | None = None, frame: Any = None,
              **query: str) -> Redirect | Page:
        params = {"iss": ISS, "launch": "launch-1", **query}
        result = self.service.begin(kind, params, cookie, frame=frame)  # type: ignore[arg-type]
        if isinstance(result, Redirect):
            self.nonce = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(result.location).query))["nonce"]
        return result

    def authorize_params(self, result: Redirect) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(result.location).query))


def cookie_of(result: Redirect | Page) -> str:
    (cookie,) = result.cookies
    assert cookie.name == LAUNCH_COOKIE
    return cookie.value


# ---- begin -----------------------------------------------------------------------------------------------
def test_a_foreign_iss_is_refused_without_any_outbound_call():
    world = World()
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"iss": "https://attacker.example.net/api/FHIR/R4", "launch": "x"}, None)
    assert err.value.code == "ISS_NOT_ALLOWED"
    assert world.fake.calls == []
    assert world.states.docs == {}


@pytest.mark.parametrize("iss", [ISS + "/", ISS.upper(), ISS.replace("https", "http"), ISS + "?x=1"])
def test_iss_must_match_exactly(iss):
    world = World()
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"iss": iss, "launch": "x"}, None)
    assert err.value.code == "ISS_NOT_ALLOWED"
    assert world.fake.calls == []


def test_an_unapproved_environment_is_refused_without_any_outbound_call():
    world = World(approved=False)
    with pytest.raises(LaunchError) as err:
        world.begin()
    assert err.value.code == "ENVIRONMENT_NOT_APPROVED"
    assert world.fake.calls == []


@pytest.mark.parametrize(("query", "code"), [
    ({"launch": "x"}, "ISS_MISSING"), ({"iss": " ", "launch": "x"}, "ISS_MISSING"),
    ({"iss": ISS}, "LAUNCH_MISSING"), ({"iss": ISS, "launch": ""}, "LAUNCH_MISSING"),
    ({"iss": ISS, "launch": "   "}, "LAUNCH_INVALID"), ({"iss": ISS, "launch": "a" * 4097}, "LAUNCH_INVALID"),
    ({"iss": ISS, "launch": "abc\x00def"}, "LAUNCH_INVALID"), ({"iss": ISS, "launch": "abc def"}, "LAUNCH_INVALID"),
    ({"iss": ISS + "/" + "a" * 2048, "launch": "x"}, "ISS_NOT_ALLOWED"),
])
def test_absent_blank_or_absurd_launch_parameters_are_refused_before_anything_is_stored(query, code):
    world = World()
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", query, None)
    assert err.value.code == code
    assert world.states.docs == {} and world.fake.calls == []


def test_a_long_jwt_launch_token_is_accepted():
    world = World()
    result = world.begin(launch="eyJ" + "a" * 4000)
    assert world.authorize_params(result)["launch"] == "eyJ" + "a" * 4000  # type: ignore[arg-type]


def test_begin_redirects_to_authorize_with_state_bound_to_a_new_cookie():
    world = World()
    result = world.begin(sessionId=CSN, departmentId="%PERFDEPID;;; ; ;;NONE;%")
    assert isinstance(result, Redirect)
    params = world.authorize_params(result)
    assert result.location.startswith(f"{BASE}/oauth2/authorize?")
    assert params["aud"] == ISS and params["launch"] == "launch-1"
    assert params["redirect_uri"] == f"{PUBLIC}/api/launch/callback"
    state = world.states.docs[params["state"]]
    cookie = cookie_of(result)
    assert state.browser_binding == hashlib.sha256(cookie.encode()).hexdigest()
    assert (state.environment_id, state.iss, state.kind, state.session_hint, state.department_hint) == \
        ("env1", ISS, "provider", CSN, None)
    assert "Secure" in result.cookies[0].header() and "HttpOnly" in result.cookies[0].header()


def test_begin_keeps_a_well_formed_existing_cookie_so_parallel_launches_work():
    world = World()
    first = world.begin()
    second = world.begin(cookie=cookie_of(first))
    assert cookie_of(second) == cookie_of(first)


def test_begin_posts_a_form_when_the_server_offers_authorize_post():
    world = World(authorize_post=True)
    result = world.begin()
    assert isinstance(result, Page)
    assert '<form method="post"' in result.html
    csp = result.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "form-action 'self' https://ehr.example.org" in csp
    (cookie,) = result.cookies
    assert cookie.header().endswith("HttpOnly; SameSite=None; Secure; Partitioned")


def test_clean_hint_keeps_plain_ids_only():
    assert clean_hint("123;;; ; ;;NONE;") == "123"
    assert clean_hint("%PERFDEPID;;; ; ;;NONE;%") is None
    assert clean_hint("<script>") is None


# ---- complete: attacks -------------------------------------------------------------------------------------
def test_unknown_state_is_state_invalid():
    world = World()
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": "nope"}, "cookie")
    assert err.value.code == "STATE_INVALID"


def test_missing_state_is_state_missing():
    with pytest.raises(LaunchError) as err:
        World().service.complete({"code": "c"}, "cookie")
    assert err.value.code == "STATE_MISSING"


def test_state_from_another_browser_is_refused_and_not_burnt():
    world = World()
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    for cookie in (None, "A" * 43):
        with pytest.raises(LaunchError) as err:
            world.service.complete({"code": "c", "state": state}, cookie)
        assert err.value.code == "STATE_BROWSER_MISMATCH"
    assert state in world.states.docs
    assert not any(c.path_url.endswith("/token") for c in world.fake.calls)


def test_expired_state_is_refused():
    world = World()
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    world.clock.set(NOW + timedelta(minutes=11))
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert err.value.code == "STATE_INVALID"


def test_a_replayed_callback_is_refused():
    world = World()
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    world.service.complete({"code": "c", "state": state}, cookie_of(result))
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert err.value.code == "STATE_INVALID"
    assert sum(c.path_url.endswith("/token") for c in world.fake.calls) == 1


@pytest.mark.parametrize("iss", [f"{BASE}/oauth2", ISS])
def test_an_iss_on_the_callback_naming_the_launchs_server_is_accepted(iss):
    world = World()
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    redirect = world.service.complete({"code": "c", "state": state, "iss": iss}, cookie_of(result))
    assert redirect.location == "https://teams.example.org/l/meetup-join/m1"


@pytest.mark.parametrize("iss", ["https://attacker.example.net/fhir", f"{BASE}/oauth2/", ""])
def test_an_iss_on_the_callback_naming_another_server_is_refused_before_the_token_call(iss):
    world = World()
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": state, "iss": iss}, cookie_of(result))
    assert err.value.code == "CALLBACK_ISS_MISMATCH"
    assert not any(c.path_url.endswith("/token") for c in world.fake.calls)
    assert all("attacker" not in c.url for c in world.fake.calls)


@pytest.mark.parametrize(("error", "code"), [("invalid_scope", "EPIC_SCOPE_NOT_GRANTED"),
                                            ("unauthorized_client", "EPIC_CLIENT_NOT_MAPPED"),
                                            ("access_denied", "EPIC_AUTHORIZE_ERROR")])
def test_an_authorize_error_gets_the_page_for_its_oauth_code(error, code):
    world = World()
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    with pytest.raises(LaunchError) as err:
        world.service.complete({"error": error, "state": state}, cookie_of(result))
    assert err.value.code == code
    if code == "EPIC_AUTHORIZE_ERROR":
        assert error in err.value.admin_hint


def test_a_patient_signing_in_through_the_provider_url_is_refused():
    world = World(id_user="Patient/p1")
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert err.value.code == "WRONG_LAUNCH_KIND"


# ---- complete: happy paths ---------------------------------------------------------------------------------
def test_provider_launch_creates_the_visit_and_meeting_records_the_launch_click_and_goes_to_teams():
    world = World()
    result = world.begin(sessionId="999999")  # a wrong hint: the context decides
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    redirect = world.service.complete({"code": "c", "state": state}, cookie_of(result))

    assert redirect.location == "https://teams.example.org/l/meetup-join/m1"
    appointment = world.appointments.get(f"env1|{CSN}")
    assert appointment is not None and appointment.status == "booked"
    assert appointment.start_utc == datetime(2026, 3, 3, 19, 30, tzinfo=UTC)
    assert appointment.meeting.external_id == meeting_external_id("env1", CSN)  # type: ignore[union-attr]
    assert world.appointments.get("env1|999999") is None
    (event,) = world.events.docs.values()
    assert (event.type, event.role, event.participant_id, event.appointment_id, event.writeback) == \
        ("clinician_launched", "provider", "E1001", CSN, "none")
    assert world.queue.sent == []  # a click is not presence: nothing goes to Epic
    token_call = next(c for c in world.fake.calls if c.path_url.endswith("/token"))
    assert token_call.form["code_verifier"]
    graph_call = next(c for c in world.fake.calls if "createOrGet" in c.url)
    assert graph_call.json()["subject"] == "Video visit"


def test_a_second_launch_reuses_the_stored_meeting():
    world = World()
    for _ in range(2):
        result = world.begin()
        state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
        world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert sum("createOrGet" in c.url for c in world.fake.calls) == 1
    assert len(world.events.docs) == 2  # one per launch state


def test_a_visit_known_from_hl7_keeps_its_record():
    world = World()
    world.appointments.create(Appointment("env1", CSN, "booked", NOW, NOW + timedelta(minutes=20), 20,
                                          "America/New_York", order_key="k"))
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert world.appointments.get(f"env1|{CSN}").order_key == "k"  # type: ignore[union-attr]


def test_a_cancelled_visit_is_refused():
    world = World()
    world.appointments.create(Appointment("env1", CSN, "cancelled", NOW, None, None, None))
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert err.value.code == "APPOINTMENT_CANCELLED"


def test_patient_launch_ends_on_the_join_page_of_the_same_meeting():
    world = World(id_user="Patient/p1")
    result = world.begin("patient")
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    redirect = world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert redirect.location.startswith(f"{PUBLIC}/api/join/")
    token = redirect.location.rsplit("/", 1)[1]
    link_id = world.join_links.verify(token, now=NOW)
    assert world.links.appointment_key(link_id, now=NOW) == f"env1|{CSN}"
    assert world.events.docs == {}  # the patient is "connected" when they press Join


def test_the_device_test_record_lands_on_the_join_pages_device_test():
    world = World(id_user="Patient/p1")
    result = world.begin("patient", mode="devicetest")
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    redirect = world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert redirect.location.startswith(f"{PUBLIC}/api/join/") and redirect.location.endswith("#device-test")


def test_an_unapproved_url_is_refused_even_when_another_url_of_the_environment_is_approved():
    import dataclasses

    world = World()
    world.env = dataclasses.replace(world.env, fhir_base_urls=(ISS, ISS + "x"))
    world.environments = fakes.Environments(world.env)
    world.service._environments = world.environments  # type: ignore[attr-defined]
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"iss": ISS + "x", "launch": "l"}, None)
    assert err.value.code == "ENVIRONMENT_NOT_APPROVED"
    assert world.fake.calls == []


@pytest.mark.parametrize("patient", ["p1", "Patient/p1", f"{ISS}/Patient/p1"])
def test_patient_launch_accepts_the_appointments_patient_in_any_reference_form(patient):
    world = World(id_user="Patient/p1")
    world.token_extra = {"patient": patient}
    result = world.begin("patient")
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    assert world.service.complete({"code": "c", "state": state}, cookie_of(result)).location.startswith(
        f"{PUBLIC}/api/join/")


@pytest.mark.parametrize(("patient", "code"), [("p2", "PATIENT_MISMATCH"), ("Patient/p2", "PATIENT_MISMATCH"),
                                               ("Practitioner/p1", "PATIENT_CONTEXT_MISSING"),
                                               (None, "PATIENT_CONTEXT_MISSING"), ("", "PATIENT_CONTEXT_MISSING")])
def test_patient_launch_for_another_patients_visit_gets_no_join_link(patient, code):
    world = World(id_user="Patient/p1")
    world.token_extra = {"patient": patient}
    result = world.begin("patient")
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert err.value.code == code
    assert world.links.docs == {} and world.appointments.docs == {}


def test_top_level_appointment_reference_is_normalised():
    world = World()
    world.token_extra = {"appointment": "Appointment/fa-1"}
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    assert world.service.complete({"code": "c", "state": state}, cookie_of(result)).location == \
        "https://teams.example.org/l/meetup-join/m1"
    assert any(c.url == f"{ISS}/Appointment/fa-1" for c in world.fake.calls)


def test_missing_fallback_organizer_is_organizer_missing():
    world = World(organizer=None)
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": state}, cookie_of(result))
    assert err.value.code == "ORGANIZER_MISSING"


def test_fake_adapter_is_used():
    assert isinstance(World().fake, FakeAdapter)


def test_protocol_times_use_real_time_even_when_the_demo_clock_is_moved():
    world = World(domain_clock=FixedClock(NOW + timedelta(days=1)))
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    assert world.states.docs[state].created_utc == NOW
    redirect = world.service.complete({"code": "c", "state": state}, cookie_of(result))  # id_token at NOW: accepted
    assert redirect.location == "https://teams.example.org/l/meetup-join/m1"


# ---- embedded in Epic: frames and the partitioned cookie -------------------------------------------------
def test_a_framed_callback_without_the_cookie_is_cookies_blocked_and_does_not_burn_the_state():
    from lib.visits.framing import FrameContext

    world = World()
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    with pytest.raises(LaunchError) as err:
        world.service.complete({"code": "c", "state": state}, None, frame=FrameContext("iframe", None))
    assert err.value.code == "COOKIES_BLOCKED"
    assert world.service.complete({"code": "c", "state": state}, cookie_of(result)).status == 302


def test_a_launch_framed_by_an_origin_the_environment_does_not_allow_stores_nothing():
    from lib.visits.framing import FrameContext

    world = World(env={"frame_origins": ("https://epic.contoso.org",)})
    with pytest.raises(LaunchError) as err:
        world.begin(frame=FrameContext("iframe", "https://evil.example.net/"))  # type: ignore[arg-type]
    assert err.value.code == "FRAME_NOT_ALLOWED" and world.states.docs == {}
    allowed = world.service.begin("provider", {"iss": ISS, "launch": "l"}, None,
                                  frame=FrameContext("iframe", "https://epic.contoso.org/"))
    (cookie,) = allowed.cookies
    assert cookie.partitioned and "Partitioned" in cookie.header()
