"""The attendance-report fallback end to end: a tenant whose Graph refuses call-event subscriptions and call
records (the stand-in's permission switch answers 403 as Graph does), the visit's ``call-records`` message run by
the real queue trigger, the Graph stand-in's attendance reports (404 until ready, paged, faults), the write-back
trigger calling the Epic stand-in. Time moves through the app's clock file.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_presence import (  # noqa: F401 (module fixtures: the dev runner, URLs, environment)
    CLIN,
    PAT,
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

GUEST = {"guest": f"guest-{uuid.uuid4().hex[:8]}"}


@pytest.fixture(autouse=True)
def tenant(app: Any, urls: dict[str, str]) -> Iterator[None]:  # noqa: F811
    """Empty ``visit-events``/``call-records`` queues; after each test, the stand-in grants every permission,
    makes reports ready at once and pages by 100 again."""
    for queue in ("visit-events", "call-records", "report-updates"):
        app.queues.client(queue).clear_messages()
    yield
    control(urls, "graph", "POST", "permissions", {"revoked": []})
    control(urls, "graph", "POST", "attendance-reports", {"hold": False, "page_size": 100})
    control(urls, "graph", "DELETE", "faults")
    for queue in ("visit-events", "call-records"):
        app.queues.client(queue).clear_messages()


def run_message(app: Any, body: dict[str, str]) -> None:
    """The real ``call-records`` queue trigger on one message."""
    from azure.functions.queue import QueueMessage

    from functions.call_records import call_records
    from lib.queues import encode

    handler = call_records.build().get_user_function()
    handler(QueueMessage(id=f"cr-{uuid.uuid4().hex[:6]}", body=encode(body).encode(), dequeue_count=1))


def stored_documents(app: Any, key: str) -> str:
    """Everything stored about the visit's presence, as text."""
    from lib.store.graph_subscriptions import subscription_doc_id

    docs: list[Any] = [e.to_doc() for e in app.repos.visit_events.for_appointment(key)]
    docs.append(app.store.container("call_quality").read_item(item=key, partition_key=key))
    sub_id = subscription_doc_id(key)
    docs.append(app.store.container("graph_subscriptions").read_item(item=sub_id, partition_key=sub_id))
    return json.dumps(docs, default=str)


def test_a_tenant_without_subscription_or_call_record_permission_writes_the_reports_attendance_to_epic_once(
        app: Any, env: Any, urls: dict[str, str], clock: Any) -> None:  # noqa: F811
    from lib.operations.timeline import timeline
    from lib.presence.after_meeting import AfterMeetingWork
    from lib.store.call_quality import CallQualityRepository
    from lib.store.graph_subscriptions import subscription_doc_id

    control(urls, "graph", "POST", "permissions", {"revoked": ["meetingCallEvents", "CallRecords.Read.All"]})
    control(urls, "graph", "POST", "attendance-reports", {"hold": True, "page_size": 2})
    appointment = new_visit(app, env)

    sub = app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))
    assert (sub.state, sub.source, sub.last_error) == ("not_allowed", "auto", "graph_http_403_ExtensionError")
    # the look after the meeting is queued, invisible until the scheduled end + 5 minutes
    looks = app.queues.client("call-records")
    assert looks.get_queue_properties().approximate_message_count == 1 and list(looks.peek_messages()) == []

    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

    def at(minute: int) -> str:
        return (t + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")

    script(urls, appointment, [
        {"action": "start", "at": at(0)}, {"action": "join", "participant": CLIN, "at": at(0)},
        {"action": "join", "participant": PAT, "lobby": True, "at": at(1)},
        {"action": "admit", "participant": PAT, "at": at(2)},
        {"action": "join", "participant": GUEST, "at": at(3)},
        {"action": "leave", "participant": PAT, "at": at(5)},
        {"action": "join", "participant": PAT, "at": at(7)},  # the patient's rejoin
        {"action": "leave", "participant": GUEST, "at": at(9)},
        {"action": "leave", "participant": PAT, "at": at(19)},
        {"action": "leave", "participant": CLIN, "at": at(20)}, {"action": "end", "at": at(20)}])
    assert app.repos.visit_events.for_appointment(appointment.key) == []  # nothing live: no subscription

    work = AfterMeetingWork(appointment.key, "call_record", "attendance_report")
    clock.set(datetime.now(UTC))
    early = app.after_meeting.run(work)
    assert (early.outcome, early.retry) == ("not_yet", work)  # before the scheduled end + 5 minutes
    clock.set(appointment.end_utc + timedelta(minutes=6))
    not_ready = app.after_meeting.run(work)  # call record refused -> attendance report, not ready yet (404)
    assert (not_ready.read, not_ready.outcome, not_ready.retry_in) == ("attendance_report", "retry", 600)
    assert not_ready.retry == AfterMeetingWork(appointment.key, "attendance_report")
    quality = CallQualityRepository(app.store).get(appointment.key)
    assert quality["status"] == "not_allowed" and quality["attendance_report"]["status"] == "waiting"

    control(urls, "graph", "POST", "attendance-reports/release")
    control(urls, "graph", "POST", "faults", {"path_prefix": "/v1.0/users/",
                                              "responses": [{"status": 429, "retry_after": 120}]})
    throttled = app.after_meeting.run(not_ready.retry)
    assert (throttled.outcome, throttled.retry_in) == ("retry", 120)  # Graph's Retry-After

    run_message(app, not_ready.retry.message())  # the real trigger: reports are paged by 2
    drain(app, appointment.key)
    run_message(app, not_ready.retry.message())  # a redelivery adds nothing
    drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {
        "E1001": ["1", "2"], "patient": ["1", "2", "1", "2"]}
    events = app.repos.visit_events.for_appointment(appointment.key)
    assert {e.source for e in events} == {"attendance_report"}
    patient = sorted((e.at_utc, e.type) for e in events if e.role == "patient")
    assert patient == [(t + timedelta(minutes=2), "connected"), (t + timedelta(minutes=5), "disconnected"),
                       (t + timedelta(minutes=7), "connected"), (t + timedelta(minutes=19), "disconnected")]
    guest = [e for e in events if e.role == "other"]  # on the second page; recorded, never written back
    assert sorted(e.type for e in guest) == ["connected", "disconnected"]
    assert {e.writeback for e in guest} == {"none"} and guest[0].participant_ref
    assert all(e.writeback == "written" for e in events if e.role in ("provider", "patient"))
    stored = stored_documents(app, appointment.key).lower()
    assert "stand-in" not in stored and "@" not in stored  # no display name, no e-mail address

    from tests.integration.test_reports import drain as deliver_report_updates

    deliver_report_updates(app)
    day = t.date()
    (row,) = [r for r in app.reports.rows(day, day, environment_id=env.id).visits
              if r["appointment_id"] == appointment.appointment_id]
    # in the reports like roster events: the visit ran from the patient's admission to the clinician's leave
    assert (row["outcome"], row["peak_participants"], row["clinicians"]) == ("completed", 3, ["E1001"])
    assert (row["start_utc"], row["end_utc"]) == ((t + timedelta(minutes=2)).isoformat(),
                                                  (t + timedelta(minutes=20)).isoformat())
    assert row["lobby_wait_seconds"] is None  # the report has no lobby times
    presence = timeline(app, env.id, appointment.appointment_id)["presence"]
    assert presence["subscription"]["state"] == "not_allowed"
    assert presence["callRecord"]["status"] == "not_allowed"
    assert (presence["attendanceReport"]["status"], presence["attendanceReport"]["eventsFromReport"]) == ("settled", 8)


def test_an_environment_reading_attendance_reports_subscribes_to_nothing_and_gives_up_after_a_day(
        app: Any, env: Any, urls: dict[str, str], clock: Any) -> None:  # noqa: F811
    from lib.operations.timeline import timeline
    from lib.presence.after_meeting import AfterMeetingWork
    from lib.store.graph_subscriptions import subscription_doc_id

    before = {s["id"] for s in control(urls, "graph", "GET", "subscriptions")}
    appointment = new_visit(app, dataclasses.replace(env, presence_source="attendance_report"))
    sub = app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))
    assert (sub.state, sub.graph_id) == ("not_used", None)
    assert {s["id"] for s in control(urls, "graph", "GET", "subscriptions")} == before

    work = AfterMeetingWork(appointment.key, "attendance_report")
    clock.set(appointment.end_utc + timedelta(minutes=6))
    assert app.after_meeting.run(work).outcome == "retry"  # no meeting took place: no report
    clock.set(appointment.end_utc + timedelta(hours=25))
    gave_up = app.after_meeting.run(work)
    assert (gave_up.outcome, gave_up.retry) == ("not_available", None)
    report = timeline(app, env.id, appointment.appointment_id)["presence"]["attendanceReport"]
    assert (report["status"], report["reason"]) == ("not_available", "gave_up_after_24h:report_not_ready")


def test_where_the_roster_told_the_visit_the_report_only_fills_what_it_missed(
        app: Any, env: Any, urls: dict[str, str]) -> None:  # noqa: F811
    appointment = new_visit(app, env)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    def at(minute: int) -> str:
        return (t + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")

    script(urls, appointment, [{"action": "start", "at": at(0)}, {"action": "join", "participant": CLIN, "at": at(0)}])
    script(urls, appointment, [{"action": "join", "participant": PAT, "at": at(1)},  # both notifications lost
                               {"action": "leave", "participant": PAT, "at": at(4)}], delivery="drop")
    script(urls, appointment, [{"action": "leave", "participant": CLIN, "at": at(6)},
                               {"action": "end", "at": at(6)}])
    pulled = app.attendance_reports.pull(appointment.key)
    assert (pulled.outcome, pulled.added_events) == ("settled", 2)
    assert app.attendance_reports.pull(appointment.key).added_events == 0
    drain(app, appointment.key)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                              "patient": ["1", "2"]}
    by_source = sorted((e.source, e.role, e.type) for e in app.repos.visit_events.for_appointment(appointment.key)
                       if e.type in ("connected", "disconnected"))
    assert by_source == [("attendance_report", "patient", "connected"), ("attendance_report", "patient",
                                                                         "disconnected"),
                         ("roster", "provider", "connected"), ("roster", "provider", "disconnected")]
