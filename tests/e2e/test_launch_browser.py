"""Every launch path in a real browser (Debian chromium through Playwright), top-level and inside a
cross-site frame of an Epic origin the environment allows.

The app runs on the dev runner (``http://127.0.0.1:{port}``); the Epic stand-in's embedding page
(``/_standin/embed?src=``) plays Hyperspace/MyChart showing the app in an iframe. It is opened as
``https://localhost:{epic}``, a different site from the app, which is the origin the environment allows; as
``https://127.0.0.1:{epic}`` it is an origin the environment does not allow. The browser blocks third-party
cookies (chromium's default here: an unpartitioned ``SameSite=None`` cookie is not sent in a cross-site
frame), so a framed launch works only with the partitioned launch cookie. The stand-ins' TLS comes from the
local CA, which the browser context is told to accept (``ignore_https_errors``).
"""

from __future__ import annotations

import dataclasses
import secrets
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from lib.config.approvals import seeded_approvals
from tests.e2e.browser import DESKTOP, axe_violations, save_screenshot
from tests.support.environments import make_environment

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TIMEOUT_MS = 15_000


# ---- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def standins(service_settings: dict[str, str]) -> dict[str, str]:
    epic_port = urllib.parse.urlsplit(service_settings["EPIC_STANDIN_URL"]).port
    return {"epic": service_settings["EPIC_STANDIN_URL"], "iss": service_settings["EPIC_STANDIN_ISS"],
            "graph": service_settings["GRAPH_STANDIN_URL"], "ca": service_settings["REQUESTS_CA_BUNDLE"],
            "epic_allowed": f"https://localhost:{epic_port}", "epic_refused": f"https://127.0.0.1:{epic_port}"}


def _control(standins: dict[str, str], service: str, method: str, path: str, body: Any = None) -> Any:
    resp = requests.request(method, f"{standins[service]}/_standin/{path}", json=body, verify=standins["ca"],
                            timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json() if resp.content else None


def _own_iss(app: Any, environment: Any, iss: str) -> None:
    """Store ``environment`` as the one that owns ``iss`` (a launch is routed by its iss), its URLs approved by the
    Epic analyst (docs/portal.md "Approval")."""
    for other in app.repos.environments.all():
        if iss in other.fhir_base_urls and other.id != environment.id:
            app.repos.environments.put(dataclasses.replace(
                other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != iss)))
    app.repos.environments.put(seeded_approvals(environment, at=datetime.now(UTC)))


@pytest.fixture(scope="module")
def env(app: Any, live_app: str, standins: dict[str, str], service_settings: dict[str, str]) -> Iterator[Any]:
    """An approved environment for the Epic stand-in's iss that allows frames of ``https://localhost:{epic}``;
    our SMART client registered in Epic, our Entra app allowing the sign-in redirect, an organizer in Graph."""
    client_id = f"vv-{uuid.uuid4().hex[:8]}"
    organizer = str(uuid.uuid4())
    _control(standins, "epic", "POST", "clients", {
        "client_id": client_id, "jwks_url": f"{live_app}/api/.well-known/jwks.json",
        "redirect_uris": [f"{live_app}/api/launch/callback"]})
    _control(standins, "graph", "POST", "users", {"id": organizer, "policy": True})
    pem = Path(service_settings["GRAPH_CLIENT_CERT_FILE"]).read_text()
    _control(standins, "graph", "POST", "apps", {
        "client_id": service_settings["GRAPH_CLIENT_ID"], "tenant": service_settings["GRAPH_TENANT_ID"],
        "certificate_pem": pem[pem.index("-----BEGIN CERTIFICATE-----"):],
        "redirect_uris": [f"{live_app}/api/launch/signin"]})
    environment = make_environment(app, f"browser-{uuid.uuid4().hex[:8]}", epic_client_id=client_id,
                                   fallback_organizer_id=organizer, provider_signin=False,
                                   frame_origins=(standins["epic_allowed"],))
    _own_iss(app, dataclasses.replace(environment, fhir_base_urls=(standins["iss"],)), standins["iss"])
    yield app.repos.environments.get(environment.id)
    _own_iss(app, dataclasses.replace(environment, fhir_base_urls=()), standins["iss"])


@pytest.fixture
def page(browser: Any, console_messages: list[str]) -> Iterator[Any]:
    """A fresh desktop context that accepts the local CA's certificates (the stand-ins are https)."""
    context = browser.new_context(**DESKTOP, ignore_https_errors=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("console", lambda message: console_messages.append(f"{message.type}: {message.text}"))
    try:
        yield page
    finally:
        context.close()


def _csn() -> str:
    return str(secrets.randbelow(10**9) + 10**9)


def _epic_launch(standins: dict[str, str], env: Any, csn: str, context: str = "provider",
                 user_id: str = "E1001") -> str:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    body = {"client_id": env.epic_client_id, "appointment_csn": csn, "context": context,
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": (start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")}
    if context == "provider":
        body["user_id"] = user_id
    return str(_control(standins, "epic", "POST", "launch", body)["launch"])


def _launch_url(live_app: str, standins: dict[str, str], kind: str, launch: str) -> str:
    return f"{live_app}/api/launch/{kind}?" + urllib.parse.urlencode({"iss": standins["iss"], "launch": launch})


def _open(page: Any, url: str, where: str, standins: dict[str, str], **embed: str) -> Any:
    """Open ``url`` top-level (``where == "top"``) or inside the Epic stand-in's iframe served from the allowed
    (``"frame"``) or a refused (``"refused-frame"``) origin. Returns the Frame the app runs in."""
    if where == "top":
        page.goto(url)
        return page.main_frame
    parent = standins["epic_allowed" if where == "frame" else "epic_refused"]
    page.goto(f"{parent}/_standin/embed?" + urllib.parse.urlencode({"src": url, **embed}))
    handle = page.wait_for_selector("#app")
    frame = handle.content_frame()
    assert frame is not None
    return frame


def _settled(frame: Any, selector: str) -> Any:
    """Wait until the launch's redirects end on a document showing ``selector``."""
    frame.wait_for_selector(selector, timeout=TIMEOUT_MS)
    return frame


WHERE = ["top", "frame"]


# ---- provider ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", WHERE)
def test_provider_launch_reaches_the_teams_meeting(
        app: Any, live_app: str, standins: dict[str, str], env: Any, page: Any, console_messages: list[str],
        where: str) -> None:
    csn = _csn()
    frame = _open(page, _launch_url(live_app, standins, "provider", _epic_launch(standins, env, csn)), where,
                  standins)
    _settled(frame, "#standin-meeting")
    meeting = app.repos.appointments.get(f"{env.id}|{csn}").meeting
    assert frame.url == meeting.join_url
    assert not [m for m in console_messages if "Content Security Policy" in m], console_messages
    save_screenshot(page, f"launch-provider-{where}")


# ---- patient ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", WHERE)
def test_patient_launch_reaches_the_join_page_of_the_visit(
        app: Any, live_app: str, standins: dict[str, str], env: Any, page: Any, console_messages: list[str],
        where: str) -> None:
    csn = _csn()
    frame = _open(page, _launch_url(live_app, standins, "patient", _epic_launch(standins, env, csn, "patient")),
                  where, standins)
    _settled(frame, "#notice")
    assert frame.url.startswith(f"{live_app}/api/join/")
    assert frame.inner_text("h1") == f"Video visit with {env.display_name}"
    assert frame.get_attribute("#app", "data-phase") == "too_early"  # the visit starts in an hour
    assert app.repos.appointments.get(f"{env.id}|{csn}").meeting is not None  # made when the page opened
    assert not [m for m in console_messages if "Content Security Policy" in m], console_messages
    save_screenshot(page, f"launch-patient-{where}")


# ---- the clinician's first launch: one Microsoft 365 sign-in -----------------------------------------------
def _new_clinician(app: Any, standins: dict[str, str], env: Any, **changes: Any) -> tuple[str, str]:
    clinician = str(uuid.uuid4())
    _control(standins, "graph", "POST", "users", {"id": clinician, "policy": True})
    _control(standins, "graph", "POST", "signin", {"id": clinician})
    app.repos.environments.put(dataclasses.replace(env, provider_signin=True, **changes))
    return clinician, f"E{secrets.randbelow(10**6)}"


def test_first_provider_launch_signs_in_with_microsoft_365_then_reaches_the_meeting(
        app: Any, live_app: str, standins: dict[str, str], env: Any, page: Any) -> None:
    clinician, user_id = _new_clinician(app, standins, env)
    try:
        csn = _csn()
        launch = _epic_launch(standins, env, csn, user_id=user_id)
        frame = _open(page, _launch_url(live_app, standins, "provider", launch), "top", standins)
        _settled(frame, "#standin-meeting")
    finally:
        app.repos.environments.put(env)
    assert app.users.get(env.id, user_id).entra_object_id == clinician
    meeting = app.repos.appointments.get(f"{env.id}|{csn}").meeting
    assert frame.url == meeting.join_url and meeting.organizer_id == clinician


def test_first_provider_launch_in_a_frame_goes_on_with_the_fallback_organizer_without_the_sign_in(
        app: Any, live_app: str, standins: dict[str, str], env: Any, page: Any) -> None:
    """Microsoft 365 sign-in pages refuse frames, so a framed first launch does not start the sign-in."""
    _clinician, user_id = _new_clinician(app, standins, env)
    try:
        csn = _csn()
        launch = _epic_launch(standins, env, csn, user_id=user_id)
        frame = _open(page, _launch_url(live_app, standins, "provider", launch), "frame", standins)
        _settled(frame, "#standin-meeting")
    finally:
        app.repos.environments.put(env)
    assert app.users.get(env.id, user_id) is None  # the sign-in waits for a top-level launch
    meeting = app.repos.appointments.get(f"{env.id}|{csn}").meeting
    assert frame.url == meeting.join_url and meeting.organizer_id == env.fallback_organizer_id


def test_first_provider_launch_in_a_frame_without_a_fallback_organizer_says_what_to_do(
        app: Any, live_app: str, standins: dict[str, str], env: Any, page: Any) -> None:
    _clinician, user_id = _new_clinician(app, standins, env, fallback_organizer_id=None)
    try:
        launch = _epic_launch(standins, env, _csn(), user_id=user_id)
        frame = _open(page, _launch_url(live_app, standins, "provider", launch), "frame", standins)
        _settled(frame, "#error-code")
    finally:
        app.repos.environments.put(env)
    assert frame.inner_text("#error-code") == "SIGNIN_NEEDS_WINDOW"
    assert "full browser window" in frame.inner_text("#message")


# ---- Epic's encrypted link -----------------------------------------------------------------------------------
@pytest.mark.parametrize("where", WHERE)
def test_encrypted_link_launch_reaches_the_meeting(
        app: Any, live_app: str, standins: dict[str, str], env: Any, page: Any, where: str) -> None:
    from lib.models import Appointment
    from lib.smart.encrypted_link import encrypt_link, format_timestamp

    key = secrets.token_bytes(32)
    enc_id = f"enc-{uuid.uuid4().hex[:8]}"
    # Its own FHIR base URL, approved by the Epic analyst: an encrypted link needs an approved environment.
    encrypted_env = seeded_approvals(dataclasses.replace(
        env, id=enc_id, fhir_base_urls=(f"https://ehr.example.org/{enc_id}/api/FHIR/R4",), approvals={},
        launch_mode="encrypted"), at=datetime.now(UTC))
    app.repos.environments.put(encrypted_env)
    # EPIC_CAL_KEYS is a secret setting read once; the test adds this environment's key to the loaded value.
    app.settings.epic_cal_keys[encrypted_env.id] = key
    csn = _csn()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    app.repos.appointments.create(Appointment(encrypted_env.id, csn, "booked", start, start + timedelta(minutes=30),
                                              30, "America/New_York"))
    plaintext = urllib.parse.urlencode({"csn": csn, "userId": "E1001", "userType": "provider",
                                        "timestamp": format_timestamp(datetime.now(UTC))})
    data = encrypt_link(key, plaintext, secrets.token_bytes(16))
    url = f"{live_app}/api/launch/provider?" + urllib.parse.urlencode({"env": encrypted_env.id, "data": data})
    frame = _open(page, url, where, standins)
    _settled(frame, "#standin-meeting")
    assert frame.url == app.repos.appointments.get(f"{encrypted_env.id}|{csn}").meeting.join_url


# ---- error pages ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", WHERE)
def test_an_error_page_is_readable_and_accessible(
        live_app: str, standins: dict[str, str], env: Any, page: Any, console_messages: list[str],
        where: str) -> None:
    url = f"{live_app}/api/launch/provider?" + urllib.parse.urlencode({"iss": "https://unknown.invalid/fhir",
                                                                       "launch": "x"})
    frame = _open(page, url, where, standins)
    _settled(frame, "#error-code")
    assert frame.inner_text("#error-code") == "ISS_NOT_ALLOWED"
    assert "could not be started" in frame.inner_text("#message")
    if where == "top":
        assert axe_violations(page) == []
    assert not [m for m in console_messages if "Content Security Policy" in m], console_messages
    save_screenshot(page, f"launch-error-{where}")


@pytest.mark.parametrize("where", WHERE)
def test_a_busy_token_endpoint_shows_when_to_try_again(
        live_app: str, standins: dict[str, str], env: Any, page: Any, where: str) -> None:
    _control(standins, "epic", "POST", "faults", {"path_prefix": "/oauth2/token",
                                                  "responses": [{"status": 429, "retry_after": 90}]})
    try:
        frame = _open(page, _launch_url(live_app, standins, "provider", _epic_launch(standins, env, _csn())), where,
                      standins)
        _settled(frame, "#error-code")
    finally:
        _control(standins, "epic", "DELETE", "faults")
    assert frame.inner_text("#error-code") == "EPIC_THROTTLED"
    assert frame.inner_text("#retry-after") == "Try again in about 2 minutes."


def test_a_frame_of_an_origin_the_environment_does_not_allow_shows_a_readable_refusal(
        app: Any, live_app: str, standins: dict[str, str], env: Any, page: Any) -> None:
    csn = _csn()
    frame = _open(page, _launch_url(live_app, standins, "provider", _epic_launch(standins, env, csn)),
                  "refused-frame", standins)
    _settled(frame, "#error-code")
    assert frame.inner_text("#error-code") == "FRAME_NOT_ALLOWED"
    assert "cannot be shown inside this window" in frame.inner_text("#message")
    assert app.repos.appointments.get(f"{env.id}|{csn}") is None  # nothing started
    save_screenshot(page, "launch-refused-frame")


def test_a_refused_frame_without_a_referer_is_blocked_by_the_browser(
        app: Any, live_app: str, standins: dict[str, str], env: Any, page: Any, console_messages: list[str]) -> None:
    """Without a Referer the server cannot tell the parent: frame-ancestors alone refuses, so the browser shows its
    own blocked frame and none of our page (the documented limit of the readable refusal)."""
    csn = _csn()
    frame = _open(page, _launch_url(live_app, standins, "provider", _epic_launch(standins, env, csn)),
                  "refused-frame", standins, referrer="none")
    page.wait_for_timeout(1500)
    assert frame.query_selector("form#authorize") is None and frame.query_selector("#error-code") is None
    assert [m for m in console_messages if "frame-ancestors" in m], console_messages


def test_reopening_a_used_launch_url_says_start_again_from_epic_with_a_400(
        live_app: str, standins: dict[str, str], env: Any, page: Any) -> None:
    url = _launch_url(live_app, standins, "provider", _epic_launch(standins, env, _csn()))
    _settled(_open(page, url, "top", standins), "#standin-meeting")
    callbacks: list[int] = []
    page.on("response", lambda r: callbacks.append(r.status) if "/api/launch/callback" in r.url else None)
    frame = _settled(_open(page, url, "top", standins), "#error-code")  # a reload / a restored tab
    assert frame.inner_text("#error-code") == "LAUNCH_EXPIRED"
    assert "start the visit again from Epic" in frame.inner_text("#message")
    frame.click("summary")  # "For your IT team": Epic's own words, not a guess at the cause
    assert '"launch has already been used"' in frame.inner_text("#admin-hint")
    assert callbacks == [400]  # what the browser (and its monitoring) sees, not the auto-submitting form's 200
