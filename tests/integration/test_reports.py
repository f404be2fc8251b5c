"""Reports end to end on the real stores: report-updates messages go through Azurite to the queue trigger, the
report documents land in the Cosmos-compatible server, and the report read back is checked to the value."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from lib.models import Appointment, OutboxItem, hour_bucket
from lib.reports.inputs import (
    REPORT_UPDATES_QUEUE,
    InvalidReportInput,
    ParticipantEvent,
    ReportUpdate,
    StreamQuality,
)
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

# Monday 2 March 2026, 10:00 in New York (15:00 UTC)
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def drain(app: Any) -> list[str]:
    """Deliver every queued report update to the queue trigger, as the host would; returns the outcomes."""
    from functions.reports import report_update

    client = app.queues.client(REPORT_UPDATES_QUEUE)
    delivered = 0
    while True:
        batch = list(client.receive_messages(max_messages=32, visibility_timeout=30))
        if not batch:
            return [str(delivered)]
        for message in batch:
            report_update(func.QueueMessage(id=message.id, body=message.content.encode()))
            client.delete_message(message)
            delivered += 1


def appointment(env: str, appointment_id: str, start: datetime, **changes: Any) -> Appointment:
    base = Appointment(environment_id=env, appointment_id=appointment_id, status="booked", start_utc=start,
                       end_utc=start + timedelta(minutes=30), duration_minutes=30,
                       source_time_zone="America/New_York", department="CARDIOLOGY", provider_ehr_id="E1001")
    return dataclasses.replace(base, **changes)


def event(n: str, kind: str, role: str, who: str, at: datetime, name: str | None = None) -> ParticipantEvent:
    return ParticipantEvent(n, kind, role, who, at, name)  # type: ignore[arg-type]


@pytest.fixture
def env(app: Any, environment_id: str) -> str:
    app.queues.client(REPORT_UPDATES_QUEUE).clear_messages()  # updates other tests queued: nobody consumes them
    make_environment(app, environment_id, monthly_visit_allocation=1, report_clinician_names=False)
    return environment_id


def test_visits_texts_and_quality_are_reported_to_the_value(app: Any, env: str, clock: Any) -> None:
    feed, repos = app.report_feed, app.repos
    m = lambda minutes: T0 + timedelta(minutes=minutes)  # noqa: E731
    # A1: completed, patient waited 4 min in the lobby, 20 min together, poor audio for the patient
    texts = [
        OutboxItem(id=f"{env}|A1|reminder-60|0", bucket=hour_bucket(m(-60)), appointment_key=f"{env}|A1",
                   environment_id=env, kind="reminder", revision=0, due_utc=m(-60), state="sent", sent_utc=m(-60),
                   segments=1, language="es", recipient_last2="23", delivery_status="Delivered",
                   delivery_event_utc=m(-59)),
        OutboxItem(id=f"{env}|A1|booked|0", bucket=hour_bucket(m(-1440)), appointment_key=f"{env}|A1",
                   environment_id=env, kind="booked", revision=0, due_utc=m(-1440), state="sent",
                   sent_utc=m(-1440), segments=2, language="en", recipient_last2="23", delivery_status="Failed",
                   delivery_detail="Unreachable destination", delivery_event_utc=m(-1439)),
    ]
    for text in texts:
        repos.outbox.create_once(text)
    a1 = appointment(env, "A1", T0, outbox_refs=[{"id": t.id, "bucket": t.bucket} for t in texts])
    repos.appointments.create(a1)
    feed.appointment_changed(a1.key)
    for e in [event("1", "lobby", "patient", "patient", m(1)), event("2", "joined", "clinician", "E1001", m(3), "Dr X"),
              event("3", "joined", "patient", "patient", m(5)), event("4", "left", "patient", "patient", m(25)),
              event("5", "left", "clinician", "E1001", m(26))]:
        feed.participant_event(a1.key, e)
    feed.call_quality(a1.key, [
        StreamQuality("patient", "patient", "audio", "received", avg_jitter_ms=45.0, max_jitter_ms=120.0,
                      avg_loss=0.02, max_loss=0.09, avg_rtt_ms=80.0, max_rtt_ms=200.0, packets=9000),
        StreamQuality("E1001", "clinician", "audio", "received", avg_jitter_ms=5.0, max_jitter_ms=9.0,
                      avg_loss=0.0, max_loss=0.01, avg_rtt_ms=40.0, max_rtt_ms=60.0, packets=9000),
    ])
    # A2: the patient never came; A3: cancelled; A4 (next day): the clinician never came, patient left the lobby
    a2 = appointment(env, "A2", m(60))
    a3 = appointment(env, "A3", m(120), status="cancelled")
    a4 = appointment(env, "A4", T0 + timedelta(days=1), department="DERM")
    for a in (a2, a3, a4):
        repos.appointments.create(a)
        feed.appointment_changed(a.key)
    feed.participant_event(a2.key, event("6", "joined", "clinician", "E1001", m(61)))
    feed.participant_event(a2.key, event("7", "left", "clinician", "E1001", m(75)))
    feed.participant_event(a4.key, event("8", "lobby", "patient", "patient", T0 + timedelta(days=1, minutes=2)))
    feed.participant_event(a4.key, event("9", "left", "patient", "patient", T0 + timedelta(days=1, minutes=17)))
    drain(app)

    clock.set(T0 + timedelta(days=3))
    first, last = date(2026, 3, 1), date(2026, 3, 3)
    found = app.reports.rows(first, last, environment_id=env)
    rows = {r["appointment_id"]: r for r in found.visits}
    assert [r["appointment_id"] for r in found.visits] == ["A1", "A2", "A3", "A4"]
    one = rows["A1"]
    assert (one["start_utc"], one["end_utc"], one["duration_seconds"]) == (
        m(5).isoformat(), m(26).isoformat(), 21 * 60)
    assert one["start_local"] == "2026-03-02T10:05:00-05:00"
    assert (one["lobby_wait_seconds"], one["peak_participants"], one["outcome"]) == (240, 2, "completed")
    assert (one["texts_sent"], one["texts_delivered"], one["within_allocation"]) == (2, 1, True)
    assert one["clinicians"] == ["E1001"] and "clinician_names" not in one  # names are off for this environment
    assert one["quality"]["poor"] is True
    assert one["quality"]["by"]["patient/audio"]["max_jitter_ms"] == 120.0
    assert [rows[k]["outcome"] for k in ("A2", "A3", "A4")] == ["patient_never_joined", "cancelled",
                                                                "clinician_never_joined"]
    assert rows["A2"]["within_allocation"] is None
    by_id = {t["id"]: t for t in found.texts}
    reminder = by_id[f"{env}|A1|reminder-60|0"]
    assert (reminder["state"], reminder["recipient"], reminder["language"], reminder["day"]) == (
        "delivered", "••23", "es", "2026-03-02")
    assert by_id[f"{env}|A1|booked|0"]["day"] == "2026-03-01"  # texted the day before: counted on its own day
    assert found.point_reads == 3 * 3  # each day: its totals, the one part they name, the miss after it

    summary = app.reports.summary(first, last, environment_id=env)
    body = summary.body
    assert summary.point_reads == 3  # one totals document per day
    assert body["visits"]["by_outcome"] == {"cancelled": 1, "clinician_never_joined": 1, "completed": 1,
                                            "patient_never_joined": 1}
    assert body["visits"]["no_show_rate"] == round(1 / 3, 4)  # A2 of A1, A2, A4 (A3 cancelled)
    assert body["visits"]["poor_call_share"] == 1.0
    assert body["visits"]["average_lobby_wait_seconds"] == 240  # A1 4 min; A4 was never admitted
    assert (body["visits"]["within_allocation"], body["visits"]["over_allocation"]) == (1, 0)
    assert body["texts"]["delivery_rate"] == 0.5
    assert body["texts"]["failures_by_reason"] == {"Unreachable destination": 1}
    assert [d["visits"] for d in body["per_day"]] == [0, 3, 1]
    assert [d["delivery_rate"] for d in body["per_day"]] == [0.0, 1.0, None]
    # the same figures while the days are recent (summed from rows, outcomes as of now)
    clock.set(T0 + timedelta(days=1))
    recent = app.reports.summary(first, last, environment_id=env).body
    assert recent["visits"]["by_outcome"] == {"cancelled": 1, "completed": 1, "patient_never_joined": 1,
                                              "scheduled": 1}  # A4 is tomorrow, not over yet
    # the department filter
    clock.set(T0 + timedelta(days=3))
    derm = app.reports.rows(first, last, environment_id=env, department="DERM")
    assert [r["appointment_id"] for r in derm.visits] == ["A4"]
    assert app.reports.summary(first, last, environment_id=env, department="DERM").body["visits"]["total"] == 1


def test_redelivered_and_reordered_updates_change_nothing_and_a_reschedule_moves_the_row(
        app: Any, env: str, clock: Any) -> None:
    feed, repos = app.report_feed, app.repos
    a = appointment(env, "B1", T0)
    repos.appointments.create(a)
    updates = [lambda: feed.appointment_changed(a.key),
               lambda: feed.participant_event(a.key, event("b1", "joined", "clinician", "E1", T0)),
               lambda: feed.participant_event(a.key, event("b2", "joined", "patient", "patient", T0))]
    for send in updates + list(reversed(updates)):  # every message twice, the second time in reverse order
        send()
    drain(app)
    first = repos_doc(app, a.key)
    feed.participant_event(a.key, event("b2", "joined", "patient", "patient", T0))
    from functions.reports import report_update

    client = app.queues.client(REPORT_UPDATES_QUEUE)
    (message,) = list(client.receive_messages(max_messages=5))
    assert app.report_recorder.apply(ReportUpdate.from_message(json.loads(message.content))) == "unchanged"
    client.delete_message(message)
    assert repos_doc(app, a.key)["version"] == first["version"]
    # rescheduled to the next day: the row leaves the old day's sheet
    moved = repos.appointments.get(a.key)
    repos.appointments.replace(dataclasses.replace(moved, start_utc=T0 + timedelta(days=1),
                                                   end_utc=T0 + timedelta(days=1, minutes=30)))
    feed.appointment_changed(a.key)
    drain(app)
    clock.set(T0 + timedelta(days=3))
    day1 = app.reports.rows(date(2026, 3, 2), date(2026, 3, 2), environment_id=env)
    day2 = app.reports.rows(date(2026, 3, 3), date(2026, 3, 3), environment_id=env)
    assert app.reports.summary(date(2026, 3, 2), date(2026, 3, 3), environment_id=env).body["per_day"][0][
        "visits"] == 0
    assert [r["appointment_id"] for r in day1.visits] == []
    assert [r["appointment_id"] for r in day2.visits] == ["B1"]
    with pytest.raises(InvalidReportInput):
        report_update(func.QueueMessage(id="x", body=b'{"type": "presence", "appointmentKey": "e|1"}'))


def repos_doc(app: Any, key: str) -> dict[str, Any]:
    from lib.store.reports import ReportVisitRepository

    doc = ReportVisitRepository(app.store).get(key)
    assert doc is not None
    return doc
