"""Write-back failures in the portal over HTTP (dev runner, Azurite, the Cosmos-compatible server, the Epic
stand-in): a write-back Epic really refused is listed with Epic's reason for admins only, replayed with the
form (no JavaScript) or the JSON API, written to Epic exactly once however often the replay is submitted, and
audited; refusals say what to do (docs/portal.md "Write-back failures")."""

from __future__ import annotations

import contextlib
import html
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from lib.store.visit_events import VisitEvent
from tests.integration.portal_client import PortalUser, problem_code, served_app
from tests.support.environments import make_environment
from tests.support.writeback import (
    drain_writeback,
    epic_status_calls,
    epic_writeback_environment,
    refused_writeback,
    release_epic_url,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_portal_writeback_tests") as public:
        yield public


@pytest.fixture(scope="module")
def ca(service_settings: dict[str, str]) -> str:
    return service_settings["REQUESTS_CA_BUNDLE"]


@pytest.fixture(scope="module")
def admin(runner: str, ca: str) -> PortalUser:
    return PortalUser(runner, "ops-admin@contoso.example", ("Admin",), ca)


@pytest.fixture(scope="module")
def env(app: Any, runner: str, service_settings: dict[str, str]) -> Iterator[Any]:
    env_id = f"wbp-{uuid.uuid4().hex[:8]}"
    yield epic_writeback_environment(app, env_id, service_settings)
    release_epic_url(app, env_id)


@pytest.fixture(autouse=True)
def empty_work_queue(app: Any) -> Iterator[None]:
    """Start and end with an empty ``visit-events`` queue (its messages are drained by the tests)."""
    app.queues.client("visit-events").clear_messages()
    yield
    app.queues.client("visit-events").clear_messages()


def new_csn() -> str:
    return str(uuid.uuid4().int % 10**10)


def page_path(env: Any) -> str:
    return f"/api/portal/environments/{env.id}/writeback-failures"


def rows(page_html: str) -> list[str]:
    return re.findall(r'<tr class="failure" data-event-id="([0-9a-f]+)">', page_html)


def form_token(page_html: str) -> str:
    return html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page_html).group(1))  # type: ignore[union-attr]


def replay_form(admin: PortalUser, env: Any, event: Any, **extra: str) -> Any:
    token = form_token(admin.get(page_path(env)).text)
    return admin.session.post(f"{admin.base}{page_path(env)}/replay", allow_redirects=False, data={
        "csrf_token": token, "event_id": event.id, "appointment_key": event.appointment_key, **extra})


def audit_entries(admin: PortalUser, env: Any) -> list[dict[str, Any]]:
    answer = admin.get(f"/api/config/audit?environmentId={env.id}")
    assert answer.status_code == 200, answer.text
    return [e for e in answer.json() if e["action"] == "writeback.replay"]


def test_a_refused_write_back_is_listed_with_epics_reason_for_admins_only(
        app: Any, env: Any, admin: PortalUser, runner: str, ca: str, service_settings: dict[str, str]):
    csn = new_csn()
    event = refused_writeback(app, env, service_settings, csn=csn, participant_id="E1001")
    assert (event.writeback, event.writeback_reason) == ("failed", "epic_http_400")

    page = admin.get(page_path(env))
    assert page.status_code == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert event.id in rows(page.text)
    row = page.text.split(f'data-event-id="{event.id}"')[1].split("</tr>")[0]
    assert f"<code>{csn}</code>" in row and "Clinician <code>E1001</code>" in row and "Connected" in row
    assert '<td data-label="Attempts">1</td>' in row  # one attempt
    assert "Epic refused it" in row and "epic_http_400" in row and "scripted fault 400" in row
    assert 'id="settings-ok"' in page.text and 'href="/api/portal/writeback-failures" aria-current="page"' in page.text

    listed = admin.get(f"/api/config/environments/{env.id}/writeback-failures").json()
    mine = next(f for f in listed["failures"] if f["eventId"] == event.id)
    assert mine == {"eventId": event.id, "appointmentKey": event.appointment_key, "appointmentId": csn,
                    "event": "connected", "role": "provider", "participant": "E1001",
                    "atUtc": event.at_utc.isoformat(), "state": "failed", "reason": "epic_http_400",
                    "reasonText": "Epic refused it", "epicDetail": "scripted fault 400", "attempts": 1,
                    "lastAttemptUtc": event.writeback_utc.isoformat(), "needsEpicCheck": False}
    assert listed["settingsProblems"] == []
    overview = admin.get("/api/portal/writeback-failures")
    assert re.search(rf'data-failures="{env.id}">[1-9]', overview.text)

    # Approvers (Epic analysts) and report readers see neither the list nor the replay, and get no link to it.
    for roles in (("Approver",), ("ReportsReader",)):
        other = PortalUser(runner, f"{roles[0].lower()}@contoso.example", roles, ca)
        for path in (page_path(env), "/api/portal/writeback-failures"):
            answer = other.get(path)
            assert answer.status_code == 403 and 'id="error-code">ROLE_MISSING<' in answer.text, (roles, path)
        assert problem_code(other.get(f"/api/config/environments/{env.id}/writeback-failures")) == "ROLE_MISSING"
        posted = other.send("POST", f"/api/config/environments/{env.id}/writeback-failures/replay", {"all": True})
        assert posted.status_code == 403 and problem_code(posted) == "ROLE_MISSING"
        form = other.session.post(f"{runner}{page_path(env)}/replay", allow_redirects=False,
                                  data={"csrf_token": other.csrf, "all": "1"})
        assert form.status_code == 403
    approver_home = PortalUser(runner, "analyst@contoso.example", ("Approver",), ca).get("/api/portal/approvals")
    assert "Write-back failures" not in approver_home.text
    assert app.repos.visit_events.get(event.appointment_key, event.id).writeback == "failed"  # nothing replayed


def test_a_replay_without_the_csrf_token_is_refused_and_changes_nothing(
        app: Any, env: Any, admin: PortalUser, service_settings: dict[str, str]):
    event = refused_writeback(app, env, service_settings, csn=new_csn())
    form = admin.session.post(f"{admin.base}{page_path(env)}/replay", allow_redirects=False,
                              data={"event_id": event.id, "appointment_key": event.appointment_key})
    assert form.status_code == 403 and 'id="error-code">CSRF_FAILED<' in form.text
    api = admin.send("POST", f"/api/config/environments/{env.id}/writeback-failures/replay",
                     {"eventId": event.id, "appointmentKey": event.appointment_key}, csrf=False)
    assert api.status_code == 403 and problem_code(api) == "CSRF_FAILED"
    assert app.repos.visit_events.get(event.appointment_key, event.id).writeback == "failed"
    assert not [e for e in audit_entries(admin, env) if event.id in e["after"]["outcomes"]]


def test_a_replay_submitted_twice_writes_the_event_to_epic_exactly_once_and_is_audited(
        app: Any, env: Any, admin: PortalUser, service_settings: dict[str, str]):
    csn = new_csn()
    event = refused_writeback(app, env, service_settings, csn=csn, participant_id="E1001")
    epic, ca = service_settings["EPIC_STANDIN_URL"], service_settings["REQUESTS_CA_BUNDLE"]
    assert epic_status_calls(epic, ca, csn) == []  # the refused call was not recorded as received

    first = replay_form(admin, env, event)
    second = replay_form(admin, env, event)  # a double submit (the same form sent again)
    assert first.status_code == second.status_code == 303
    shown = admin.get(first.headers["Location"])
    assert 'id="replay-result"' in shown.text
    assert f'<li data-outcome="requeued">Connected, Clinician, appointment <code>{csn}</code>: queued to be written ' \
           'to Epic again</li>' in shown.text
    assert "ops-admin@contoso.example" in shown.text and event.id not in rows(shown.text)  # gone from the list
    assert 'data-outcome="already-queued"' in admin.get(second.headers["Location"]).text

    drain_writeback(app, event.appointment_key)
    calls = epic_status_calls(epic, ca, csn)
    assert [(c["ExternalID"], c["ConnectionStatus"]) for c in calls] == [("E1001", "1")]
    assert app.repos.visit_events.get(event.appointment_key, event.id).writeback == "written"

    third = admin.send("POST", f"/api/config/environments/{env.id}/writeback-failures/replay",
                       {"eventId": event.id, "appointmentKey": event.appointment_key})
    assert third.status_code == 200 and third.json()["outcomes"] == {event.id: "already-written"}
    drain_writeback(app, event.appointment_key)
    assert len(epic_status_calls(epic, ca, csn)) == 1

    mine = [e for e in audit_entries(admin, env) if event.id in e["after"]["outcomes"]]
    assert [e["after"]["outcomes"][event.id] for e in reversed(mine)] == [
        "requeued", "already-queued", "already-written"]
    assert {e["actor"] for e in mine} == {"ops-admin@contoso.example"}
    assert mine[-1]["before"]["events"] == [{"eventId": event.id, "appointmentKey": event.appointment_key,
                                             "appointmentId": csn, "event": "connected", "role": "provider",
                                             "state": "failed"}]


def test_replaying_an_unknown_event_or_one_of_another_environment_is_a_clear_problem(
        app: Any, env: Any, admin: PortalUser, service_settings: dict[str, str]):
    api = admin.send("POST", f"/api/config/environments/{env.id}/writeback-failures/replay",
                     {"eventId": "0" * 32, "appointmentKey": f"{env.id}|123"})
    assert api.status_code == 404 and problem_code(api) == "EVENT_NOT_FOUND"
    assert "Reload the list" in api.json()["detail"]
    other = make_environment(app, f"wbq-{uuid.uuid4().hex[:8]}")
    foreign = VisitEvent(id=uuid.uuid4().hex, appointment_key=f"{other.id}|{new_csn()}", environment_id=other.id,
                         appointment_id="1", type="connected", role="patient", participant_id="patient",
                         at_utc=datetime.now(UTC), writeback="failed", writeback_reason="epic_http_400")
    app.repos.visit_events.create_once(foreign)
    page = replay_form(admin, env, foreign)
    assert page.status_code == 404 and 'id="error-code">EVENT_NOT_FOUND<' in page.text
    assert "Back to the write-back failures" in page.text
    assert app.repos.visit_events.get(foreign.appointment_key, foreign.id).writeback == "failed"
    bad = admin.send("POST", f"/api/config/environments/{env.id}/writeback-failures/replay", {"eventId": "x"})
    assert bad.status_code == 422 and problem_code(bad) == "INVALID"
    unknown_env = admin.get("/api/config/environments/no-such-env/writeback-failures")
    assert unknown_env.status_code == 404 and problem_code(unknown_env) == "NOT_FOUND"


def test_an_event_that_may_already_be_in_epic_is_replayed_only_alone_after_a_check(
        app: Any, env: Any, admin: PortalUser, service_settings: dict[str, str]):
    event = refused_writeback(app, env, service_settings, csn=new_csn())
    event = app.repos.visit_events.update(event, writeback="unknown", writeback_reason="outcome_unknown_worker_died")

    page = admin.get(page_path(env))
    assert f'id="checked-{event.id}"' in page.text
    refused = replay_form(admin, env, event)
    assert refused.status_code == 409
    assert f'<a href="#checked-{event.id}">This status may already be in Epic' in refused.text
    everything = admin.send("POST", f"/api/config/environments/{env.id}/writeback-failures/replay", {"all": True})
    assert everything.json()["outcomes"][event.id] == "check-epic-first"
    assert app.repos.visit_events.get(event.appointment_key, event.id).writeback == "unknown"

    checked = replay_form(admin, env, event, checked_in_epic="on")
    assert checked.status_code == 303
    assert app.repos.visit_events.get(event.appointment_key, event.id).writeback == "pending"


def test_replay_all_replays_each_failure_once_then_there_is_nothing_to_replay(
        app: Any, env: Any, admin: PortalUser, service_settings: dict[str, str]):
    first = refused_writeback(app, env, service_settings, csn=new_csn())
    second = refused_writeback(app, env, service_settings, csn=new_csn(), participant_id="patient", role="patient")
    path = f"/api/config/environments/{env.id}/writeback-failures/replay"
    answer = admin.send("POST", path, {"all": True})
    assert answer.status_code == 200 and answer.json()["auditId"]
    outcomes = answer.json()["outcomes"]
    assert outcomes[first.id] == outcomes[second.id] == "requeued"
    again = admin.send("POST", path, {"all": True}).json()
    assert first.id not in again["outcomes"] and second.id not in again["outcomes"]
    page = admin.get(page_path(env))
    assert first.id not in rows(page.text) and second.id not in rows(page.text)


def test_replay_flags_must_be_json_booleans_and_an_empty_replay_all_is_still_audited(
        app: Any, admin: PortalUser) -> None:
    quiet = make_environment(app, f"wbq-{uuid.uuid4().hex[:8]}")  # nothing ever failed here
    path = f"/api/config/environments/{quiet.id}/writeback-failures/replay"
    for wrong in ({"all": "yes"}, {"all": 1}, {"all": "true"}, {"eventId": "e", "appointmentKey": "k",
                                                               "checkedInEpic": "on"}):
        refused = admin.send("POST", path, wrong)
        assert refused.status_code == 422 and problem_code(refused) == "INVALID", wrong
        assert "must be true or false" in refused.text
    assert not app.portal.audit.for_environment(quiet.id)  # refused: nothing done, nothing audited

    empty = admin.send("POST", path, {"all": True})
    assert empty.status_code == 200 and empty.json()["outcomes"] == {}
    [entry] = app.portal.audit.for_environment(quiet.id)
    assert empty.json()["auditId"] == entry.id and entry.actor_name == "ops-admin@contoso.example"
    assert entry.summary == "Asked to replay all write-back failures: there was nothing to replay"


def test_write_back_settings_problems_are_shown_with_a_link_to_fix_them_and_refused_on_save(
        app: Any, admin: PortalUser, runner: str, service_settings: dict[str, str]):
    from lib.models import SmsSettings

    env_id = f"wbs-{uuid.uuid4().hex[:8]}"  # otherwise valid: only its write-back settings are wrong
    broken = make_environment(app, env_id, fhir_base_urls=(f"https://ehr.example/{env_id}/api/FHIR/R4",),
                              sms=SmsSettings(), writeback_status_codes={"connected": "one and only"})
    page = admin.get(page_path(broken))
    assert page.status_code == 200 and 'id="settings-problems"' in page.text
    assert "Write-back status code for &#39;connected&#39; must be 1-16 letters or digits." in page.text
    assert f'href="/api/portal/environments/{broken.id}/edit#writeback_status_codes"' in page.text
    assert 'id="no-failures"' in page.text  # the empty state
    edit = admin.get(f"/api/portal/environments/{broken.id}/edit")
    assert 'id="writeback_status_codes"' in edit.text
    refused = admin.send("PATCH", f"/api/config/environments/{broken.id}",
                         {"writeback_status_codes": {"connectd": "1"}, "writeback_retry_horizon_minutes": 1})
    assert refused.status_code == 422
    fields = {e["field"] for e in refused.json()["errors"]}
    assert fields == {"writeback_status_codes", "writeback_retry_horizon_minutes"}
    fixed = admin.send("PATCH", f"/api/config/environments/{broken.id}", {"writeback_status_codes": {"connected": "1"}})
    assert fixed.status_code == 200, fixed.text
    assert 'id="settings-ok"' in admin.get(page_path(broken)).text


def test_an_event_being_written_right_now_is_left_alone(app: Any, env: Any, service_settings: dict[str, str]):
    from lib.operations import poison

    event = refused_writeback(app, env, service_settings, csn=new_csn())
    sending = app.repos.visit_events.update(event, writeback="sending", claim_id="worker-1")
    assert poison.replay(app, event.id, event.appointment_key) == "in-progress"
    after = app.repos.visit_events.get(event.appointment_key, event.id)
    assert (after.writeback, after.claim_id, after.etag) == ("sending", "worker-1", sending.etag)
    assert drain_writeback(app, event.appointment_key) == []  # nothing was enqueued


def test_a_message_the_queue_gave_up_on_is_listed_and_replayed_once(
        app: Any, env: Any, admin: PortalUser, service_settings: dict[str, str]):
    from azure.core.exceptions import ResourceExistsError

    from lib.models import Appointment
    from lib.operations import poison
    from lib.operations.queues import peek, queue_client, send

    poison_queue = queue_client(app.settings, poison.POISON_QUEUE)
    with contextlib.suppress(ResourceExistsError):
        poison_queue.create_queue()
    poison_queue.clear_messages()  # a peek sees 32 messages at most
    csn = new_csn()
    start = datetime.now(UTC).replace(microsecond=0)
    visit = Appointment(env.id, csn, "booked", start, start, 30, "America/New_York")
    event = app.visit_events.record(visit, event_type="disconnected", role="patient", participant_id="patient",
                                    attempt="1")
    app.queues.client("visit-events").clear_messages()  # the host gave up on it: its message is in the poison queue
    send(poison_queue, {"id": event.id, "appointmentKey": event.appointment_key, "correlationId": "corr-p"})

    listed = admin.get(f"/api/config/environments/{env.id}/writeback-failures").json()["failures"]
    mine = next(f for f in listed if f["eventId"] == event.id)
    assert (mine["state"], mine["event"], mine["role"], mine["participant"], mine["appointmentId"]) == (
        "queued", "disconnected", "patient", None, csn)
    assert mine["reasonText"] == "the queue gave up on it; its event has not been marked yet"

    path = f"/api/config/environments/{env.id}/writeback-failures/replay"
    body = {"eventId": event.id, "appointmentKey": event.appointment_key}
    assert admin.send("POST", path, body).json()["outcomes"] == {event.id: "requeued"}
    assert admin.send("POST", path, body).json()["outcomes"] == {event.id: "already-queued"}
    assert [m for m in peek(poison_queue) if m.body and m.body.get("id") == event.id] == []
    drain_writeback(app, event.appointment_key)
    calls = epic_status_calls(service_settings["EPIC_STANDIN_URL"], service_settings["REQUESTS_CA_BUNDLE"], csn)
    assert [(c["ExternalID"], c["ConnectionStatus"]) for c in calls] == [("patient", "2")]
