"""A provider launch, a patient MyChart launch and a patient SMS-link join, end to end over HTTP.

A browser is played by a ``requests.Session`` (cookie jar, no redirects followed automatically) against the
app served by the dev runner on ``PUBLIC_BASE_URL``, the Epic stand-in (SMART authorize/token with
``private_key_jwt`` checked against our real JWKS route, FHIR Appointment, ``SetExternalConnectionStatus``),
the Graph/Entra stand-in (MSAL certificate credential, ``createOrGet``), Cosmos-compatible server and Azurite.
The write-back queue is drained by calling the real queue trigger with the real Azurite message.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from local.testing import JwksServer
from tests.integration.portal_client import served_app
from tests.support.environments import make_environment
from tests.support.join_links import visit_with_join_link
from tests.support.writeback import drain_launch_followup, drain_writeback

pytestmark = pytest.mark.integration



# ---- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    """The app on the dev runner at ``PUBLIC_BASE_URL`` (HTTP only; queues are drained by the tests)."""
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_launch_tests") as public:
        yield public


@pytest.fixture(scope="module")
def standins(service_settings: dict[str, str]) -> dict[str, str]:
    """Stand-in base URLs and the CA bundle."""
    return {"epic": service_settings["EPIC_STANDIN_URL"], "iss": service_settings["EPIC_STANDIN_ISS"],
            "graph": service_settings["GRAPH_STANDIN_URL"], "acs": service_settings["ACS_STANDIN_URL"],
            "ca": service_settings["REQUESTS_CA_BUNDLE"]}


def _control(standins: dict[str, str], service: str, method: str, path: str, body: Any = None) -> Any:
    resp = requests.request(method, f"{standins[service]}/_standin/{path}", json=body, verify=standins["ca"],
                            timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json() if resp.content else None


@pytest.fixture(scope="module")
def visit_env(app: Any, runner: str, standins: dict[str, str]) -> Any:
    """One approved environment for the Epic stand-in's iss, our client registered there, an organizer in Graph.

    The iss is made unique to this environment: other environments listing it (left by earlier runs against
    long-running services) lose it, since a launch is routed by its iss.
    """
    environment_id = f"launch-{uuid.uuid4().hex[:8]}"
    client_id = f"vv-{uuid.uuid4().hex[:8]}"
    organizer = str(uuid.uuid4())
    for other in app.repos.environments.all():
        if standins["iss"] in other.fhir_base_urls and other.id != environment_id:
            app.repos.environments.put(dataclasses.replace(
                other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != standins["iss"])))
    _control(standins, "epic", "POST", "clients", {
        "client_id": client_id, "jwks_url": f"{runner}/api/.well-known/jwks.json",
        "redirect_uris": [f"{runner}/api/launch/callback"]})
    _control(standins, "graph", "POST", "users", {"id": organizer, "policy": True})
    return make_environment(app, environment_id, fhir_base_urls=(standins["iss"],), epic_client_id=client_id,
                            fallback_organizer_id=organizer, writeback_vendor_name="OpenVirtualVisitsTest",
                            provider_signin=False)


@pytest.fixture
def browser(standins: dict[str, str]) -> requests.Session:
    """A cookie-keeping client that trusts the local CA and never follows redirects by itself."""
    session = requests.Session()
    session.verify = standins["ca"]
    return session


def _csn() -> str:
    return str(secrets.randbelow(10**9) + 10**9)


def _epic_launch(standins: dict[str, str], env: Any, csn: str, context: str = "provider") -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    body = {"client_id": env.epic_client_id, "appointment_csn": csn, "context": context,
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": (start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")}
    if context == "provider":
        body["user_id"] = "E1001"
    return _control(standins, "epic", "POST", "launch", body)


def _submit_authorize(browser: requests.Session, page: requests.Response) -> requests.Response:
    """What the auto-submitting form does: POST its hidden fields to its action."""
    assert page.status_code == 200, page.text
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    fields = {html.unescape(k): html.unescape(v)
              for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
    return browser.post(action, data=fields, allow_redirects=False)


def _launch_until_callback(browser: requests.Session, runner: str, standins: dict[str, str], launch: dict,
                           kind: str = "provider", **hints: str) -> str:
    """Launch URL -> authorize (POST form) -> the callback URL Epic redirects to."""
    page = browser.get(f"{runner}/api/launch/{kind}",
                       params={"iss": standins["iss"], "launch": launch["launch"], **hints}, allow_redirects=False)
    assert "vv_launch" in browser.cookies
    authorized = _submit_authorize(browser, page)
    assert authorized.status_code == 302, authorized.text
    callback = authorized.headers["Location"]
    assert callback.startswith(f"{runner}/api/launch/callback?")
    assert "code=" in callback and "error=" not in callback, callback
    return callback


def _error_code(resp: requests.Response) -> str:
    match = re.search(r'<code id="error-code">([A-Z_]+)</code>', resp.text)
    assert match, resp.text
    return match.group(1)


def _drain_writeback(app: Any, appointment_key: str) -> list[dict[str, Any]]:
    return drain_writeback(app, appointment_key)


def _status_calls(standins: dict[str, str], csn: str) -> list[dict[str, Any]]:
    return [c for c in _control(standins, "epic", "GET", "connection-status") if c["ConferenceID"] == csn]


# ---- provider launch ---------------------------------------------------------------------------------------
def test_provider_launch_goes_to_the_teams_meeting_and_records_the_click_not_presence(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    from lib.teams.graph import meeting_external_id

    csn = _csn()
    launch = _epic_launch(standins, visit_env, csn)
    callback = _launch_until_callback(browser, runner, standins, launch, sessionId="999")  # wrong hint
    done = browser.get(callback, allow_redirects=False)

    assert done.status_code == 302, done.text
    join_url = done.headers["Location"]
    assert join_url.startswith(f"{standins['graph']}/l/meetup-join/")
    assert browser.get(join_url).status_code == 200

    key = f"{visit_env.id}|{csn}"
    appointment = app.repos.appointments.get(key)
    assert appointment.status == "booked" and appointment.meeting.join_url == join_url
    assert app.repos.appointments.get(f"{visit_env.id}|999") is None
    (meeting,) = [m for m in _control(standins, "graph", "GET", "meetings")
                  if m["externalId"] == meeting_external_id(visit_env.id, csn)]
    assert meeting["organizerId"] == visit_env.fallback_organizer_id
    assert meeting["lobbyBypassSettings"]["scope"] == "organization"
    assert meeting["subject"] == "Video visit"

    # The click record and the meeting's subscription came after the redirect, through one queue message.
    assert app.repos.visit_events.for_appointment(key) == []
    assert drain_launch_followup(app, key) == 1
    (event,) = app.repos.visit_events.for_appointment(key)
    assert (event.type, event.role, event.participant_id, event.writeback) == ("clinician_launched", "provider",
                                                                               "E1001", "none")
    assert _drain_writeback(app, key) == [] and _status_calls(standins, csn) == []  # presence comes from the roster

    # The same callback again: the state was used.
    replay = browser.get(callback, allow_redirects=False)
    assert replay.status_code == 400 and _error_code(replay) == "STATE_INVALID"


def test_a_second_provider_launch_reuses_the_meeting(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    csn = _csn()
    urls = []
    for _ in range(2):
        callback = _launch_until_callback(browser, runner, standins, _epic_launch(standins, visit_env, csn))
        urls.append(browser.get(callback, allow_redirects=False).headers["Location"])
    assert urls[0] == urls[1]


def test_a_callback_in_another_browser_is_refused(
        runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    callback = _launch_until_callback(browser, runner, standins, _epic_launch(standins, visit_env, _csn()))
    stranger = requests.Session()
    resp = stranger.get(callback, allow_redirects=False)
    assert resp.status_code == 400 and _error_code(resp) == "STATE_BROWSER_MISMATCH"
    # The real browser can still finish: the stranger did not burn the state.
    assert browser.get(callback, allow_redirects=False).status_code == 302


class _Recorder(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_foreign_iss_is_refused_without_contacting_it(runner: str, visit_env: Any,
                                                         browser: requests.Session) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        evil = f"http://127.0.0.1:{server.server_address[1]}/api/FHIR/R4"
        resp = browser.get(f"{runner}/api/launch/provider", params={"iss": evil, "launch": "x"},
                           allow_redirects=False)
    finally:
        server.shutdown()
        server.server_close()
    assert resp.status_code == 403 and _error_code(resp) == "ISS_NOT_ALLOWED"
    assert _Recorder.hits == 0
    assert "vv_launch" not in browser.cookies


def test_jwks_route_serves_our_public_key(runner: str) -> None:
    resp = requests.get(f"{runner}/api/.well-known/jwks.json", timeout=10)
    assert resp.status_code == 200 and "max-age" in resp.headers["Cache-Control"]
    (key,) = resp.json()["keys"]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS384", "sig") and "d" not in key


# ---- patient -----------------------------------------------------------------------------------------------
def test_patient_sms_link_join_page_call_token_and_device_test_write_back(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    csn = _csn()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    appointment, token = visit_with_join_link(app, visit_env.id, csn, start)

    page = browser.get(f"{runner}/api/join/{token}")
    assert page.status_code == 200, page.text
    assert visit_env.display_name in page.text and csn not in page.text
    assert re.search(r'data-phase="open"', page.text)
    meeting = app.repos.appointments.get(appointment.key).meeting

    # the call credential: a new ACS identity through the stand-in (HMAC-signed by the real SDK)
    granted = browser.post(f"{runner}/api/join/{token}/call", data="{}", headers={"Content-Type": "application/json"})
    assert granted.status_code == 200, granted.text
    grant = granted.json()
    assert grant["meetingLink"] == meeting.join_url and grant["displayName"] == "Patient"
    assert granted.headers["Cache-Control"] == "no-store" and grant["token"].count(".") == 2
    identities = requests.get(f"{standins['acs']}/_standin/identities", verify=standins["ca"], timeout=5).json()
    assert any(i["scopes"] == ["voip"] for i in identities)

    events_url = f"{runner}/api/join/{token}/events"
    steps = {"speaker": "passed", "microphone": "passed", "camera": "passed", "connection": "passed",
             "test_call": "passed"}
    for body in ({"type": "page_opened", "attempt": "page-attempt-1"},
                 {"type": "device_test", "attempt": "page-attempt-1", "steps": steps},
                 {"type": "device_test", "attempt": "page-attempt-1", "steps": steps}):  # a resend stores one
        posted = browser.post(events_url, data=json.dumps(body), headers={"Content-Type": "application/json"})
        assert posted.status_code == 202, posted.text
    events = {e.type: e for e in app.repos.visit_events.for_appointment(appointment.key)}
    assert set(events) == {"page_opened", "call_identity_issued", "device_test_passed"}
    assert (events["page_opened"].writeback, events["call_identity_issued"].writeback) == ("none", "none")
    _drain_writeback(app, appointment.key)
    (call,) = _status_calls(standins, csn)
    assert (call["ExternalID"], call["ConnectionStatus"]) == ("patient", "3")
    refused = browser.post(events_url, data='{"type": "connected"}', headers={"Content-Type": "application/json"})
    assert refused.status_code == 400  # presence comes from the meeting, not from the page


def test_a_tampered_join_link_gets_the_link_state_page(runner: str, browser: requests.Session, app: Any) -> None:
    token = app.join_links.token(secrets.token_urlsafe(16), datetime.now(UTC) + timedelta(hours=1))
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    resp = browser.get(f"{runner}/api/join/{tampered}")
    assert resp.status_code == 404 and 'data-phase="invalid"' in resp.text
    assert "This link does not work" in resp.text
    for route, body in (("events", '{"type": "page_opened"}'), ("call", "{}")):
        posted = browser.post(f"{runner}/api/join/{tampered}/{route}", data=body,
                              headers={"Content-Type": "application/json"})
        assert posted.status_code == 404 and posted.json()["code"] == "LINK_INVALID"


def test_patient_mychart_launch_ends_on_the_join_page_of_the_same_meeting(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session,
        clock: Any) -> None:
    csn = _csn()
    provider = requests.Session()
    provider.verify = standins["ca"]
    callback = _launch_until_callback(provider, runner, standins, _epic_launch(standins, visit_env, csn))
    provider_url = provider.get(callback, allow_redirects=False).headers["Location"]

    callback = _launch_until_callback(browser, runner, standins, _epic_launch(standins, visit_env, csn, "patient"),
                                      kind="patient")
    done = browser.get(callback, allow_redirects=False)
    assert done.status_code == 302 and done.headers["Location"].startswith(f"{runner}/api/join/")
    page = browser.get(done.headers["Location"])
    assert page.status_code == 200 and 'data-phase="too_early"' in page.text  # the visit starts in an hour
    call_url = f"{done.headers['Location']}/call"
    early = browser.post(call_url, data="{}", headers={"Content-Type": "application/json"})
    assert early.status_code == 409 and early.json()["code"] == "VISIT_TOO_EARLY"
    clock.set(datetime.now(UTC) + timedelta(minutes=45))  # the room is open
    granted = browser.post(call_url, data="{}", headers={"Content-Type": "application/json"})
    assert granted.status_code == 200, granted.text
    assert granted.json()["meetingLink"] == provider_url


# ---- the clinician's one-time Microsoft 365 sign-in, through the Entra stand-in -----------------------------
@pytest.fixture(scope="module")
def signin_env(app: Any, runner: str, standins: dict[str, str], service_settings: dict[str, str],
               visit_env: Any) -> Any:
    """``visit_env`` with provider sign-in on, our Entra app allowing ``/api/launch/signin``, a clinician user."""
    pem = Path(service_settings["GRAPH_CLIENT_CERT_FILE"]).read_text()
    _control(standins, "graph", "POST", "apps", {
        "client_id": service_settings["GRAPH_CLIENT_ID"], "tenant": service_settings["GRAPH_TENANT_ID"],
        "certificate_pem": pem[pem.index("-----BEGIN CERTIFICATE-----"):],
        "redirect_uris": [f"{runner}/api/launch/signin"]})
    environment = dataclasses.replace(visit_env, provider_signin=True)
    _own_iss(app, environment, standins["iss"])
    yield environment
    _own_iss(app, visit_env, standins["iss"])


def _own_iss(app: Any, environment: Any, iss: str) -> None:
    """Store ``environment``, taking ``iss`` from any other environment (long-running services keep old ones)."""
    for other in app.repos.environments.all():
        if iss in other.fhir_base_urls and other.id != environment.id:
            app.repos.environments.put(dataclasses.replace(
                other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != iss)))
    app.repos.environments.put(environment)


def test_a_clinicians_first_launch_signs_in_with_microsoft_365_once(
        app: Any, runner: str, standins: dict[str, str], signin_env: Any, browser: requests.Session) -> None:
    clinician = str(uuid.uuid4())
    user_id = f"E{secrets.randbelow(10**6)}"
    _control(standins, "graph", "POST", "users", {"id": clinician, "policy": True})
    _control(standins, "graph", "POST", "signin", {"id": clinician})
    csn = _csn()
    launch = _control(standins, "epic", "POST", "launch", {
        "client_id": signin_env.epic_client_id, "appointment_csn": csn, "context": "provider", "user_id": user_id})
    callback = _launch_until_callback(browser, runner, standins, launch)

    to_entra = browser.get(callback, allow_redirects=False)
    assert to_entra.status_code == 302 and to_entra.headers["Location"].startswith(f"{standins['graph']}/")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(to_entra.headers["Location"]).query))
    assert params["code_challenge_method"] == "S256" and params["redirect_uri"] == f"{runner}/api/launch/signin"
    back = browser.get(to_entra.headers["Location"], allow_redirects=False)
    assert back.status_code == 302 and back.headers["Location"].startswith(f"{runner}/api/launch/signin?")
    done = browser.get(back.headers["Location"], allow_redirects=False)
    assert done.status_code == 302, done.text
    assert done.headers["Location"].startswith(f"{standins['graph']}/l/meetup-join/")

    assert app.users.get(signin_env.id, user_id).entra_object_id == clinician
    (meeting,) = [m for m in _control(standins, "graph", "GET", "meetings")
                  if m["joinWebUrl"] == done.headers["Location"]]
    assert meeting["organizerId"] == clinician
    # The sign-in callback is single use.
    replay = browser.get(back.headers["Location"], allow_redirects=False)
    assert replay.status_code == 400 and _error_code(replay) == "STATE_INVALID"

    # The next launch goes straight to the meeting.
    launch = _control(standins, "epic", "POST", "launch", {
        "client_id": signin_env.epic_client_id, "appointment_csn": csn, "context": "provider", "user_id": user_id})
    again = browser.get(_launch_until_callback(browser, runner, standins, launch), allow_redirects=False)
    assert again.headers["Location"] == done.headers["Location"]


# ---- keys: JWKS per kind, rotation, ES384, against the strict Epic stand-in ---------------------------------
def test_jwks_per_environment_kind(runner: str) -> None:
    test_doc = requests.get(f"{runner}/api/.well-known/jwks/test.json", timeout=10)
    assert test_doc.json() == requests.get(f"{runner}/api/.well-known/jwks.json", timeout=10).json()
    production = requests.get(f"{runner}/api/.well-known/jwks/production.json", timeout=10)
    assert production.status_code == 503  # no production key in the test profile: refused, never the test key
    assert production.json()["code"] == "SMART_KEYS_MISSING"


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_a_key_published_but_not_active_is_still_accepted_during_a_rotation(standins: dict[str, str], alg: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from lib.smart.keys import SmartKeys
    from lib.smart.token import request_backend_token
    from lib.smart.transport import HttpClient

    def pem(kind: str) -> bytes:
        key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS384"
               else ec.generate_private_key(ec.SECP384R1()))
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    new, old = pem(alg), pem(alg)
    published = SmartKeys.from_pem(new + b"\n" + old).jwks()  # the switch: new first, old still published

    server = JwksServer(published["keys"]).__enter__()
    try:
        client_id = f"rot-{uuid.uuid4().hex[:8]}"
        _control(standins, "epic", "POST", "clients", {
            "client_id": client_id, "jwks_url": server.url,
            "redirect_uris": ["https://app.invalid/cb"]})
        http = HttpClient(verify=standins["ca"])
        for signing in (new, old):  # the active key, and the one being retired
            token = request_backend_token(http, token_endpoint=f"{standins['epic']}/oauth2/token", client_id=client_id,
                                          scope="system/Appointment.read", keys=SmartKeys.from_pem(signing),
                                          now=datetime.now(UTC), alg=alg)
            assert token.access_token
    finally:
        server.__exit__(None, None, None)


def test_a_dstu2_iss_gets_its_own_error_page(runner: str, standins: dict[str, str], visit_env: Any,
                                             browser: requests.Session) -> None:
    dstu2 = standins["iss"].replace("/R4", "/DSTU2")
    resp = browser.get(f"{runner}/api/launch/provider", params={"iss": dstu2, "launch": "x"}, allow_redirects=False)
    assert resp.status_code == 403 and _error_code(resp) == "FHIR_VERSION_MISMATCH"
    assert re.search(r'<code id="correlation-id">[0-9a-f]{32}</code>', resp.text)
    assert "Traceback" not in resp.text


def test_a_test_iss_through_another_environments_launch_url_is_tenant_config_not_found(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    production = make_environment(app, f"prod-{uuid.uuid4().hex[:8]}", kind="production",
                                  fhir_base_urls=(f"https://127.0.0.1:1/{uuid.uuid4().hex}/api/FHIR/R4",))
    resp = browser.get(f"{runner}/api/launch/provider", allow_redirects=False,
                       params={"iss": standins["iss"], "launch": "x", "env": production.id})
    assert resp.status_code == 403 and _error_code(resp) == "TENANT_CONFIG_NOT_FOUND"


# ---- Epic's refusals and the statuses of the callback's error pages ----------------------------------------
def _callback_after_refusal(browser: requests.Session, runner: str, standins: dict[str, str], iss: str,
                            launch: str, kind: str = "provider") -> requests.Response:
    """Launch URL -> authorize form -> Epic's redirect back with ``error`` -> our callback's answer."""
    page = browser.get(f"{runner}/api/launch/{kind}", params={"iss": iss, "launch": launch}, allow_redirects=False)
    refused = _submit_authorize(browser, page)
    assert refused.status_code == 302 and "error=" in refused.headers["Location"], refused.text
    return browser.get(refused.headers["Location"], allow_redirects=False)


def test_a_reused_launch_says_start_again_from_epic_in_epics_words(
        runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    launch = _epic_launch(standins, visit_env, _csn())
    first = browser.get(_launch_until_callback(browser, runner, standins, launch), allow_redirects=False)
    assert first.status_code == 302  # into the meeting

    again = _callback_after_refusal(browser, runner, standins, standins["iss"], launch["launch"])  # a reload
    assert again.status_code == 400 and _error_code(again) == "LAUNCH_EXPIRED"
    shown = html.unescape(again.text)
    assert "Please start the visit again from Epic." in shown
    assert "Epic answered 'invalid_request': \"launch has already been used\"." in shown
    assert "Check the client ID, the redirect URI" not in shown  # no registration problem to chase


def test_an_aud_epic_refuses_gets_the_fhir_url_page_in_epics_words(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    # Served by the Epic stand-in (discovery answers) but not its FHIR base URL: Epic refuses it as aud.
    iss = f"{standins['epic']}/org{uuid.uuid4().hex[:8]}/api/FHIR/R4"
    make_environment(app, f"aud-{uuid.uuid4().hex[:8]}", fhir_base_urls=(iss,), epic_client_id=visit_env.epic_client_id,
                     fallback_organizer_id=visit_env.fallback_organizer_id, provider_signin=False)
    answer = _callback_after_refusal(browser, runner, standins, iss, "x")
    assert answer.status_code == 403 and _error_code(answer) == "EPIC_AUDIENCE_REFUSED"
    shown = html.unescape(answer.text)
    assert "\"aud must equal the FHIR base URL (iss) exactly\"" in shown
    assert f"{runner}/api/portal/environments" in shown


def test_error_pages_reached_through_the_callback_carry_their_status(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    from lib.models import Appointment

    cancelled = _csn()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    app.repos.appointments.create(Appointment(visit_env.id, cancelled, "cancelled", start,
                                              start + timedelta(minutes=30), 30, "America/New_York"))
    callback = _launch_until_callback(browser, runner, standins, _epic_launch(standins, visit_env, cancelled))
    gone = browser.get(callback, allow_redirects=False)
    assert gone.status_code == 410 and _error_code(gone) == "APPOINTMENT_CANCELLED"

    provider_context = _epic_launch(standins, visit_env, _csn())
    callback = _launch_until_callback(browser, runner, standins, provider_context, kind="patient")
    wrong = browser.get(callback, allow_redirects=False)
    assert wrong.status_code == 400 and _error_code(wrong) == "WRONG_LAUNCH_KIND"
