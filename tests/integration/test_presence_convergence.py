"""Presence -> Epic write-back when the roster is not one clean sequence: one person with several meeting
identities, notifications delivered out of order or all at once, and visits longer than the kept roster
history. The Graph stand-in seals the notifications, the dev runner applies them, the real write-back trigger
calls the Epic stand-in; the assertions are what Epic received.
"""

# ruff: noqa: F811  (the test functions take the module fixtures imported below by name)
from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.integration.test_presence import (  # noqa: F401  (module fixtures: the runner, the environment)
    CLIN,
    CLINICIAN,
    PAT,
    PATIENT_ACS,
    control,
    drain,
    empty_work_queue,
    env,
    epic_calls,
    new_visit,
    per_participant,
    runner,
    script,
    urls,
)

pytestmark = pytest.mark.integration


# ---- helpers ----------------------------------------------------------------------------------------------
def register_patient_device(app: Any, appointment: Any) -> dict[str, str]:
    """Another ACS identity of the same patient (a second device, a reload, a relative's phone), registered as
    the join page does for each load."""
    acs = f"8:acs:{uuid.uuid4()}"
    now = datetime.now(UTC)
    app.participant_identities.register(acs, appointment.key, "patient", expires=now + timedelta(days=1), now=now)
    return {"acs": acs}


def roster_participant(identity: dict[str, Any], *, lobby: bool = False) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:12], "isInLobby": lobby, "info": {"identity": identity}}


CLIN_IN = {"user": {"id": CLINICIAN}}
PATIENT_IN = {"azureCommunicationServicesUser": {"id": PATIENT_ACS}}
GUEST_IN = {"guest": {"id": "guest-1"}}


def sealed_roster(app: Any, urls: dict[str, str], appointment: Any, at: datetime,
                  identities: list[dict[str, Any]]) -> dict[str, Any]:
    """A genuine, sealed ``rosterUpdated`` delivery for the visit's subscription."""
    from lib.store.graph_subscriptions import subscription_doc_id

    sub = app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))
    event = {"@odata.type": "#microsoft.graph.callEvent", "id": str(uuid.uuid4()), "callEventType": "rosterUpdated",
             "eventDateTime": at.isoformat().replace("+00:00", "Z"),
             "participants": [roster_participant(i) for i in identities]}
    return control(urls, "graph", "POST", "notifications/sealed", {"subscriptionId": sub.graph_id,
                                                                   "callEvent": event})


def post(urls: dict[str, str], body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{urls['runner']}/api/notifications/graph", json=body, timeout=60)


def each_written_once(app: Any, urls: dict[str, str], appointment: Any) -> bool:
    """Epic got exactly one call per event recorded ``written`` (no event sent twice, none sent unrecorded)."""
    written = [e for e in app.repos.visit_events.for_appointment(appointment.key) if e.writeback == "written"]
    return len(epic_calls(urls, appointment.appointment_id)) == len(written)


def live(app: Any, appointment: Any, role: str) -> list[str]:
    return [e.type for e in app.repos.visit_events.for_appointment(appointment.key)
            if e.role == role and e.writeback != "superseded"]


# ---- F1: one participant, several identities -----------------------------------------------------------
@pytest.mark.parametrize(("steps", "expected"), [
    pytest.param(["join A", "join B", "leave A", "leave B"], ["1", "2"], id="two-devices-overlap"),
    pytest.param(["join A", "join B", "leave B", "leave A"], ["1", "2"], id="second-device-leaves-first"),
    pytest.param(["join A", "join B", "leave A", "join A", "leave B", "leave A"], ["1", "2"],
                 id="reload-new-identity-before-old-leaves"),
    pytest.param(["join A", "leave A", "join B", "leave B"], ["1", "2", "1", "2"],
                 id="reload-new-identity-after-old-left"),
    pytest.param(["join A", "lobby B", "leave A", "admit B", "leave B"], ["1", "2", "1", "2"],
                 id="relative-waits-in-lobby-after-patient-left"),
    pytest.param(["join A", "lobby B", "admit B", "leave A", "leave B"], ["1", "2"],
                 id="relative-admitted-while-patient-in"),
])
def test_a_patient_with_several_identities_is_one_participant_for_epic(
        app: Any, env: Any, urls: dict[str, str], steps: list[str], expected: list[str]) -> None:
    appointment = new_visit(app, env)
    devices = {"A": PAT, "B": register_patient_device(app, appointment)}
    actions = {"join": {"action": "join"}, "lobby": {"action": "join", "lobby": True}, "admit": {"action": "admit"},
               "leave": {"action": "leave"}}
    scripted = [{"action": "start"}, {"action": "join", "participant": CLIN}]
    for step in steps:
        verb, device = step.split()
        scripted.append({**actions[verb], "participant": devices[device]})
    scripted += [{"action": "leave", "participant": CLIN}, {"action": "end"}]
    assert {d["status"] for d in script(urls, appointment, scripted)} == {202}
    drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                             "patient": expected}
    assert each_written_once(app, urls, appointment)


def test_a_clinician_signed_in_with_two_entra_accounts_is_one_participant(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    """Two Entra accounts of one clinician both mapped to EHR user E3003 (a sign-in with each)."""
    from lib.store.users import UserMapping

    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    appointment = new_visit(app, env)
    app.users.put(UserMapping(env.id, "E3003", first, datetime.now(UTC)))
    script(urls, appointment, [{"action": "start"}, {"action": "join", "participant": {"user": first}},
                               {"action": "join", "participant": PAT}])
    app.users.put(UserMapping(env.id, "E3003", second, datetime.now(UTC)))  # the later sign-in, other account
    later = datetime.now(UTC).replace(microsecond=0)
    steps = [{"action": "join", "participant": {"user": second}}, {"action": "leave", "participant": {"user": first}},
             {"action": "leave", "participant": {"user": second}}, {"action": "leave", "participant": PAT},
             {"action": "end"}]
    for i, step in enumerate(steps):
        step["at"] = (later + timedelta(seconds=i + 1)).isoformat().replace("+00:00", "Z")
    assert {d["status"] for d in script(urls, appointment, steps)} == {202}
    drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E3003": ["1", "2"],
                                                                             "patient": ["1", "2"]}


def test_an_interpreter_registered_as_one_person_on_two_identities_is_one_interpreter(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    appointment = new_visit(app, env)
    now = datetime.now(UTC)
    phone, laptop, colleague = (f"8:acs:{uuid.uuid4()}" for _ in range(3))
    for acs, person in ((phone, "interp-link-1"), (laptop, "interp-link-1"), (colleague, "interp-link-2")):
        app.participant_identities.register(acs, appointment.key, "interpreter", expires=now + timedelta(days=1),
                                            now=now, person=person)
    script(urls, appointment, [
        {"action": "start"}, {"action": "join", "participant": CLIN},
        {"action": "join", "participant": {"acs": phone}}, {"action": "join", "participant": {"acs": laptop}},
        {"action": "join", "participant": {"acs": colleague}}, {"action": "leave", "participant": {"acs": phone}},
        {"action": "leave", "participant": {"acs": laptop}}, {"action": "leave", "participant": {"acs": colleague}},
        {"action": "leave", "participant": CLIN}, {"action": "end"}])

    interpreters: dict[str, list[str]] = {}
    for e in app.repos.visit_events.for_appointment(appointment.key):
        if e.role == "interpreter" and e.writeback != "superseded":
            interpreters.setdefault(e.participant_id, []).append(e.type)
            assert e.participant_ref and e.participant_id == f"interpreter:{e.participant_ref}"
    assert sorted(interpreters.values()) == [["connected", "disconnected"], ["connected", "disconnected"]]


def test_the_call_record_of_a_patient_on_two_devices_adds_one_stay(app: Any, env: Any, urls: dict[str, str]) -> None:
    """The roster missed the whole visit; the call record has one session per device (overlapping)."""
    appointment = new_visit(app, env)
    second = register_patient_device(app, appointment)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=15)
    at = [(t + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in range(10)]
    script(urls, appointment, [
        {"action": "start", "at": at[0]}, {"action": "join", "participant": CLIN, "at": at[0]},
        {"action": "join", "participant": PAT, "at": at[1]}, {"action": "join", "participant": second, "at": at[2]},
        {"action": "leave", "participant": PAT, "at": at[4]}, {"action": "leave", "participant": second, "at": at[6]},
        {"action": "leave", "participant": CLIN, "at": at[7]}, {"action": "end", "at": at[7]}], delivery="drop")
    assert app.call_records.settle(appointment.key).outcome == "settled"
    drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                             "patient": ["1", "2"]}
    patient = [(e.type, e.at_utc) for e in app.repos.visit_events.for_appointment(appointment.key)
               if e.role == "patient"]
    assert patient == [("connected", t + timedelta(minutes=1)), ("disconnected", t + timedelta(minutes=6))]


# ---- F9: out-of-order deliveries converge -----------------------------------------------------------------
#: The real sequence: T1 clinician in; T2 patient joins; T3 patient drops; T4 patient rejoins and stays.
REAL = {1: [CLIN_IN], 2: [CLIN_IN, PATIENT_IN], 3: [CLIN_IN], 4: [CLIN_IN, PATIENT_IN]}
#: In order, reversed, and every order where the rejoin (T4) comes before the join (T2) and the drop (T3) last.
ORDERS = [(1, 2, 3, 4), (4, 3, 2, 1), (1, 4, 2, 3), (4, 1, 2, 3), (4, 2, 1, 3), (4, 2, 3, 1)]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(map(str, o)) for o in ORDERS])
def test_any_delivery_order_of_one_roster_sequence_gives_epic_exactly_that_sequence(
        app: Any, env: Any, urls: dict[str, str], order: tuple[int, ...]) -> None:
    """Graph's retries reorder the four notifications; all arrive before the write-back runs."""
    appointment = new_visit(app, env)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    for n in order:
        assert post(urls, sealed_roster(app, urls, appointment, t + timedelta(minutes=n), REAL[n])).status_code == 202
    drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1"],
                                                                             "patient": ["1", "2", "1"]}
    assert live(app, appointment, "patient") == ["connected", "disconnected", "connected"]


#: Deliveries with the write-back running at each "|".
SCHEDULES = {"1-4-2|3": ["1", "2", "1"], "1-4|2-3": ["1"], "2-4|3-1": ["1", "2", "1"], "4-2|1-3": ["1", "2", "1"],
             "3-1-4-2|": ["1", "2", "1"], "1-2|4-3": ["1", "2", "1"]}


@pytest.mark.parametrize(("schedule", "expected"), SCHEDULES.items(), ids=SCHEDULES.keys())
def test_out_of_order_deliveries_with_the_write_back_running_between_them_end_on_the_true_state(
        app: Any, env: Any, urls: dict[str, str], schedule: str, expected: list[str]) -> None:
    """Epic may skip statuses that were already out of date when they arrived (a later one was written), but
    gets each event once, in time order, and ends on "connected"."""
    appointment = new_visit(app, env)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    for part in schedule.replace("|", "-|-").split("-"):
        if part == "|":
            drain(app, appointment.key)
        elif part:
            n = int(part)
            sealed = sealed_roster(app, urls, appointment, t + timedelta(minutes=n), REAL[n])
            assert post(urls, sealed).status_code == 202
    drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id))["patient"] == expected
    assert each_written_once(app, urls, appointment)


# ---- F2: more roster updates than the kept history ------------------------------------------------------
def test_a_visit_with_more_roster_updates_than_the_kept_history_writes_each_transition_once(
        app: Any, env: Any, urls: dict[str, str]) -> None:
    """A guest flickers in and out 12 times with a history cap of 6 snapshots (the real cap is 300): the
    clinician and the patient, in throughout, are connected once and disconnected once."""
    from lib.presence.roster import RosterService

    roster = RosterService(presence=app.presence_repo, visit_events=app.repos.visit_events, users=app.users,
                           identities=app.participant_identities, queues=app.queues, clock=app.clock,
                           max_snapshots=6)
    appointment = new_visit(app, env)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    rosters = [[CLIN_IN], [CLIN_IN, PATIENT_IN]]
    rosters += [[CLIN_IN, PATIENT_IN, GUEST_IN] if i % 2 == 0 else [CLIN_IN, PATIENT_IN] for i in range(24)]
    rosters += [[CLIN_IN], []]
    for i, identities in enumerate(rosters):
        roster.apply(appointment.key, {"callEventType": "rosterUpdated", "id": f"e{i}",
                                       "eventDateTime": (t + timedelta(seconds=10 * i)).isoformat(),
                                       "participants": [roster_participant(p) for p in identities]})
    # a redelivery of an update older than the kept history changes nothing
    assert roster.apply(appointment.key, {"callEventType": "rosterUpdated", "id": "late",
                                          "eventDateTime": (t + timedelta(seconds=15)).isoformat(),
                                          "participants": [roster_participant(CLIN_IN)]}) == []
    drain(app, appointment.key)

    stored = app.presence_repo.get(appointment.key)
    assert len(stored.snapshots) == 6 and stored.baseline is not None
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                             "patient": ["1", "2"]}
    assert sorted(live(app, appointment, "other")) == ["connected"] * 12 + ["disconnected"] * 12


# ---- F10: a burst of concurrent notifications for one visit ------------------------------------------------
def flicker(app: Any, urls: dict[str, str], appointment: Any, count: int) -> list[dict[str, Any]]:
    """``count`` sealed rosters 10 s apart: the clinician stays, a guest is in on every odd one."""
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    return [sealed_roster(app, urls, appointment, t + timedelta(seconds=10 * i),
                          [CLIN_IN, GUEST_IN] if i % 2 else [CLIN_IN]) for i in range(count)]


def redeliver_until_applied(urls: dict[str, str], bodies: list[dict[str, Any]],
                            answers: list[requests.Response]) -> None:
    """What Graph does with a 503: deliver the same notification again (here at once, up to 5 times)."""
    for body, answer in zip(bodies, answers, strict=True):
        status = answer.status_code
        for _ in range(5):
            if status == 202:
                break
            status = post(urls, body).status_code
        assert status == 202


def test_a_burst_of_concurrent_notifications_is_applied_or_deferred_never_a_500(
        app: Any, env: Any, urls: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    appointment = new_visit(app, env)
    bodies = flicker(app, urls, appointment, 16)
    caplog.set_level(logging.WARNING)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: post(urls, b), bodies))

    assert {a.status_code for a in answers} <= {202, 503}, [a.text for a in answers]
    deferred = [a for a in answers if a.status_code == 503]
    assert all(a.headers.get("Retry-After") == "5" for a in deferred)
    assert not [r for r in caplog.records if r.exc_info], "no traceback in the logs"
    assert len([r for r in caplog.records if "roster kept changing" in r.getMessage()]) == len(deferred)
    redeliver_until_applied(urls, bodies, answers)
    drain(app, appointment.key)

    assert sorted(live(app, appointment, "other")) == ["connected"] * 8 + ["disconnected"] * 7
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1"]}


def test_a_notification_that_keeps_losing_the_race_is_answered_503_with_retry_after_and_one_warning(
        app: Any, env: Any, urls: dict[str, str], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer changes the visit's presence document before each of our saves (a real ETag conflict
    in the store, every attempt): 503, ``Retry-After``, one warning; Graph's redelivery then applies it."""
    appointment = new_visit(app, env)
    (first, second) = flicker(app, urls, appointment, 2)
    assert post(urls, first).status_code == 202
    repo = app.presence_repo
    real_save = repo.save
    monkeypatch.setattr("lib.presence.roster.BACKOFF_CAP", 0.01)

    def save_after_another_writer(presence: Any) -> Any:
        current = repo.get(presence.appointment_key)
        real_save(current)  # the other notification's write: a new ETag
        return real_save(presence)

    monkeypatch.setattr(repo, "save", save_after_another_writer)
    caplog.set_level(logging.WARNING)
    answer = post(urls, second)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json()["title"] == "Try again"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(" correlation=")[0] for r in warnings] == [
        "graph notification deferred: the visit's roster kept changing"]
    assert not [r for r in caplog.records if r.exc_info]

    monkeypatch.setattr(repo, "save", real_save)
    assert post(urls, second).status_code == 202
    assert live(app, appointment, "other") == ["connected"]
