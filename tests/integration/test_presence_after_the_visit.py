"""A visit's call-events subscription at its edges, end to end against the Graph stand-in: the call's end lost
(``missed``, dropped deliveries, nothing after the joins) still ends with the call record read and Epic told the
missing disconnects once; a subscription document whose visit is over ends without calling Graph; two timer runs
(or a ``launch-followup`` redelivery racing the timer) make one Graph subscription.

The subscription timer checks times against the system clock (Graph does), so a visit is made "over" by writing
its document's ``end_after_utc`` into the real past.
"""

from __future__ import annotations

import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_presence import (  # noqa: F401 (module fixtures: the dev runner, URLs, environment)
    CLIN,
    PAT,
    PATIENT_ACS,
    control,
    drain,
    env,
    epic_calls,
    new_visit,
    per_participant,
    runner,
    script,
    urls,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def quiet_queues(app: Any, urls: dict[str, str]) -> Iterator[None]:  # noqa: F811
    for queue in ("visit-events", "call-records"):
        app.queues.client(queue).clear_messages()
    yield
    control(urls, "graph", "DELETE", "faults")
    for queue in ("visit-events", "call-records"):
        app.queues.client(queue).clear_messages()


def past_visit(app: Any, env: Any, *, started_ago: timedelta) -> Any:  # noqa: F811
    """A 30-minute visit that started ``started_ago`` (its meeting made and subscribed now), the patient's ACS
    identity registered as the join page does."""
    from lib.models import Appointment

    csn = str(uuid.uuid4().int % 10**10)
    start = datetime.now(UTC).replace(microsecond=0) - started_ago
    appointment = app.repos.appointments.create(Appointment(env.id, csn, "booked", start, start + timedelta(minutes=30),
                                                            30, "America/New_York"))
    appointment = app.meetings.ensure(env, appointment)
    app.participant_identities.register(PATIENT_ACS, appointment.key, "patient", expires=start + timedelta(days=2),
                                        now=start)
    return appointment


def subscription(app: Any, appointment: Any) -> Any:
    from lib.store.graph_subscriptions import subscription_doc_id

    return app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))


def visit_over(app: Any, appointment: Any, *, ago: timedelta = timedelta(minutes=1)) -> Any:
    """Write the visit's subscription document as over ``ago`` (real time)."""
    repo = app.presence_subscriptions._repo
    return repo.update(subscription(app, appointment), end_after_utc=datetime.now(UTC) - ago)


def live_graph_subscriptions(urls: dict[str, str], appointment: Any) -> list[str]:  # noqa: F811
    encoded = urllib.parse.quote(appointment.meeting.join_url, safe="")
    return [s["id"] for s in control(urls, "graph", "GET", "subscriptions")
            if encoded in s["resource"] and not s["removed"]]


def call_records_messages(app: Any, appointment: Any) -> list[dict[str, Any]]:
    """The visible ``call-records`` messages of this visit (taken off the queue), without their correlation ID."""
    from lib.queues import decode

    client = app.queues.client("call-records")
    found = []
    for message in client.receive_messages(max_messages=32, visibility_timeout=5):
        body = decode(message.content)
        if body.get("appointmentKey") == appointment.key:
            found.append({k: v for k, v in body.items() if k != "correlationId"})  # the runner's requests add one
            client.delete_message(message)
    return found


def run_call_records(app: Any, bodies: list[dict[str, Any]], *, at_once: bool = False) -> None:
    """The real ``call-records`` queue trigger on each message body (``at_once``: in parallel, as two instances
    of the Functions host would)."""
    from azure.functions.queue import QueueMessage

    from functions.call_records import call_records
    from lib.queues import encode

    handler = call_records.build().get_user_function()
    messages = [QueueMessage(id=f"cr-{uuid.uuid4().hex[:6]}", body=encode(b).encode(), dequeue_count=1)
                for b in bodies]
    if not at_once:
        for message in messages:
            handler(message)
        return
    threads = [threading.Thread(target=handler, args=(m,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


def joins_then_lost_end(urls: dict[str, str], appointment: Any) -> None:  # noqa: F811
    """Clinician and patient join (delivered); their leaves and the call's end are lost (Graph made the call
    record all the same)."""
    t = appointment.start_utc

    def at(minute: int) -> str:
        return (t + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")

    script(urls, appointment, [{"action": "start", "at": at(0)}, {"action": "join", "participant": CLIN, "at": at(0)},
                               {"action": "join", "participant": PAT, "at": at(1)}])
    script(urls, appointment, [{"action": "leave", "participant": PAT, "at": at(25)},
                               {"action": "leave", "participant": CLIN, "at": at(26)},
                               {"action": "end", "at": at(26)}], delivery="drop")


# ---- the call's end lost: the call record is read all the same, once ----------------------------------------

def test_a_missed_lifecycle_queues_the_call_record_read_and_epic_gets_the_lost_disconnects_once(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    appointment = past_visit(app, env, started_ago=timedelta(hours=1))
    joins_then_lost_end(urls, appointment)
    drain(app, appointment.key)
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1"], "patient": ["1"]}

    sub = subscription(app, appointment)
    missed = control(urls, "graph", "POST", f"subscriptions/{sub.graph_id}/lifecycle", {"event": "missed"})
    assert missed["status"] == 202
    queued = call_records_messages(app, appointment)  # visible at once (the trigger waits for the scheduled end)
    assert queued == [{"appointmentKey": appointment.key, "read": "call_record", "then": "attendance_report"}]
    run_call_records(app, queued)
    drain(app, appointment.key)
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                              "patient": ["1", "2"]}

    # Hours later the timer ends the subscription and, the missed notifications recorded, reads again: no doubles.
    visit_over(app, appointment)
    assert app.presence_subscriptions.run_due()["ended"] >= 1
    again = call_records_messages(app, appointment)
    assert len(again) == 1
    run_call_records(app, again)
    drain(app, appointment.key)
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                              "patient": ["1", "2"]}
    assert subscription(app, appointment).state == "ended"
    assert live_graph_subscriptions(urls, appointment) == []


def test_with_nothing_after_the_joins_the_visits_end_reads_the_call_record_even_when_queued_twice(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    appointment = past_visit(app, env, started_ago=timedelta(hours=3))
    joins_then_lost_end(urls, appointment)  # no `missed` either: Graph told us nothing
    drain(app, appointment.key)

    visit_over(app, appointment)
    counts = app.presence_subscriptions.run_due()
    assert counts["ended"] >= 1
    queued = call_records_messages(app, appointment)
    assert len(queued) == 1
    assert app.presence_subscriptions.run_due()["ended"] == 0 or subscription(app, appointment).state == "ended"
    assert call_records_messages(app, appointment) == []  # ended once: not queued again by the next run

    run_call_records(app, queued * 2, at_once=True)  # the message delivered twice, both at once
    drain(app, appointment.key)
    run_call_records(app, queued)  # and once more later
    drain(app, appointment.key)
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                              "patient": ["1", "2"]}
    added = [e for e in app.repos.visit_events.for_appointment(appointment.key) if e.source == "call_record"]
    assert sorted((e.role, e.type) for e in added) == [("patient", "disconnected"), ("provider", "disconnected")]


def test_a_visit_whose_roster_showed_the_calls_end_is_not_read_again_at_its_end(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    appointment = past_visit(app, env, started_ago=timedelta(hours=3))
    t = appointment.start_utc
    script(urls, appointment, [
        {"action": "start", "at": (t).isoformat().replace("+00:00", "Z")},
        {"action": "join", "participant": CLIN, "at": (t + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")},
        {"action": "leave", "participant": CLIN, "at": (t + timedelta(minutes=9)).isoformat().replace("+00:00", "Z")},
        {"action": "end", "at": (t + timedelta(minutes=9)).isoformat().replace("+00:00", "Z")}])
    assert len(call_records_messages(app, appointment)) == 0  # the roster's own look waits 2 minutes (invisible)
    visit_over(app, appointment)
    app.presence_subscriptions.run_due()
    assert subscription(app, appointment).state == "ended"
    assert call_records_messages(app, appointment) == []


# ---- a visit that is over: its document ends without Graph -------------------------------------------------

def test_a_pending_subscription_of_a_visit_long_over_ends_without_calling_graph(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    control(urls, "graph", "POST", "faults", {"path_prefix": "/beta/subscriptions", "responses": [503]})
    appointment = new_visit(app, env)
    assert subscription(app, appointment).state == "pending"
    over = visit_over(app, appointment, ago=timedelta(days=20))
    assert 9 * 86400 < app.store.container("graph_subscriptions").read_item(
        item=over.id, partition_key=over.id)["ttl"] <= 10 * 86400  # Cosmos deletes it 30 days after the visit

    counts = app.presence_subscriptions.run_due()  # Graph answers again: still nothing is created for it
    ended = subscription(app, appointment)
    assert (ended.state, ended.graph_id) == ("ended", None) and counts["ended"] >= 1
    assert live_graph_subscriptions(urls, appointment) == []
    # Nothing was ever seen of the visit: its call record is read (the only source left).
    assert call_records_messages(app, appointment) == [
        {"appointmentKey": appointment.key, "read": "call_record", "then": "attendance_report"}]
    app.presence_subscriptions.run_due()
    assert subscription(app, appointment).state == "ended" and call_records_messages(app, appointment) == []


@pytest.mark.parametrize("refusal", [403, 400])
def test_a_subscription_graph_refuses_to_delete_for_good_ends_all_the_same(
        app: Any, env: Any, urls: dict[str, str], refusal: int) -> None:  # noqa: F811
    appointment = new_visit(app, env)
    sub = visit_over(app, appointment, ago=timedelta(days=1))
    control(urls, "graph", "POST", "faults", {"path_prefix": f"/beta/subscriptions/{sub.graph_id}",
                                              "responses": [refusal] * 3})
    app.presence_subscriptions.run_due()
    ended = subscription(app, appointment)
    assert ended.state == "ended" and ended.last_error and ended.last_error.startswith(f"graph_http_{refusal}")
    app.presence_subscriptions.run_due()
    assert len(control(urls, "graph", "GET", "faults")[f"/beta/subscriptions/{sub.graph_id}"]) == 2  # not retried


def test_a_delete_graph_answers_503_to_is_tried_again_while_the_subscription_lives(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    appointment = new_visit(app, env)
    sub = visit_over(app, appointment)
    control(urls, "graph", "POST", "faults", {"path_prefix": f"/beta/subscriptions/{sub.graph_id}",
                                              "responses": [503]})
    assert app.presence_subscriptions.run_due()["failed"] >= 1
    assert subscription(app, appointment).state == "active"
    app.presence_subscriptions.run_due()
    assert subscription(app, appointment).state == "ended"
    assert live_graph_subscriptions(urls, appointment) == []


# ---- at-least-once: one Graph subscription per visit -------------------------------------------------------

def test_two_timer_runs_at_once_make_one_graph_subscription(app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    control(urls, "graph", "POST", "faults", {"path_prefix": "/beta/subscriptions", "responses": [503]})
    appointment = new_visit(app, env)
    assert subscription(app, appointment).state == "pending"
    control(urls, "graph", "POST", "faults", {"path_prefix": "/beta/subscriptions",
                                              "responses": [{"delay": 2}, {"delay": 2}]})  # a slow Graph
    results: list[dict[str, int]] = []
    threads = [threading.Thread(target=lambda: results.append(app.presence_subscriptions.run_due()))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    (live,) = live_graph_subscriptions(urls, appointment)
    stored = subscription(app, appointment)
    assert (stored.state, stored.graph_id, stored.claimed_utc) == ("active", live, None)
    script(urls, appointment, [{"action": "join", "participant": CLIN}])  # delivered through it, accepted
    assert [e.type for e in app.repos.visit_events.for_appointment(appointment.key)] == ["connected"]


def test_a_launch_followup_redelivery_racing_the_timer_makes_one_graph_subscription(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    control(urls, "graph", "POST", "faults", {"path_prefix": "/beta/subscriptions", "responses": [503]})
    appointment = new_visit(app, env)
    control(urls, "graph", "POST", "faults", {"path_prefix": "/beta/subscriptions",
                                              "responses": [{"delay": 2}, {"delay": 2}]})
    threads = [threading.Thread(target=app.presence_subscriptions.watch, args=(appointment,)),
               threading.Thread(target=app.presence_subscriptions.run_due)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    (live,) = live_graph_subscriptions(urls, appointment)
    assert subscription(app, appointment).graph_id == live


def test_a_claim_left_by_a_run_that_died_is_taken_over_after_the_lease(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    from lib.presence.subscriptions import CREATE_LEASE

    control(urls, "graph", "POST", "faults", {"path_prefix": "/beta/subscriptions", "responses": [503]})
    appointment = new_visit(app, env)
    repo = app.presence_subscriptions._repo
    repo.update(subscription(app, appointment), claimed_utc=datetime.now(UTC))  # a run claimed it just now
    app.presence_subscriptions.run_due()
    assert subscription(app, appointment).state == "pending" and live_graph_subscriptions(urls, appointment) == []
    repo.update(subscription(app, appointment), claimed_utc=datetime.now(UTC) - CREATE_LEASE - timedelta(seconds=1))
    app.presence_subscriptions.run_due()  # that run died: the claim has lapsed
    (live,) = live_graph_subscriptions(urls, appointment)
    assert subscription(app, appointment).graph_id == live


# ---- every call of the meeting is settled --------------------------------------------------------------------

def test_each_call_of_a_meeting_is_looked_for_and_settled_with_its_own_record(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    appointment = past_visit(app, env, started_ago=timedelta(hours=3))
    t = appointment.start_utc

    def at(minute: int) -> str:
        return (t + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")

    queue = app.queues.client("call-records")
    script(urls, appointment, [{"action": "start", "at": at(0)}, {"action": "join", "participant": CLIN, "at": at(0)},
                               {"action": "join", "participant": PAT, "at": at(1)},
                               {"action": "leave", "participant": PAT, "at": at(9)},
                               {"action": "leave", "participant": CLIN, "at": at(10)},
                               {"action": "end", "at": at(10)}])
    assert queue.get_queue_properties().approximate_message_count == 1  # the first call's look (in 2 minutes)
    # Forty minutes later both come back: a second call of the same meeting (the patient's stay in it unseen).
    script(urls, appointment, [{"action": "start", "at": at(50)},
                               {"action": "join", "participant": CLIN, "at": at(50)}])
    script(urls, appointment, [{"action": "join", "participant": PAT, "at": at(51)},
                               {"action": "leave", "participant": PAT, "at": at(58)}], delivery="drop")
    # The second call's look, before Graph made its record: it waits, though the first call's record is there.
    early = app.call_records.settle(appointment.key, call_ended=t + timedelta(minutes=60))
    assert (early.outcome, early.retry_in) == ("retry", 900)
    script(urls, appointment, [{"action": "leave", "participant": CLIN, "at": at(60)},
                               {"action": "end", "at": at(60)}])
    assert queue.get_queue_properties().approximate_message_count == 2  # each callEnded queued its own look
    drain(app, appointment.key)

    run_call_records(app, [{"appointmentKey": appointment.key, "callEndedUtc": at(10).replace("Z", "+00:00")},
                           {"appointmentKey": appointment.key, "callEndedUtc": at(60).replace("Z", "+00:00")}])
    drain(app, appointment.key)
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2", "1", "2"],
                                                                              "patient": ["1", "2", "1", "2"]}
    added = [e for e in app.repos.visit_events.for_appointment(appointment.key) if e.source == "call_record"]
    assert sorted((e.type, e.at_utc) for e in added) == [("connected", t + timedelta(minutes=51)),
                                                         ("disconnected", t + timedelta(minutes=58))]
    quality = app.store.container("call_quality").read_item(item=appointment.key, partition_key=appointment.key)
    assert len(quality["calls"]) == 2 and quality["start_utc"] < quality["end_utc"]
    patient = next(p for p in quality["participants"] if p["role"] == "patient")
    assert patient["seconds_present"] == 8 * 60 + 7 * 60  # both calls' stays
