"""Presence from the meeting's roster, end to end: the Graph stand-in subscribes our dev-runner endpoint,
delivers encrypted call events as a scripted roster changes, and the write-back (the real queue trigger on the
real Azurite messages) calls the Epic stand-in. Time moves through the app's clock file.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.integration.portal_client import served_app
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

CLINICIAN, SECOND_CLINICIAN = str(uuid.uuid4()), str(uuid.uuid4())
PATIENT_ACS, INTERPRETER_ACS = f"8:acs:{uuid.uuid4()}", f"8:acs:{uuid.uuid4()}"


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    """The app on the dev runner at ``PUBLIC_BASE_URL`` (timers and queues driven by the tests)."""
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_presence_tests") as public:
        yield public


@pytest.fixture(scope="module")
def urls(service_settings: dict[str, str]) -> dict[str, str]:
    return {"epic": service_settings["EPIC_STANDIN_URL"], "iss": service_settings["EPIC_STANDIN_ISS"],
            "graph": service_settings["GRAPH_STANDIN_URL"], "ca": service_settings["REQUESTS_CA_BUNDLE"],
            "runner": service_settings["PUBLIC_BASE_URL"]}


def control(urls: dict[str, str], service: str, method: str, path: str, body: Any = None) -> Any:
    resp = requests.request(method, f"{urls[service]}/_standin/{path}", json=body, verify=urls["ca"], timeout=30)
    assert resp.status_code < 300, resp.text
    return resp.json() if resp.content else None


@pytest.fixture(scope="module")
def env(app: Any, runner: Any, urls: dict[str, str]) -> Any:
    """An environment whose Epic client is registered with the stand-in (write-back token) and whose two
    clinicians signed in once (EHR user ID -> Entra object ID)."""
    from lib.store.users import UserMapping

    environment_id = f"pres-{uuid.uuid4().hex[:8]}"
    for other in app.repos.environments.all():  # one environment per FHIR base URL: take the stand-in's
        if urls["iss"] in other.fhir_base_urls:
            app.repos.environments.put(dataclasses.replace(
                other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != urls["iss"])))
    client_id = f"vv-{uuid.uuid4().hex[:8]}"
    organizer = str(uuid.uuid4())
    control(urls, "epic", "POST", "clients", {
        "client_id": client_id, "jwks_url": f"{urls['runner']}/api/.well-known/jwks.json",
        "redirect_uris": [f"{urls['runner']}/api/launch/callback"]})
    control(urls, "graph", "POST", "users", {"id": organizer, "policy": True})
    now = datetime.now(UTC)
    app.users.put(UserMapping(environment_id, "E1001", CLINICIAN, now))
    app.users.put(UserMapping(environment_id, "E2002", SECOND_CLINICIAN, now))
    return make_environment(app, environment_id, fhir_base_urls=(urls["iss"],), epic_client_id=client_id,
                            fallback_organizer_id=organizer, provider_signin=False)


@pytest.fixture(autouse=True)
def empty_work_queue(app: Any) -> Iterator[None]:
    """Each test starts and ends with empty ``visit-events`` and ``call-records`` queues: the clock-driven
    sweeps re-enqueue every overdue event of the store (other tests' too), which would bury the next test's
    messages (and other modules' queue runners)."""
    for queue in ("visit-events", "call-records"):
        app.queues.client(queue).clear_messages()
    yield
    for queue in ("visit-events", "call-records"):
        app.queues.client(queue).clear_messages()


def new_visit(app: Any, env: Any) -> Any:
    """A booked visit with its meeting (created through Graph, which subscribes our endpoint at once) and the
    patient's and interpreter's ACS identities registered as the join page does."""
    from lib.models import Appointment

    csn = str(uuid.uuid4().int % 10**10)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    appointment = app.repos.appointments.create(Appointment(env.id, csn, "booked", start, start + timedelta(minutes=30),
                                                            30, "America/New_York"))
    appointment = app.meetings.ensure(env, appointment)
    expires = start + timedelta(days=1)
    app.participant_identities.register(PATIENT_ACS, appointment.key, "patient", expires=expires, now=start)
    app.participant_identities.register(INTERPRETER_ACS, appointment.key, "interpreter", expires=expires, now=start)
    return appointment


def script(urls: dict[str, str], appointment: Any, steps: list[dict[str, Any]], delivery: str = "normal") -> list:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10 * len(steps))
    for i, step in enumerate(steps):
        step.setdefault("at", (base + timedelta(seconds=10 * i)).isoformat().replace("+00:00", "Z"))
    return control(urls, "graph", "POST", "call-events", {"joinWebUrl": appointment.meeting.join_url, "steps": steps,
                                                          "delivery": delivery})["deliveries"]


def drain(app: Any, appointment_key: str, *, rounds: int = 50) -> int:
    """Run the real ``writeback`` trigger on this visit's visible ``visit-events`` messages until none are left."""
    from azure.functions.queue import QueueMessage

    from functions.writeback import writeback
    from lib.queues import decode

    handler = writeback.build().get_user_function()
    client = app.queues.client("visit-events")
    handled = 0
    for _ in range(rounds):  # other visits' messages stay invisible for 5 s, so each round sees new ones
        received = list(client.receive_messages(max_messages=32, visibility_timeout=5))
        if not received:
            break
        for message in received:
            if decode(message.content).get("appointmentKey") != appointment_key:
                continue
            handler(QueueMessage(id=message.id, body=message.content.encode(), dequeue_count=message.dequeue_count))
            client.delete_message(message)
            handled += 1
    return handled


def epic_calls(urls: dict[str, str], csn: str) -> list[tuple[str, str]]:
    return [(c["ExternalID"], c["ConnectionStatus"]) for c in control(urls, "epic", "GET", "connection-status")
            if c["ConferenceID"] == csn]


def per_participant(calls: list[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for who, status in calls:
        found.setdefault(who, []).append(status)
    return found


CLIN = {"user": CLINICIAN}
CLIN2 = {"user": SECOND_CLINICIAN}
PAT = {"acs": PATIENT_ACS}
INTERP = {"acs": INTERPRETER_ACS}


def visit_steps() -> list[dict[str, Any]]:
    """Clinician joins; the patient waits in the lobby, is admitted, drops, rejoins; an interpreter and a second
    clinician come and go; the call ends."""
    return [
        {"action": "start"},
        {"action": "join", "participant": CLIN},
        {"action": "join", "participant": PAT, "lobby": True},
        {"action": "admit", "participant": PAT},
        {"action": "join", "participant": INTERP},
        {"action": "leave", "participant": PAT},
        {"action": "join", "participant": PAT},
        {"action": "join", "participant": CLIN2},
        {"action": "leave", "participant": CLIN2},
        {"action": "end"},
    ]


def test_the_meeting_is_subscribed_when_it_is_created(app: Any, env: Any, urls: dict[str, str]) -> None:
    from lib.store.graph_subscriptions import subscription_doc_id

    appointment = new_visit(app, env)
    stored = app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))
    assert stored.state == "active" and stored.graph_id
    (graph_sub,) = [s for s in control(urls, "graph", "GET", "subscriptions") if s["id"] == stored.graph_id]
    encoded = urllib.parse.quote(appointment.meeting.join_url, safe="")
    assert graph_sub["resource"] == f"/communications/onlineMeetings(joinWebUrl='{encoded}')/meetingCallEvents"
    assert graph_sub["notificationUrl"] == f"{urls['runner']}/api/notifications/graph"
    assert graph_sub["lifecycleNotificationUrl"] == f"{urls['runner']}/api/notifications/graph/lifecycle"


def test_a_scripted_roster_gives_the_exact_connect_disconnect_sequence_to_epic(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    appointment = new_visit(app, env)
    deliveries = script(urls, appointment, visit_steps())
    assert {d["status"] for d in deliveries} == {202}
    drained = drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {
        "E1001": ["1", "2"], "patient": ["1", "2", "1", "2"], "E2002": ["1", "2"]}, (drained, [
            (e.role, e.type, e.writeback, e.writeback_reason) for e in app.repos.visit_events.for_appointment(
                appointment.key)])
    events = app.repos.visit_events.for_appointment(appointment.key)
    recorded = [(e.role, e.type) for e in events if e.role in ("interpreter", "call") or e.type == "in_lobby"]
    assert sorted(recorded) == sorted([("call", "call_started"), ("patient", "in_lobby"),
                                       ("interpreter", "connected"), ("interpreter", "disconnected"),
                                       ("call", "call_ended")])
    assert all(e.writeback == "written" for e in events if e.role in ("provider", "patient")
               and e.type in ("connected", "disconnected"))
    assert not any("Stand-in" in str(e.to_doc()) for e in events)  # names never stored


def test_out_of_order_and_duplicate_notifications_write_each_event_once_in_order(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    appointment = new_visit(app, env)
    script(urls, appointment, visit_steps(), delivery="hold")
    released = control(urls, "graph", "POST", "call-events/release", {"order": "reverse"})["statuses"]
    assert set(released) == {202}
    # a second visit segment, after the call ended (stamped explicitly: on a fast machine both scripts run within
    # one second, and script()'s own stamps would put this join at the very instant of the end)
    rejoin_at = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    script(urls, appointment, [{"action": "join", "participant": CLIN, "at": rejoin_at}], delivery="duplicate")
    drain(app, appointment.key)

    calls = per_participant(epic_calls(urls, appointment.appointment_id))
    assert calls["patient"] == ["1", "2", "1", "2"]
    assert calls["E2002"] == ["1", "2"]
    assert calls["E1001"] == ["1", "2", "1"]  # the late rejoin: one connect despite the duplicate delivery


def test_forged_notifications_are_refused_and_change_nothing(app: Any, env: Any, urls: dict[str, str]) -> None:
    from lib.store.graph_subscriptions import subscription_doc_id

    appointment = new_visit(app, env)
    sub = app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))
    call_event = {"@odata.type": "#microsoft.graph.callEvent", "id": str(uuid.uuid4()),
                  "callEventType": "rosterUpdated", "eventDateTime": datetime.now(UTC).isoformat(), "participants": [
                      {"id": "p1", "isInLobby": False, "info": {"identity": {"user": {"id": CLINICIAN}}}}]}
    sealed = control(urls, "graph", "POST", "notifications/sealed", {"subscriptionId": sub.graph_id,
                                                                     "callEvent": call_event})
    url = f"{urls['runner']}/api/notifications/graph"

    # Genuine validation tokens, so that each forgery fails the check it is about.
    wrong_state = dict(sealed, value=[dict(sealed["value"][0], clientState=f"{sub.id}.not-the-secret")])
    content = sealed["value"][0]["encryptedContent"]
    tampered = dict(content, dataSignature=("AAAA" if not content["dataSignature"].startswith("AAAA") else "BBBB")
                    + content["dataSignature"][4:])
    bad_signature = dict(sealed, value=[dict(sealed["value"][0], encryptedContent=tampered)])
    for forged, reason in ((wrong_state, "bad_client_state"), (bad_signature, "bad_signature")):
        answer = requests.post(url, json=forged, timeout=10)
        assert answer.status_code == 403, answer.text
        assert answer.json()["reasons"] == [reason]
    assert requests.post(url, data=b"not json", timeout=10).status_code == 400
    assert app.repos.visit_events.for_appointment(appointment.key) == []
    assert requests.post(url, json=sealed, timeout=10).status_code == 202  # the genuine one is applied
    assert [e.type for e in app.repos.visit_events.for_appointment(appointment.key)] == ["connected"]


def sealed_roster_update(app: Any, urls: dict[str, str], appointment: Any) -> dict[str, Any]:
    """A genuine delivery (encrypted by the Graph stand-in, with its validation token) of the clinician joining,
    not yet posted."""
    from lib.store.graph_subscriptions import subscription_doc_id

    sub = app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))
    call_event = {"@odata.type": "#microsoft.graph.callEvent", "id": str(uuid.uuid4()),
                  "callEventType": "rosterUpdated", "eventDateTime": datetime.now(UTC).isoformat(), "participants": [
                      {"id": "p1", "isInLobby": False, "info": {"identity": {"user": {"id": CLINICIAN}}}}]}
    return control(urls, "graph", "POST", "notifications/sealed", {"subscriptionId": sub.graph_id,
                                                                   "callEvent": call_event})


@pytest.mark.parametrize(("token_request", "reason"), [
    (None, "validation_tokens_missing"),
    ({"signer": "unpublished"}, "validation_token_unknown_key"),
    ({"signer": "unpublished_same_kid"}, "validation_token_bad_signature"),
    ({"claims": {"exp": 1_700_000_000, "nbf": 1_699_990_000, "iat": 1_699_990_000}}, "validation_token_expired"),
    ({"claims": {"aud": "00000000-0000-4000-8000-0000000000ff"}}, "validation_token_wrong_audience"),
    ({"claims": {"iss": "https://sts.windows.net/00000000-0000-4000-8000-000000000bad/"}},
     "validation_token_wrong_issuer"),
    ({"claims": {"appid": "00000000-0000-4000-8000-0000000000ee"}}, "validation_token_not_from_graph"),
    ({"claims": {"tid": "00000000-0000-4000-8000-000000000bad"}}, "validation_token_tenant_mismatch"),
])
def test_a_delivery_without_genuine_validation_tokens_is_refused_and_stores_nothing(
        app: Any, env: Any, urls: dict[str, str], token_request: dict[str, Any] | None, reason: str,
        caplog: pytest.LogCaptureFixture) -> None:
    appointment = new_visit(app, env)
    sealed = sealed_roster_update(app, urls, appointment)
    forged = {k: v for k, v in sealed.items() if k != "validationTokens"}
    if token_request is not None:
        forged["validationTokens"] = [control(urls, "graph", "POST", "validation-tokens", token_request)["token"]]
    url = f"{urls['runner']}/api/notifications/graph"
    with caplog.at_level("WARNING", logger="lib.presence.notifications"):
        answer = requests.post(url, json=forged, timeout=10)
    assert answer.status_code == 403, answer.text
    assert answer.json()["reasons"] == [reason]
    assert f"refused reason={reason}" in caplog.text
    assert not any(t in caplog.text for t in forged.get("validationTokens", []))  # no token in the logs
    assert app.repos.visit_events.for_appointment(appointment.key) == []
    assert requests.post(url, json=sealed, timeout=10).status_code == 202  # the genuine one is applied
    assert [e.type for e in app.repos.visit_events.for_appointment(appointment.key)] == ["connected"]


def test_a_rotated_identity_platform_key_is_fetched_and_its_tokens_accepted(
        app: Any, env: Any, urls: dict[str, str], clock: Any) -> None:
    appointment = new_visit(app, env)
    keys = app.identity_platform_keys
    reads = keys.reads
    new_kid = control(urls, "graph", "POST", "keys/rotate")["kid"]
    # Past the least interval between two reads of the keys (the app's clock: a read may just have happened).
    clock.set(datetime.now(UTC) + timedelta(minutes=2))
    deliveries = script(urls, appointment, [{"action": "join", "participant": CLIN}])
    assert [d["status"] for d in deliveries] == [202]
    assert keys.reads == reads + 1 and new_kid in keys.current().keys
    assert [e.type for e in app.repos.visit_events.for_appointment(appointment.key)] == ["connected"]
    # The app's Graph token, signed before the rotation, still works: the old key stays published.
    assert new_visit(app, env).meeting.join_url


def test_while_the_identity_platform_cannot_be_read_a_delivery_is_deferred_then_applied(
        app: Any, env: Any, urls: dict[str, str], clock: Any) -> None:
    appointment = new_visit(app, env)
    sealed = sealed_roster_update(app, urls, appointment)
    url = f"{urls['runner']}/api/notifications/graph"
    later = datetime.now(UTC) + timedelta(hours=25)  # past the day the last good keys stand in for
    control(urls, "graph", "POST", "faults", {"path_prefix": f"/{app.settings.graph_tenant_id}/.well-known/",
                                              "responses": [503]})
    try:
        clock.set(later)
        answer = requests.post(url, json=sealed, timeout=10)
        assert answer.status_code == 503, answer.text
        assert "signing keys" in answer.json()["detail"]
        assert app.repos.visit_events.for_appointment(appointment.key) == []
    finally:
        requests.delete(f"{urls['graph']}/_standin/faults", verify=urls["ca"], timeout=10)
    clock.set(later + timedelta(seconds=61))  # the next read is allowed a minute after the failed one
    assert requests.post(url, json=sealed, timeout=10).status_code == 202  # Graph's redelivery
    assert [e.type for e in app.repos.visit_events.for_appointment(appointment.key)] == ["connected"]


def test_the_validation_handshake_echoes_the_token_as_plain_text(urls: dict[str, str], runner: Any) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"
    answer = requests.post(f"{urls['runner']}/api/notifications/graph/lifecycle",
                           params={"validationToken": token}, timeout=10)
    assert answer.status_code == 200 and answer.text == token
    assert answer.headers["Content-Type"].startswith("text/plain")


def test_lifecycle_removed_and_reauthorization_keep_the_subscription_alive(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    from lib.store.graph_subscriptions import subscription_doc_id

    appointment = new_visit(app, env)
    repo = app.presence_subscriptions._repo
    first = repo.get(subscription_doc_id(appointment.key)).graph_id
    assert control(urls, "graph", "POST", f"subscriptions/{first}/lifecycle",
                   {"event": "subscriptionRemoved"})["status"] == 202
    second = repo.get(subscription_doc_id(appointment.key))
    assert second.state == "active" and second.graph_id != first
    assert control(urls, "graph", "POST", f"subscriptions/{second.graph_id}/lifecycle",
                   {"event": "reauthorizationRequired"})["status"] == 202
    assert control(urls, "graph", "POST", f"subscriptions/{second.graph_id}/lifecycle",
                   {"event": "missed"})["status"] == 202
    assert repo.get(subscription_doc_id(appointment.key)).missed_utc is not None
    # Still delivering to the new subscription:
    script(urls, appointment, [{"action": "join", "participant": CLIN}])
    assert [e.type for e in app.repos.visit_events.for_appointment(appointment.key)] == ["connected"]


def test_an_epic_outage_of_an_hour_ends_with_every_event_written_once_and_none_poisoned(
        app: Any, env: Any, urls: dict[str, str], clock: Any) -> None:
    appointment = new_visit(app, env)
    control(urls, "epic", "POST", "faults", {"path_prefix": "/api/epic/2018/Telehealth",
                                             "responses": [503] * 200})
    try:
        script(urls, appointment, [{"action": "join", "participant": CLIN}, {"action": "join", "participant": PAT},
                                   {"action": "leave", "participant": PAT}, {"action": "leave", "participant": CLIN}])
        start = datetime.now(UTC)
        minute = 0
        while minute <= 120:
            clock.set(start + timedelta(minutes=minute))
            if minute == 60:
                requests.delete(f"{urls['epic']}/_standin/faults", verify=urls["ca"], timeout=10)
            app.writeback.sweep(app.queues)
            drain(app, appointment.key)
            minute += 5
    finally:
        requests.delete(f"{urls['epic']}/_standin/faults", verify=urls["ca"], timeout=10)
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                              "patient": ["1", "2"]}
    events = [e for e in app.repos.visit_events.for_appointment(appointment.key) if e.writeback != "none"]
    assert {e.writeback for e in events} == {"written"}
    connects = [e for e in events if e.type == "connected"]
    assert all(e.attempts >= 2 and e.last_error == "epic_http_503" for e in connects)


def test_retry_after_from_epic_is_honoured(app: Any, env: Any, urls: dict[str, str], clock: Any) -> None:
    appointment = new_visit(app, env)
    control(urls, "epic", "POST", "faults", {"path_prefix": "/api/epic/2018/Telehealth",
                                             "responses": [{"status": 429, "retry_after": 600}]})
    start = datetime.now(UTC)
    clock.set(start)
    script(urls, appointment, [{"action": "join", "participant": CLIN}])
    drain(app, appointment.key)
    (event,) = app.repos.visit_events.for_appointment(appointment.key)
    assert event.due_utc == start + timedelta(seconds=600) and event.last_error == "epic_http_429"
    clock.set(start + timedelta(seconds=540))
    app.writeback.sweep(app.queues)
    drain(app, appointment.key)
    assert epic_calls(urls, appointment.appointment_id) == []
    clock.set(start + timedelta(seconds=700))
    app.writeback.sweep(app.queues)
    drain(app, appointment.key)
    assert epic_calls(urls, appointment.appointment_id) == [("E1001", "1")]


def test_a_redelivery_racing_a_slow_epic_writes_once(app: Any, env: Any, urls: dict[str, str]) -> None:
    from azure.functions.queue import QueueMessage

    from functions.writeback import writeback
    from lib.queues import encode

    appointment = new_visit(app, env)
    script(urls, appointment, [{"action": "join", "participant": PAT}])
    (event,) = app.repos.visit_events.for_appointment(appointment.key)
    control(urls, "epic", "POST", "faults", {"path_prefix": "/api/epic/2018/Telehealth", "responses": [{"delay": 3}]})
    body = encode({"id": event.id, "appointmentKey": event.appointment_key}).encode()
    handler = writeback.build().get_user_function()
    threads = [threading.Thread(target=handler, args=(QueueMessage(id=f"m{i}", body=body, dequeue_count=1),))
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert epic_calls(urls, appointment.appointment_id) == [("patient", "1")]
    assert app.repos.visit_events.get(event.appointment_key, event.id).writeback == "written"


def test_a_timed_out_write_is_not_resent_and_the_next_status_lands_after_it(
        app: Any, env: Any, urls: dict[str, str], clock: Any) -> None:
    """Epic (the stand-in) takes 2.5 s to apply a connect, our client gives up after 1 s: the connect is never
    sent again, the disconnect waits until the slow original has landed, and Epic ends on "disconnected"."""
    from lib.clock import SystemClock
    from lib.ehr.writeback import EpicWritebackClient
    from lib.operations.poison import list_poison
    from lib.smart.transport import HttpClient
    from lib.visits.writeback import AMBIGUOUS_SETTLE, WritebackService

    impatient = WritebackService(
        visit_events=app.repos.visit_events, environments=app.repos.environments, clock=app.clock,
        queues=app.queues, ehr=EpicWritebackClient(http=HttpClient(verify=urls["ca"], timeout=(3.05, 1.0)),
                                                   discovery=app.smart_discovery, keys=app.smart_keyring,
                                                   clock=SystemClock()))
    appointment = new_visit(app, env)
    start = datetime.now(UTC).replace(microsecond=0)
    clock.set(start)
    script(urls, appointment, [{"action": "join", "participant": PAT}, {"action": "leave", "participant": PAT}])
    written = sorted((e for e in app.repos.visit_events.for_appointment(appointment.key) if e.writeback != "none"),
                     key=lambda e: e.at_utc)
    connected, disconnected = written
    assert (connected.type, disconnected.type) == ("connected", "disconnected")
    control(urls, "epic", "POST", "faults", {"path_prefix": "/api/epic/2018/Telehealth", "responses": [{"delay": 2.5}]})
    first = impatient.write(connected.id, appointment.key)
    assert (first.outcome, first.reason) == ("unknown", "outcome_unknown_epic_timeout")
    waiting = impatient.write(disconnected.id, appointment.key)
    assert waiting.outcome == "waiting" and 110 <= (waiting.retry_in or 0) <= 121
    assert impatient.write(connected.id, appointment.key).outcome == "skipped"  # a redelivery is never resent
    time.sleep(2.5)  # meanwhile Epic applies the slow original
    clock.set(start + AMBIGUOUS_SETTLE + timedelta(seconds=1))
    assert impatient.write(disconnected.id, appointment.key).outcome == "written"
    assert epic_calls(urls, appointment.appointment_id) == [("patient", "1"), ("patient", "2")]
    # The ambiguity is where an operator looks (the portal's write-back failures page reads the same list).
    (listed,) = [p for p in list_poison(app, env.id) if p.event_id == connected.id]
    assert (listed.writeback, listed.reason) == ("unknown", "outcome_unknown_epic_timeout")


def test_a_permanent_refusal_is_failed_with_epics_reason_and_replayable(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    from lib.operations import poison

    appointment = new_visit(app, env)
    control(urls, "epic", "POST", "faults", {"path_prefix": "/api/epic/2018/Telehealth", "responses": [403]})
    script(urls, appointment, [{"action": "join", "participant": CLIN}])
    drain(app, appointment.key)
    (event,) = app.repos.visit_events.for_appointment(appointment.key)
    assert (event.writeback, event.writeback_reason) == ("failed", "epic_http_403")
    listed = [p for p in poison.list_poison(app, env.id) if p.event_id == event.id]
    assert listed and listed[0].reason == "epic_http_403"
    assert poison.replay(app, event.id, event.appointment_key) == "requeued"
    drain(app, appointment.key)
    assert epic_calls(urls, appointment.appointment_id) == [("E1001", "1")]


def test_a_reschedule_by_s13_moves_the_teams_meeting(app: Any, env: Any, urls: dict[str, str]) -> None:
    from local.siu_builder import siu
    from tests.support.calls import msa, post_hl7

    csn = str(uuid.uuid4().int % 10**9)
    now = datetime.now(UTC).replace(second=0, microsecond=0)  # HL7 times have minutes
    start = now + timedelta(days=3)
    assert msa(post_hl7(env.id, siu("S12", csn=csn, start=start, control_id=f"{csn}-1", sent=now)))[1] == "AA"
    appointment = app.repos.appointments.get(f"{env.id}|{csn}")
    appointment = app.meetings.ensure(env, appointment)
    moved = start + timedelta(hours=2)
    assert msa(post_hl7(env.id, siu("S13", csn=csn, start=moved, control_id=f"{csn}-2",
                                    sent=now + timedelta(minutes=1))))[1] == "AA"
    assert app.meeting_times.run()["updated"] >= 1

    (meeting,) = [m for m in control(urls, "graph", "GET", "meetings") if m["id"] == appointment.meeting.id]
    assert meeting["startDateTime"].startswith(moved.strftime("%Y-%m-%dT%H:%M:%S"))
    assert meeting["endDateTime"].startswith((moved + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"))
    stored = app.repos.appointments.get(appointment.key).meeting
    assert stored.start_utc == moved.isoformat() and stored.id == appointment.meeting.id
    from lib.visits.meeting_times import out_of_date

    assert not out_of_date(app.repos.appointments.get(appointment.key))  # nothing left to move


def test_two_clinicians_launching_a_new_visit_at_once_leave_no_orphan_meeting(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    from lib.models import Appointment
    from lib.teams.graph import meeting_external_id

    signed_in = dataclasses.replace(env, provider_signin=True)  # each clinician would organize their meetings
    for oid in (CLINICIAN, SECOND_CLINICIAN):
        control(urls, "graph", "POST", "users", {"id": oid, "policy": True})
    for _ in range(3):
        csn = str(uuid.uuid4().int % 10**10)
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        appointment = app.repos.appointments.create(Appointment(env.id, csn, "booked", start,
                                                                start + timedelta(minutes=20), 20, "UTC"))
        barrier = threading.Barrier(2)
        results: list[Any] = []

        def launch(ehr_user_id: str, appointment: Any = appointment, barrier: Any = barrier,
                   results: list[Any] = results) -> None:
            barrier.wait()
            results.append(app.meetings.ensure(signed_in, appointment, ehr_user_id=ehr_user_id))

        threads = [threading.Thread(target=launch, args=(u,)) for u in ("E1001", "E2002")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        external = meeting_external_id(env.id, csn)
        made = [m for m in control(urls, "graph", "GET", "meetings") if m["externalId"] == external]
        assert len(made) == 1, made
        assert {r.meeting.id for r in results} == {made[0]["id"]}


def test_the_call_record_settles_attendance_the_roster_missed_and_keeps_media_quality(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    from azure.functions.queue import QueueMessage

    from functions.call_records import call_records
    from lib.queues import encode

    appointment = new_visit(app, env)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    def at(minute: int) -> str:
        return (t + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")

    script(urls, appointment, [{"action": "start", "at": at(0)}, {"action": "join", "participant": CLIN, "at": at(0)}])
    script(urls, appointment, [{"action": "join", "participant": PAT, "at": at(1)},  # both notifications lost
                               {"action": "leave", "participant": PAT, "at": at(4)}], delivery="drop")
    script(urls, appointment, [{"action": "leave", "participant": CLIN, "at": at(6)},
                               {"action": "end", "at": at(6)}])
    control(urls, "graph", "POST", "faults", {"path_prefix": "/v1.0/communications/callRecords",
                                              "responses": [{"status": 429, "retry_after": 120}]})
    assert app.call_records.settle(appointment.key).retry_in == 120  # Graph's Retry-After

    settled = app.call_records.settle(appointment.key)
    assert (settled.outcome, settled.added_events) == ("settled", 2), (
        settled, control(urls, "graph", "GET", "subscriptions")[-1:])
    handler = call_records.build().get_user_function()  # the queue trigger: settling again adds nothing
    handler(QueueMessage(id="cr-1", body=encode({"appointmentKey": appointment.key}).encode(), dequeue_count=1))
    drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                              "patient": ["1", "2"]}
    added = [e for e in app.repos.visit_events.for_appointment(appointment.key) if e.source == "call_record"]
    assert sorted((e.type, e.at_utc) for e in added) == [("connected", t + timedelta(minutes=1)),
                                                         ("disconnected", t + timedelta(minutes=4))]
    quality = app.store.container("call_quality").read_item(item=appointment.key, partition_key=appointment.key)
    by_role = {p["role"]: p for p in quality["participants"]}
    assert by_role["patient"]["seconds_present"] == 180
    assert by_role["patient"]["audio"] == {"jitter_ms": 12.0, "packet_loss_rate": 0.004, "round_trip_ms": 45.0}
    assert by_role["provider"]["participant_id"] == "E1001" and by_role["provider"]["video"]["jitter_ms"] == 20.0


def _apply_report_updates(app: Any, appointment_key: str) -> int:
    """Apply this visit's queued ``report-updates`` messages with the app's recorder (as the queue trigger does)."""
    from lib.queues import decode
    from lib.reports.inputs import REPORT_UPDATES_QUEUE, ReportUpdate

    client = app.queues.client(REPORT_UPDATES_QUEUE)
    applied = 0
    while batch := list(client.receive_messages(max_messages=32, visibility_timeout=30)):
        for message in batch:
            update = ReportUpdate.from_message(decode(message.content.encode()))
            if update.appointment_key == appointment_key:
                app.report_recorder.apply(update)
                applied += 1
            client.delete_message(message)
    return applied


def test_a_participant_whose_session_has_two_segments_keeps_both_segments_streams(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    from lib.reports.inputs import REPORT_UPDATES_QUEUE

    app.queues.client(REPORT_UPDATES_QUEUE).clear_messages()  # nobody consumes other tests' updates here
    appointment = new_visit(app, env)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    def at(minute: int) -> str:
        return (t + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")

    good = {"audio": {"averageJitter": "PT0.010S", "averagePacketLossRate": 0.001, "averageRoundTripTime": "PT0.040S",
                      "packetUtilization": 9000}}
    poor = {"audio": {"averageJitter": "PT0.046S", "averagePacketLossRate": 0.002, "averageRoundTripTime": "PT0.050S",
                      "packetUtilization": 6000}}
    script(urls, appointment, [
        {"action": "start", "at": at(0)}, {"action": "join", "participant": CLIN, "at": at(0)},
        {"action": "join", "participant": PAT, "at": at(1), "quality": good},
        {"action": "reconnect", "participant": PAT, "at": at(3), "quality": poor},  # a second segment
        {"action": "leave", "participant": PAT, "at": at(5)},
        {"action": "leave", "participant": CLIN, "at": at(6)}, {"action": "end", "at": at(6)}])
    assert app.call_records.settle(appointment.key).outcome == "settled"
    assert _apply_report_updates(app, appointment.key) >= 1

    def patient_audio() -> list[float]:
        doc = app.store.container("report_visits").read_item(item=appointment.key, partition_key=appointment.key)
        streams = [s for s in doc["streams"].values() if (s["role"], s["media"]) == ("patient", "audio")]
        return sorted(s["avg_jitter_ms"] for s in streams)

    assert patient_audio() == [10.0, 46.0]  # each segment's stream, neither overwriting the other
    row = app.store.container("report_visits").read_item(item=appointment.key, partition_key=appointment.key)["row"]
    assert row["quality"]["by"]["patient/audio"]["avg_jitter_ms"] == 28.0 and row["quality"]["poor"] is True
    quality = app.store.container("call_quality").read_item(item=appointment.key, partition_key=appointment.key)
    patient = next(p for p in quality["participants"] if p["role"] == "patient")
    assert patient["audio"]["jitter_ms"] == 28.0 and patient["seconds_present"] == 240

    assert app.call_records.settle(appointment.key).outcome == "settled"  # the record read again
    _apply_report_updates(app, appointment.key)
    assert patient_audio() == [10.0, 46.0]  # replaced, not added
