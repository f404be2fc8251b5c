"""The clinician's live status page in a real browser: reached from a SMART launch with ``view=status``, it
shows who is in the room and since when, and follows the meeting's roster (Graph stand-in notifications)
within seconds, under the strict CSP, accessibly."""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.e2e.browser import axe_violations, save_screenshot
from tests.support.environments import make_environment
from tests.support.writeback import drain_launch_followup

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CLINICIAN = str(uuid.uuid4())
PATIENT_ACS = f"8:acs:{uuid.uuid4()}"


def _control(settings: dict[str, str], service: str, path: str, body: Any = None, method: str = "POST") -> Any:
    base = settings["EPIC_STANDIN_URL" if service == "epic" else "GRAPH_STANDIN_URL"]
    resp = requests.request(method, f"{base}/_standin/{path}", json=body, verify=settings["REQUESTS_CA_BUNDLE"],
                            timeout=30)
    assert resp.status_code < 300, resp.text
    return resp.json() if resp.content else None


@pytest.fixture(scope="module")
def visit(app: Any, live_app: str, service_settings: dict[str, str]) -> dict[str, Any]:
    """A provider launch with ``view=status`` through the Epic stand-in; yields the status URL and the visit."""
    from lib.store.users import UserMapping

    client_id, organizer = f"vv-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    iss = service_settings["EPIC_STANDIN_ISS"]
    for other in app.repos.environments.all():  # a launch is routed by its iss: make it this environment's
        if iss in other.fhir_base_urls:
            app.repos.environments.put(dataclasses.replace(
                other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != iss)))
    _control(service_settings, "epic", "clients", {"client_id": client_id,
                                                   "jwks_url": f"{live_app}/api/.well-known/jwks.json",
                                                   "redirect_uris": [f"{live_app}/api/launch/callback"]})
    _control(service_settings, "graph", "users", {"id": organizer, "policy": True})
    _control(service_settings, "graph", "users", {"id": CLINICIAN, "policy": True})  # signed in: organizes
    env = make_environment(app, f"status-{uuid.uuid4().hex[:8]}", fhir_base_urls=(iss,), epic_client_id=client_id,
                           fallback_organizer_id=organizer, provider_signin=False)
    app.users.put(UserMapping(env.id, "E1001", CLINICIAN, datetime.now(UTC)))
    csn = str(uuid.uuid4().int % 10**10)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    launch = _control(service_settings, "epic", "launch", {
        "client_id": client_id, "appointment_csn": csn, "context": "provider", "user_id": "E1001",
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")})
    browser = requests.Session()
    browser.verify = service_settings["REQUESTS_CA_BUNDLE"]
    page = browser.get(f"{live_app}/api/launch/provider", params={"iss": iss, "launch": launch["launch"],
                                                                  "view": "status"}, allow_redirects=False)
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    fields = {html.unescape(k): html.unescape(v)
              for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
    callback = browser.post(action, data=fields, allow_redirects=False).headers["Location"]
    done = browser.get(callback, allow_redirects=False)
    assert done.status_code == 302, done.text
    appointment = app.repos.appointments.get(f"{env.id}|{csn}")
    # The meeting's call-events subscription follows the launch through its launch-followup message (the live
    # app here polls no queues: the real trigger runs on it).
    assert drain_launch_followup(app, appointment.key) == 1
    app.participant_identities.register(PATIENT_ACS, appointment.key, "patient", expires=start + timedelta(days=1),
                                        now=datetime.now(UTC))
    return {"status_url": done.headers["Location"], "appointment": appointment, "settings": service_settings}


def _roster(visit: dict[str, Any], *steps: dict[str, Any]) -> None:
    base = datetime.now(UTC) - timedelta(seconds=len(steps))
    for i, step in enumerate(steps):
        step["at"] = (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
    deliveries = _control(visit["settings"], "graph", "call-events", {
        "joinWebUrl": visit["appointment"].meeting.join_url, "steps": list(steps)})["deliveries"]
    assert {d["status"] for d in deliveries} == {202}


def test_the_status_launch_lands_on_the_visits_status_page(visit: dict[str, Any], live_app: str) -> None:
    assert re.fullmatch(rf"{re.escape(live_app)}/api/visits/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/status",
                        visit["status_url"])


def test_the_page_follows_the_roster_within_seconds_without_csp_violations(
        visit: dict[str, Any], page: Any, console_messages: list[str]) -> None:
    page.goto(visit["status_url"])
    assert "Nobody has joined" in page.locator("#participants").inner_text()
    _roster(visit, {"action": "start"}, {"action": "join", "participant": {"user": CLINICIAN}},
            {"action": "join", "participant": {"acs": PATIENT_ACS}, "lobby": True})
    patient_row = page.locator("#participants tbody tr", has_text="Patient")
    patient_row.wait_for(timeout=10_000)  # the page polls every 3 s
    assert "Waiting in the lobby" in patient_row.inner_text()
    assert "In the meeting" in page.locator("#participants tbody tr", has_text="Clinician E1001").inner_text()
    _roster(visit, {"action": "admit", "participant": {"acs": PATIENT_ACS}})
    page.locator("#participants tbody tr[data-state='in_meeting']", has_text="Patient").wait_for(timeout=10_000)
    assert page.locator("#call-state").inner_text() == "The call is in progress."
    assert axe_violations(page) == []
    save_screenshot(page, "visit-status")
    assert not [m for m in console_messages if "Content Security Policy" in m], console_messages


def test_the_json_names_roles_never_people_and_a_forged_pass_sees_nothing(visit: dict[str, Any]) -> None:
    status = requests.get(visit["status_url"] + ".json", timeout=10)
    assert status.status_code == 200 and status.headers["Cache-Control"] == "no-store"
    body = status.json()
    assert {p["label"] for p in body["participants"]} == {"Clinician E1001", "Patient"}
    assert "Stand-in" not in status.text  # Graph's display names never reach us
    token = visit["status_url"].rsplit("/", 2)[-2]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert requests.get(visit["status_url"].replace(token, forged) + ".json", timeout=10).status_code == 404
    page = requests.get(visit["status_url"].replace(token, forged), timeout=10)
    assert page.status_code == 404 and '<code id="error-code">STATUS_LINK_INVALID</code>' in page.text
