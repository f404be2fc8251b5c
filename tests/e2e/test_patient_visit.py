"""The patient's video visit in a real browser (Debian chromium, fake camera and microphone): every state of
the join page, the device test end to end (stored and written back to the Epic stand-in), blocked and
missing devices, offline, an unsupported browser, and the join driven through the real ACS Calling SDK up
to the network.

What needs Microsoft's cloud is not exercised: the Calling SDK's configuration, registration and
conversation services (``*.microsoft.com``, ``*.skype.com``) are unreachable here, so no lobby, admission,
remote video or end of a real call happens; the test records what the SDK sent there (the join of the
right meeting) and checks the page's message when the service cannot be reached. The lobby and end-of-call
wording is covered by ``web/patient/test`` (node) on the state mapping the page uses.
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.e2e.browser import axe_violations, save_screenshot
from tests.support.environments import make_environment
from tests.support.writeback import drain_writeback, epic_status_calls

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

STEPS = ("speaker", "microphone", "camera", "connection", "test_call")
BLOCKED = """navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));"""
NO_CAMERA = """(() => {
  const devices = navigator.mediaDevices;
  const real = devices.getUserMedia.bind(devices);
  const list = devices.enumerateDevices.bind(devices);
  devices.getUserMedia = (c) => c && c.video
    ? Promise.reject(new DOMException("Requested device not found", "NotFoundError")) : real(c);
  devices.enumerateDevices = async () => (await list()).filter((d) => d.kind !== "videoinput");
})();"""
NO_WEBRTC = "delete window.RTCPeerConnection;"


@pytest.fixture(scope="module")
def site(live_app: str) -> str:
    """The app as the browser reaches it: ``localhost`` (the Calling SDK runs only on https or localhost)."""
    parts = urllib.parse.urlsplit(live_app)
    return f"http://localhost:{parts.port}"


@pytest.fixture(scope="module")
def standins(service_settings: dict[str, str]) -> dict[str, str]:
    return {"epic": service_settings["EPIC_STANDIN_URL"], "iss": service_settings["EPIC_STANDIN_ISS"],
            "graph": service_settings["GRAPH_STANDIN_URL"], "acs": service_settings["ACS_STANDIN_URL"],
            "ca": service_settings["REQUESTS_CA_BUNDLE"]}


@pytest.fixture(scope="module")
def env(app: Any, live_app: str, standins: dict[str, str]) -> Any:
    """An environment whose Teams organizer exists in the Graph stand-in and whose Epic client can write back.

    The Epic stand-in's FHIR base URL names one environment at a time: others listing it (left by earlier
    tests or runs against long-running services) lose it, as in ``tests/integration/test_launch_flow.py``.
    """
    import dataclasses

    for other in app.repos.environments.all():
        if standins["iss"] in other.fhir_base_urls:
            app.repos.environments.put(dataclasses.replace(
                other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != standins["iss"])))
    client_id = f"vv-{uuid.uuid4().hex[:8]}"
    organizer = str(uuid.uuid4())
    for url, body in ((f"{standins['epic']}/_standin/clients",
                       {"client_id": client_id, "jwks_url": f"{live_app}/api/.well-known/jwks.json",
                        "redirect_uris": [f"{live_app}/api/launch/callback"]}),
                      (f"{standins['graph']}/_standin/users", {"id": organizer, "policy": True})):
        assert requests.post(url, json=body, verify=standins["ca"], timeout=10).status_code < 300
    return make_environment(app, f"patient-{uuid.uuid4().hex[:8]}", display_name="Riverside Clinic",
                            fhir_base_urls=(standins["iss"],), epic_client_id=client_id,
                            fallback_organizer_id=organizer)


@pytest.fixture(scope="module")
def visit(app: Any, env: Any, site: str) -> Callable[..., tuple[Any, str]]:
    """``visit(starts_in=timedelta, status=, language=, revision=, expires_in=)`` -> (appointment, page URL)."""
    from lib.models import Appointment

    def make(starts_in: timedelta = timedelta(minutes=10), *, status: str = "booked", language: str | None = None,
             revision: int = 1, expires_in: timedelta | None = None) -> tuple[Any, str]:
        now = datetime.now(UTC).replace(microsecond=0)
        start = now + starts_in
        link_id = secrets.token_urlsafe(16)
        appointment = app.repos.appointments.create(Appointment(
            env.id, str(secrets.randbelow(10**9) + 10**9), status, start, start + timedelta(minutes=20), 20,
            "America/New_York", link_id=link_id, language=language, schedule_revision=revision))
        expires = now + expires_in if expires_in is not None else start + timedelta(hours=3)
        app.repos.links.put(link_id, appointment.key, expires=max(expires, now + timedelta(seconds=1)), now=now)
        return appointment, f"{site}/api/join/{app.join_links.token(link_id, expires)}"

    return make


def notice(page: Any) -> tuple[str, str]:
    return page.locator("#notice").get_attribute("data-state") or "", page.locator("#notice-title").inner_text()


def wait_state(page: Any, state: str, timeout: float = 30_000) -> None:
    page.wait_for_selector(f'#notice[data-state="{state}"]', timeout=timeout)


def wait_until(page: Any, expression: str, timeout: float = 30.0) -> None:
    """Poll ``expression`` in the page (``page.evaluate`` goes through DevTools, which the page's CSP does not
    govern; Playwright's ``wait_for_function`` would need ``unsafe-eval``)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def no_csp_violations(console_messages: list[str]) -> None:
    assert not [m for m in console_messages if "Content Security Policy" in m], console_messages


@pytest.mark.parametrize("size", ["page", "phone_page"])
def test_open_visit_page_is_accessible_at_phone_and_desktop_sizes_and_records_the_page_opened(
        request: pytest.FixtureRequest, app: Any, visit: Callable[..., Any], console_messages: list[str],
        size: str) -> None:
    page: Any = request.getfixturevalue(size)
    appointment, url = visit()
    response = page.goto(url)
    assert response is not None and response.status == 200
    assert notice(page) == ("open", "Your visit room is open")
    assert page.locator("h1").inner_text() == "Video visit with Riverside Clinic"
    assert page.locator("#visit-time").inner_text().startswith("Visit time: ")
    assert page.locator("#join").inner_text() == "Join the video visit"
    assert page.locator("#join").bounding_box()["height"] >= 48  # a large touch target
    assert axe_violations(page) == []
    save_screenshot(page, f"patient-open-{size}")
    no_csp_violations(console_messages)
    for _ in range(50):
        events = app.repos.visit_events.for_appointment(appointment.key)
        if events:
            break
        time.sleep(0.1)
    assert [(e.type, e.writeback) for e in events] == [("page_opened", "none")]


@pytest.mark.parametrize(("case", "state", "title", "status"), [
    ("too_early", "too_early", "It is too early to join", 200),
    ("cancelled", "cancelled", "This visit was cancelled", 410),
    ("over", "over", "This visit is over", 200),
    ("invalid", "invalid", "This link does not work", 404),
    ("expired", "expired", "This link has expired", 410),
])
def test_every_visit_state_says_what_happened_and_what_to_do(
        phone_page: Any, visit: Callable[..., Any], site: str, console_messages: list[str], case: str, state: str,
        title: str, status: int) -> None:
    kwargs: dict[str, Any] = {
        "too_early": {"starts_in": timedelta(hours=3)},
        "cancelled": {"status": "cancelled"},
        "over": {"starts_in": timedelta(hours=-2), "expires_in": timedelta(hours=1)},
        "expired": {"starts_in": timedelta(hours=-4), "expires_in": timedelta(seconds=1)},
    }.get(case, {})
    _, url = visit(**kwargs)
    if case == "invalid":
        url = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    if case == "expired":
        time.sleep(1.1)
    response = phone_page.goto(url)
    assert response is not None and response.status == status
    assert notice(phone_page) == (state, title)
    action = phone_page.locator("#notice-action").inner_text()
    assert action  # one sentence saying what to do
    if case == "too_early":
        assert "The room opens at" in phone_page.locator("#notice-text").inner_text()
        assert phone_page.locator("#join").count() == 0 and phone_page.locator("#start-test").is_visible()
    else:
        assert phone_page.locator("#start-test").count() == 0
    assert axe_violations(phone_page) == []
    save_screenshot(phone_page, f"patient-{case}-phone")
    no_csp_violations(console_messages)


def test_a_moved_visit_shows_its_new_time_and_the_page_speaks_the_visits_language(
        page: Any, visit: Callable[..., Any]) -> None:
    _, url = visit(revision=2, language="SPA")
    page.goto(url)
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.locator("#moved h2").inner_text() == "Su visita cambió de hora"
    assert page.locator("#moved p").inner_text().startswith("La nueva hora es ")
    assert page.locator("#join").inner_text() == "Entrar a la visita por video"
    page.get_by_role("link", name="English").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#moved h2").inner_text() == "Your visit has moved"
    save_screenshot(page, "patient-moved-desktop")


def _run_device_test(page: Any) -> None:
    """Every step, as a patient does it: start, wait for what it shows, answer yes."""
    step = lambda name: page.locator(f'.dt-step[data-step="{name}"]')  # noqa: E731
    step("speaker").locator(".dt-start").click()
    step("speaker").locator(".dt-yes").click()
    step("microphone").locator(".dt-start").click()
    wait_until(page, "Number(document.getElementById('mic-level').dataset.peak || 0) > 0.01")
    step("microphone").locator(".dt-yes").click()
    step("camera").locator(".dt-start").click()
    wait_until(page, "document.querySelector('[data-step=camera] video').videoWidth > 0")
    step("camera").locator(".dt-yes").click()
    step("connection").locator(".dt-start").click()
    output = step("connection").locator(".dt-output")
    output.filter(has_text="Delay").wait_for(timeout=30_000)  # round trip and speed, shown to the patient
    step("test_call").wait_for(state="visible", timeout=30_000)  # the connection step moves on by itself
    step("test_call").locator(".dt-start").click()
    step("test_call").locator(".dt-question").wait_for(state="visible", timeout=30_000)
    wait_until(page, "document.querySelector('[data-step=test_call] video').videoWidth > 0")
    step("test_call").locator(".dt-yes").click()
    page.locator("#dt-summary").wait_for(state="visible")


def test_device_test_end_to_end_is_stored_and_written_back_to_epic(
        page: Any, app: Any, visit: Callable[..., Any], standins: dict[str, str],
        console_messages: list[str]) -> None:
    appointment, url = visit()
    page.goto(url)
    page.click("#start-test")
    _run_device_test(page)
    page.wait_for_selector('#app[data-device-test-saved="true"]')
    results = page.locator("#dt-results li")
    assert [results.nth(i).get_attribute("data-result") for i in range(5)] == ["passed"] * 5
    assert page.locator(".dt-step:visible").count() == 0  # the summary replaces the steps
    assert page.locator("#dt-verdict").inner_text() == "Everything works. You are ready for your visit."
    assert page.locator("#dt-saved").inner_text() == "Your clinic has received these results."
    assert axe_violations(page) == []
    save_screenshot(page, "patient-device-test-summary-desktop")
    no_csp_violations(console_messages)

    (event,) = [e for e in app.repos.visit_events.for_appointment(appointment.key) if e.type.startswith("device")]
    assert event.type == "device_test_passed" and event.writeback == "pending"
    assert event.details["steps"] == dict.fromkeys(STEPS, "passed")
    measures = event.details["measures"]
    assert measures["rttMs"] >= 0 and measures["mbps"] > 1
    assert measures["relays"] == "not_configured"  # the test profile sets no CALL_RELAY_URLS
    assert measures["callConnected"] is True and measures["callVideo"] is True and measures["callAudio"] is True
    assert measures["microphonePeak"] > 0.01
    drain_writeback(app, appointment.key)
    (call,) = epic_status_calls(standins["epic"], standins["ca"], appointment.appointment_id)
    assert (call["ExternalID"], call["ConnectionStatus"]) == ("patient", "3")


def test_standalone_device_test_from_epics_record_tells_a_blocked_relay_and_writes_nothing(
        phone_page: Any, app: Any, env: Any, site: str, console_messages: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.join, "_relay_urls", ("stun:127.0.0.1:9",))  # nothing answers STUN there
    phone_page.goto(f"{site}/api/devicetest?env={env.id}&lang=es")
    assert phone_page.locator("h1").inner_text() == "Prueba de equipo para Riverside Clinic"
    phone_page.locator('.dt-step[data-step="speaker"]').wait_for(state="visible")
    assert phone_page.get_by_role("button", name="Probar de nuevo").count() == 0  # no "Test again" before a test
    for name in ("speaker", "microphone", "camera"):  # every step can be skipped
        phone_page.locator(f'.dt-step[data-step="{name}"] .dt-skip').click()
    connection = phone_page.locator('.dt-step[data-step="connection"]')
    connection.locator(".dt-start").click()
    blocked = connection.locator(".dt-output", has_text="Su red podría bloquear las videollamadas")
    blocked.wait_for(timeout=30_000)  # shown, then the step moves on by itself
    phone_page.locator('.dt-step[data-step="test_call"]').wait_for(state="visible", timeout=30_000)
    phone_page.locator('.dt-step[data-step="test_call"] .dt-skip').click()
    phone_page.locator("#dt-summary").wait_for(state="visible")
    assert phone_page.locator('#dt-results li[data-step="connection"]').get_attribute("data-result") == "failed"
    assert phone_page.locator("#dt-verdict").inner_text().startswith("Algunas pruebas encontraron un problema.")
    assert phone_page.locator("#dt-saved").inner_text() == "Puede cerrar esta página."
    assert phone_page.get_by_role("button", name="Probar de nuevo").is_visible()
    assert axe_violations(phone_page) == []
    save_screenshot(phone_page, "patient-standalone-device-test-phone")
    no_csp_violations(console_messages)
    unknown = phone_page.goto(f"{site}/api/devicetest?env=no-such-environment")
    assert unknown is not None and unknown.status == 404
    assert notice(phone_page) == ("invalid", "This link does not work")


def test_blocked_camera_and_microphone_say_how_to_allow_them(page: Any, visit: Callable[..., Any]) -> None:
    page.add_init_script(BLOCKED)
    _, url = visit()
    page.goto(url)
    page.click("#join")
    wait_state(page, "blocked")
    assert notice(page)[1] == "Your camera or microphone is blocked"
    assert "turn on Camera and Microphone, then reload the page" in page.locator("#notice-action").inner_text()
    assert page.locator("#call").is_hidden()
    assert axe_violations(page) == []
    save_screenshot(page, "patient-blocked-desktop")


def test_without_a_camera_the_patient_can_join_with_sound_only(phone_page: Any, visit: Callable[..., Any]) -> None:
    phone_page.add_init_script(NO_CAMERA)
    _, url = visit()
    phone_page.goto(url)
    phone_page.click("#join")
    wait_state(phone_page, "no_camera")
    assert notice(phone_page)[1] == "No camera was found"
    assert phone_page.locator("#join").inner_text() == "Join with sound only"
    save_screenshot(phone_page, "patient-no-camera-phone")


def test_offline_is_said_and_the_page_comes_back(page: Any, visit: Callable[..., Any]) -> None:
    _, url = visit()
    page.goto(url)
    page.context.set_offline(True)
    wait_state(page, "offline")
    assert notice(page)[1] == "You are offline"
    page.click("#join")  # tapped while offline: still the offline state, not "cannot reach the video service"
    assert notice(page) == ("offline", "You are offline")
    assert page.locator("#app").get_attribute("data-call-stage") is None
    save_screenshot(page, "patient-offline-desktop")
    page.context.set_offline(False)
    wait_state(page, "open")


def test_a_page_left_open_past_the_visit_says_it_is_over_without_buttons(phone_page: Any, visit: Callable[..., Any],
                                                                        clock: Any) -> None:
    appointment, url = visit()
    phone_page.goto(url)
    wait_state(phone_page, "open")
    clock.set(appointment.start_utc + timedelta(hours=2))  # past the end and its grace; the link still valid
    phone_page.click("#join")
    wait_state(phone_page, "over")
    for button in ("#join", "#retry", "#rejoin", "#start-test"):
        assert phone_page.locator(button).is_hidden(), button
    assert phone_page.locator("#device-test").is_hidden()
    save_screenshot(phone_page, "patient-over-while-open-phone")


def test_a_browser_without_webrtc_is_told_which_browsers_work(phone_page: Any, visit: Callable[..., Any]) -> None:
    phone_page.add_init_script(NO_WEBRTC)
    _, url = visit()
    phone_page.goto(url)
    wait_state(phone_page, "unsupported")
    assert "Chrome, Edge or Firefox" in phone_page.locator("#notice-action").inner_text()
    assert phone_page.locator("#actions").is_hidden()
    save_screenshot(phone_page, "patient-unsupported-phone")


def test_join_gets_a_token_and_drives_the_calling_sdk_to_join_the_meeting_up_to_the_network(
        page: Any, app: Any, visit: Callable[..., Any], standins: dict[str, str],
        console_messages: list[str]) -> None:
    """Exercised: our API issues the ACS identity and token (through the stand-in, the real Python SDK); the
    page loads the Calling SDK, creates the call agent with that token and joins the meeting by its link;
    the SDK's requests to Microsoft's services are recorded and refused (there is no network here), and the
    page says the video service cannot be reached, with Try again. Not exercised: anything past Microsoft's
    edge (registration, the lobby, admission, media with the clinician)."""
    appointment, url = visit()
    outside: list[tuple[str, str, str]] = []

    def refuse(route: Any) -> None:
        req = route.request
        outside.append((req.method, req.url, req.post_data or ""))
        route.abort("internetdisconnected")

    page.route(lambda u: urllib.parse.urlsplit(u).hostname not in ("localhost", "127.0.0.1"), refuse)
    identities_before = len(requests.get(f"{standins['acs']}/_standin/identities", verify=standins["ca"],
                                         timeout=10).json())
    page.goto(url)
    page.click("#join")
    wait_state(page, "unreachable", timeout=90_000)
    assert notice(page)[1] == "We cannot reach the video service"
    assert page.locator("#retry").is_visible()
    meeting = app.repos.appointments.get(appointment.key).meeting
    assert page.locator("#app").get_attribute("data-meeting-link") == meeting.join_url
    assert page.locator("#app").get_attribute("data-call-stage") == "joined"
    identities = requests.get(f"{standins['acs']}/_standin/identities", verify=standins["ca"], timeout=10).json()
    assert len(identities) == identities_before + 1 and identities[-1]["scopes"] == ["voip"]
    hosts = {urllib.parse.urlsplit(u).hostname for _, u, _ in outside}
    assert any(h and h.endswith(".microsoft.com") for h in hosts), hosts  # the SDK reached for its services
    thread = urllib.parse.unquote(meeting.join_url.split("/l/meetup-join/")[1].split("/")[0])
    joins = [body for method, u, body in outside if method == "POST" and thread in urllib.parse.unquote(body)]
    assert joins, "the SDK never asked to join the meeting's thread"
    save_screenshot(page, "patient-service-unreachable-desktop")
    no_csp_violations(console_messages)
