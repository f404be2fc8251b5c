"""Launch and authorization findings of issue 16, each at the HTTP level through the dev runner.

A ``requests.Session`` plays the browser (cookies kept, redirects not followed) against the app on the dev
runner, the strict Epic stand-in (scripted token-response shapes, RFC 9207 ``iss``, token-endpoint faults)
and the Graph stand-in (lobby rules). Each test failed on the code before these changes.
"""

from __future__ import annotations

import http.client
import re
import secrets
import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.integration import test_launch_flow as flow
from tests.support.join_links import visit_with_join_link

# The launch flow module's fixtures (module scope here too: one dev runner for this module).
runner, standins, visit_env, browser = flow.runner, flow.standins, flow.visit_env, flow.browser
_control, _csn, _epic_launch, _error_code = flow._control, flow._csn, flow._epic_launch, flow._error_code
_launch_until_callback = flow._launch_until_callback

pytestmark = pytest.mark.integration



#: Each rate-limit test guesses from its own loopback address (never one another test used: their windows
#: would add up).
_ADDRESSES = iter(f"127.0.0.{n}" for n in range(20, 250))


def _fresh_address() -> str:
    return next(_ADDRESSES)

def _launch_states(app: Any, environment_id: str) -> int:
    container = app.store.container("launch_states")
    rows = container.query_items("SELECT c.id FROM c WHERE c.environmentId = @e",
                                 parameters=[{"name": "@e", "value": environment_id}],
                                 enable_cross_partition_query=True)
    return len(list(rows))


def _scripted_launch(standins: dict[str, str], env: Any, csn: str, context: str = "provider",
                     **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"client_id": env.epic_client_id, "appointment_csn": csn, "context": context, **extra}
    if context == "provider":
        body.setdefault("user_id", "E1001")
    return _control(standins, "epic", "POST", "launch", body)


# ---- RFC 9207: the callback's iss ----------------------------------------------------------------------------
def test_a_callback_whose_iss_names_another_server_is_refused(
        runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    callback = _launch_until_callback(browser, runner, standins, _epic_launch(standins, visit_env, _csn()))
    evil = browser.get(callback + "&iss=" + urllib.parse.quote("https://127.0.0.1:1/evil/oauth2"),
                       allow_redirects=False)
    assert evil.status_code == 400 and _error_code(evil) == "CALLBACK_ISS_MISMATCH"
    assert "Location" not in evil.headers
    # The state went with the refused answer: the same callback cannot be completed afterwards.
    again = browser.get(callback, allow_redirects=False)
    assert again.status_code == 400 and _error_code(again) == "STATE_INVALID"


def test_a_callback_whose_iss_is_the_servers_issuer_completes(
        runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    issuer = standins["epic"] + "/oauth2"  # the stand-in's smart-configuration "issuer"
    launch = _scripted_launch(standins, visit_env, _csn(), callback_iss=issuer)
    callback = _launch_until_callback(browser, runner, standins, launch)
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["iss"] == issuer
    done = browser.get(callback, allow_redirects=False)
    assert done.status_code == 302 and done.headers["Location"].startswith(f"{standins['graph']}/l/meetup-join/")


# ---- patient launch: the token's patient must be the Appointment's ------------------------------------------
@pytest.mark.parametrize(("overrides", "code"), [
    ({"patient": "eSomeoneElse0000000000000"}, "PATIENT_MISMATCH"),
    ({"patient": "Patient/eSomeoneElse0000000000000"}, "PATIENT_MISMATCH"),
    ({"patient": None}, "PATIENT_CONTEXT_MISSING"),
])
def test_a_patient_launch_for_another_patients_visit_gets_no_join_link(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session,
        overrides: dict[str, Any], code: str) -> None:
    csn = _csn()
    launch = _scripted_launch(standins, visit_env, csn, "patient", token_overrides=overrides)
    callback = _launch_until_callback(browser, runner, standins, launch, kind="patient")
    done = browser.get(callback, allow_redirects=False)
    assert done.status_code == 403 and _error_code(done) == code
    assert "/api/join/" not in done.text and "Location" not in done.headers
    assert app.repos.appointments.get(f"{visit_env.id}|{csn}") is None  # nothing made for that visit


def test_a_patient_launch_naming_the_patient_as_a_reference_still_joins(
        runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    csn = _csn()
    patient = f"p{uuid.uuid4().hex[:12]}"
    launch = _scripted_launch(standins, visit_env, csn, "patient", patient_id=patient,
                              token_overrides={"patient": f"Patient/{patient}"})
    callback = _launch_until_callback(browser, runner, standins, launch, kind="patient")
    done = browser.get(callback, allow_redirects=False)
    assert done.status_code == 302 and done.headers["Location"].startswith(f"{runner}/api/join/")


# ---- Appointment/456 at the top level of the token response -------------------------------------------------
def test_a_top_level_appointment_reference_is_read_as_its_id(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    csn = _csn()
    fhir_id = f"a{uuid.uuid4().hex[:12]}"
    launch = _scripted_launch(standins, visit_env, csn, fhir_appointment_id=fhir_id,
                              token_overrides={"appointment": f"Appointment/{fhir_id}", "fhirContext": None})
    done = browser.get(_launch_until_callback(browser, runner, standins, launch), allow_redirects=False)
    assert done.status_code == 302, done.text
    assert app.repos.appointments.get(f"{visit_env.id}|{csn}").meeting.join_url == done.headers["Location"]


# ---- launch parameters refused before any state is stored ---------------------------------------------------
@pytest.mark.parametrize(("launch", "code"), [
    (None, "LAUNCH_MISSING"), ("", "LAUNCH_MISSING"), ("   ", "LAUNCH_INVALID"), ("x" * 4097, "LAUNCH_INVALID"),
    ("x" * 60_000, "LAUNCH_INVALID"), ("abc\tdef", "LAUNCH_INVALID"),
])
def test_absent_blank_or_absurd_launch_values_store_nothing(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, launch: str | None, code: str) -> None:
    client = requests.Session()
    before = _launch_states(app, visit_env.id)
    params = {"iss": standins["iss"]} | ({} if launch is None else {"launch": launch})
    resp = client.get(f"{runner}/api/launch/provider", params=params, allow_redirects=False)
    assert resp.status_code == 400 and _error_code(resp) == code
    assert "Set-Cookie" not in resp.headers and not client.cookies
    assert _launch_states(app, visit_env.id) == before


# ---- token endpoint 429 / 5xx: when to try again ------------------------------------------------------------
@pytest.mark.parametrize(("fault", "code", "wait", "advice"), [
    ({"status": 429, "retry_after": 120}, "EPIC_THROTTLED", "120", "Try again in about 2 minutes."),
    ({"status": 503, "retry_after": 45}, "EPIC_UNAVAILABLE", "45", "Try again in 45 seconds."),
    ({"status": 500}, "EPIC_UNAVAILABLE", "30", "Try again in 30 seconds."),
])
def test_a_busy_token_endpoint_gets_a_page_saying_when_to_try_again(
        runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session,
        fault: dict[str, Any], code: str, wait: str, advice: str) -> None:
    callback = _launch_until_callback(browser, runner, standins, _epic_launch(standins, visit_env, _csn()))
    _control(standins, "epic", "POST", "faults", {"path_prefix": "/oauth2/token", "responses": [fault]})
    try:
        page = browser.get(callback, allow_redirects=False)
    finally:
        _control(standins, "epic", "DELETE", "faults")
    assert page.status_code == 503 and _error_code(page) == code
    assert page.headers["Retry-After"] == wait
    assert f'<p id="retry-after">{advice}</p>' in page.text


# ---- lobby: the organization's people go in, anonymous guests wait ------------------------------------------
def test_clinicians_of_the_organization_bypass_the_lobby_and_guests_wait(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any, browser: requests.Session) -> None:
    csn = _csn()
    done = browser.get(_launch_until_callback(browser, runner, standins, _epic_launch(standins, visit_env, csn)),
                       allow_redirects=False)
    assert done.status_code == 302
    (meeting,) = [m for m in _control(standins, "graph", "GET", "meetings") if m["joinWebUrl"] ==
                  done.headers["Location"]]
    assert meeting["lobbyBypassSettings"] == {"scope": "organization", "isDialInBypassEnabled": False}

    second_clinician, interpreter = str(uuid.uuid4()), str(uuid.uuid4())
    for user in (second_clinician, interpreter):
        _control(standins, "graph", "POST", "users", {"id": user, "policy": True})

    def join(body: dict[str, Any]) -> str:
        return _control(standins, "graph", "POST", f"meetings/{urllib.parse.quote(meeting['id'], safe='')}/join",
                        body)["state"]

    assert join({"user_id": meeting["organizerId"]}) == "Connected"
    assert join({"user_id": second_clinician}) == "Connected"
    assert join({"user_id": interpreter, "guest": True}) == "Connected"  # a B2B guest of the tenant
    assert join({}) == "InLobby"  # the patient: an anonymous guest
    assert join({"user_id": str(uuid.uuid4()), "tenant": str(uuid.uuid4())}) == "InLobby"  # another organization
    assert join({"dial_in": True}) == "InLobby"
    # The patient's browser opening the Teams link is an anonymous join too.
    assert requests.get(done.headers["Location"], verify=standins["ca"], timeout=10).status_code == 200
    anonymous = [j for j in _control(standins, "graph", "GET", "joins")
                 if j["meeting_id"] == meeting["id"] and j["anonymous"]]
    assert anonymous and {j["state"] for j in anonymous} == {"InLobby"}



# ---- rate limits: anonymous launch attempts and guessed secrets, per client address -------------------------
def _get_from(address: str, url: str) -> tuple[int, dict[str, str], str]:
    """GET ``url`` from the local source ``address`` (127.0.0.0/8 is all loopback on Linux), so each test has
    a client address of its own and the limits of other tests' 127.0.0.1 are untouched."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10, source_address=(address, 0))
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def _code_in(body: str) -> str | None:
    match = re.search(r'<code id="error-code">([A-Z_]+)</code>', body)
    return match.group(1) if match else None


def test_300_anonymous_launch_attempts_from_one_address_are_cut_off_at_the_limit(
        app: Any, runner: str, standins: dict[str, str]) -> None:
    limit = int(app.settings.launch_rate_limit.split("/")[0])
    address = _fresh_address()
    started = time.monotonic()
    answers = [_get_from(address, f"{runner}/api/launch/provider?iss=https%3A%2F%2Fguess.invalid%2F{i}&launch=x")
               for i in range(300)]
    elapsed = time.monotonic() - started
    statuses = [status for status, _, _ in answers]
    assert statuses[:limit] == [403] * limit  # ISS_NOT_ALLOWED, nothing stored
    assert statuses[limit:] == [429] * (300 - limit), f"{elapsed:.2f} s"
    _, headers, body = answers[-1]
    assert _code_in(body) == "RATE_LIMITED" and 1 <= int(headers["retry-after"]) <= 60
    assert "try again in" in body.lower()
    # Another address is not affected.
    assert _get_from("127.0.0.1", f"{runner}/api/launch/provider?iss=https%3A%2F%2Fguess.invalid&launch=x")[0] == 403


def test_300_join_link_guesses_from_one_address_are_cut_off_but_a_real_link_from_it_still_works(
        app: Any, runner: str, standins: dict[str, str], visit_env: Any) -> None:
    limit = int(app.settings.guess_rate_limit.split("/")[0])
    address = _fresh_address()
    answers = [_get_from(address, f"{runner}/api/join/{secrets.token_urlsafe(36)}") for _ in range(300)]
    statuses = [status for status, _, _ in answers]
    assert statuses[:limit] == [404] * limit  # LINK_INVALID
    assert statuses[limit:] == [429] * (300 - limit)
    _, headers, body = answers[-1]  # the patient's page, in the patient's language, not the clinician's
    assert 'data-phase="rate_limited"' in body and "Too many tries" in body and _code_in(body) is None
    assert int(headers["retry-after"]) >= 1
    status, _, body = _get_from(address, f"{runner}/api/join/{secrets.token_urlsafe(36)}?lang=es")
    assert status == 429 and "Demasiados intentos" in body and 'lang="es"' in body
    # Guessed callback states and status passes from the same address are refused as well, before any store read.
    status, _, body = _get_from(address, f"{runner}/api/launch/callback?code=c&state={secrets.token_urlsafe(32)}")
    assert status == 429 and _code_in(body) == "RATE_LIMITED"
    status, headers, body = _get_from(address, f"{runner}/api/visits/{secrets.token_urlsafe(40)}.x/status.json")
    assert status == 429 and '"code": "RATE_LIMITED"' in body and int(headers["retry-after"]) >= 1
    # A real join link is served, from another address and from the guessing one alike (patients behind one
    # carrier NAT or clinic Wi-Fi): its signature is checked first, and a link we issued is never refused.
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    _, token = visit_with_join_link(app, visit_env.id, _csn(), start)
    assert _get_from("127.0.0.1", f"{runner}/api/join/{token}")[0] == 200
    assert _get_from(address, f"{runner}/api/join/{token}")[0] == 200
    expired = app.join_links.token(secrets.token_urlsafe(16), datetime.now(UTC) - timedelta(days=1))
    assert _get_from(address, f"{runner}/api/join/{expired}")[0] == 410  # ours, though expired: not a guess


def test_status_pass_guesses_are_cut_off_at_the_guess_limit_and_a_real_pass_still_works(
        app: Any, runner: str, visit_env: Any) -> None:
    limit = int(app.settings.guess_rate_limit.split("/")[0])
    address = _fresh_address()
    forged = app.status_passes.issue(f"{visit_env.id}|{_csn()}", "E1001", datetime.now(UTC) + timedelta(hours=1))
    forged = forged[:-4] + ("AAAA" if not forged.endswith("AAAA") else "BBBB")
    statuses = [_get_from(address, f"{runner}/api/visits/{forged}/status.json")[0] for _ in range(limit + 5)]
    assert statuses == [404] * limit + [429] * 5
    status, _, body = _get_from(address, f"{runner}/api/visits/{forged}/status")
    assert status == 429 and _code_in(body) == "RATE_LIMITED"
    real = app.status_passes.issue(f"{visit_env.id}|{_csn()}", "E1001", datetime.now(UTC) + timedelta(hours=1))
    assert _get_from(address, f"{runner}/api/visits/{real}/status.json")[0] == 200


def test_a_join_link_cut_after_join_slash_gets_the_patient_page(runner: str) -> None:
    for path in ("/api/join/", "/api/join"):
        status, headers, body = _get_from(_fresh_address(), f"{runner}{path}")
        assert status == 404 and headers["content-type"].startswith("text/html"), path
        assert 'data-phase="invalid"' in body and "This link does not work" in body


def test_guessed_callback_states_are_cut_off_at_the_guess_limit(app: Any, runner: str) -> None:
    limit = int(app.settings.guess_rate_limit.split("/")[0])
    address = _fresh_address()
    statuses = [_get_from(address, f"{runner}/api/launch/callback?code=c&state={secrets.token_urlsafe(32)}")[0]
                for _ in range(limit + 5)]
    assert statuses == [400] * limit + [429] * 5  # STATE_INVALID, then refused
