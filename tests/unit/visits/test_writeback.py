"""WritebackService: claim before the call, order per participant, backoff within the horizon, sweep."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from lib.ehr.writeback import PermanentWritebackError, TransientWritebackError
from lib.models import EnvironmentConfig
from lib.store.visit_events import VisitEvent
from lib.visits.writeback import AMBIGUOUS_SETTLE, CLAIM_LEASE, WritebackService
from tests.unit.visits import fakes

NOW = datetime(2026, 3, 3, 19, 0, tzinfo=UTC)
ENV = EnvironmentConfig(id="env1", kind="test", display_name="C", fhir_base_urls=("https://e/api/FHIR/R4",),
                        approved=True, epic_client_id="c")


class Ehr:
    """Answers each call with the next scripted error (``None`` = success)."""

    def __init__(self, *errors: Exception | None, during=None) -> None:
        self.errors = list(errors)
        self.calls: list[tuple[str, str]] = []
        self.during = during

    def set_connection_status(self, environment, *, conference_id, external_id, status, fhir_base_url=None):
        self.calls.append((external_id, status))
        if self.during:
            self.during()
        error = self.errors.pop(0) if self.errors else None
        if error:
            raise error


class MutableClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def _event(event_id: str, event_type: str = "connected", at: datetime = NOW, participant: str = "E1001",
           role: str = "provider") -> VisitEvent:
    return VisitEvent(id=event_id, appointment_key="env1|777", environment_id="env1", appointment_id="777",
                      type=event_type, role=role, participant_id=participant, at_utc=at)  # type: ignore[arg-type]


def world(ehr: Ehr, *events: VisitEvent, env: EnvironmentConfig = ENV):
    store = fakes.VisitEvents()
    for event in events or (_event("ev1"),):
        store.create_once(event)
    clock = MutableClock(NOW)
    queue = fakes.Queue()
    service = WritebackService(visit_events=store, environments=fakes.Environments(env), ehr=ehr,  # type: ignore[arg-type]
                               clock=clock, queues=queue)
    return service, store, clock, queue


def test_a_pending_event_is_written_once():
    ehr = Ehr()
    service, events, _, _ = world(ehr)
    assert service.write("ev1", "env1|777").outcome == "written"
    assert service.write("ev1", "env1|777").outcome == "skipped"
    assert ehr.calls == [("E1001", "connected")]
    assert events.get("env1|777", "ev1").writeback == "written"  # type: ignore[union-attr]


def test_a_redelivery_while_the_first_call_is_still_running_does_not_call_epic_again():
    inner: list[str] = []
    ehr = Ehr()
    service, _events, _, _ = world(ehr)
    ehr.during = lambda: inner.append(service.write("ev1", "env1|777").outcome)
    assert service.write("ev1", "env1|777").outcome == "written"
    assert inner == ["in_progress"] and len(ehr.calls) == 1


def test_a_claim_left_by_a_dead_worker_is_recorded_unknown_and_never_retried():
    ehr = Ehr()
    service, events, clock, _ = world(ehr)
    stored = events.get("env1|777", "ev1")
    events.update(stored, writeback="sending", claimed_utc=NOW, claim_id="dead", attempts=1)  # type: ignore[arg-type]
    clock.at = NOW + CLAIM_LEASE - timedelta(seconds=1)
    assert service.write("ev1", "env1|777").outcome == "in_progress"
    clock.at = NOW + CLAIM_LEASE
    outcome = service.write("ev1", "env1|777")
    assert (outcome.outcome, outcome.reason) == ("unknown", "outcome_unknown_worker_died")
    assert ehr.calls == []
    event = events.get("env1|777", "ev1")
    assert (event.writeback, event.ambiguous_attempts) == ("unknown", 1)  # type: ignore[union-attr]


def test_a_transient_failure_schedules_the_next_attempt_with_exponential_backoff():
    ehr = Ehr(TransientWritebackError("epic_http_503"), TransientWritebackError("epic_http_503"), None)
    service, events, clock, _ = world(ehr)
    first = service.write("ev1", "env1|777")
    assert (first.outcome, first.retry_in) == ("retry", 30)
    assert service.write("ev1", "env1|777").outcome == "not_due"  # a duplicate message before it is due
    clock.at = NOW + timedelta(seconds=30)
    assert service.write("ev1", "env1|777").retry_in == 60
    clock.at = NOW + timedelta(seconds=90)
    assert service.write("ev1", "env1|777").outcome == "written"
    event = events.get("env1|777", "ev1")
    assert (event.attempts, event.first_attempt_utc, len(ehr.calls)) == (3, NOW, 3)  # type: ignore[union-attr]


def test_retry_after_longer_than_the_backoff_is_honoured():
    service, events, _, _ = world(Ehr(TransientWritebackError("epic_http_429", retry_after=600)))
    outcome = service.write("ev1", "env1|777")
    assert (outcome.outcome, outcome.retry_in) == ("retry", 600)
    assert events.get("env1|777", "ev1").due_utc == NOW + timedelta(seconds=600)  # type: ignore[union-attr]


def test_past_the_horizon_a_transient_failure_is_marked_failed_with_epics_reason():
    env = dataclasses.replace(ENV, writeback_retry_horizon_minutes=5)
    ehr = Ehr(*[TransientWritebackError("epic_http_503", detail="Interconnect down")] * 10)
    service, events, clock, _ = world(ehr, env=env)
    outcomes = []
    while True:
        outcome = service.write("ev1", "env1|777")
        outcomes.append(outcome.outcome)
        if outcome.retry_in is None:
            break
        clock.at += timedelta(seconds=outcome.retry_in)
    assert outcomes == ["retry", "retry", "retry", "failed"]  # 30 s, 60 s, 120 s; 240 s would pass 5 minutes
    event = events.get("env1|777", "ev1")
    assert (event.writeback, event.writeback_reason, event.epic_detail) == (  # type: ignore[union-attr]
        "failed", "retry_horizon_exceeded:epic_http_503", "Interconnect down")


def test_a_permanent_failure_marks_failed_with_its_reason():
    service, events, _, _ = world(Ehr(PermanentWritebackError("epic_http_403", detail="Not authorized")))
    outcome = service.write("ev1", "env1|777")
    assert (outcome.outcome, outcome.reason) == ("failed", "epic_http_403")
    event = events.get("env1|777", "ev1")
    assert (event.writeback, event.epic_detail) == ("failed", "Not authorized")  # type: ignore[union-attr]


def test_a_disconnect_waits_for_the_pending_connect_of_the_same_participant_then_follows_it():
    ehr = Ehr()
    service, _events, _, queue = world(ehr, _event("c1", "connected", NOW), _event("d1", "disconnected",
                                                                                   NOW + timedelta(minutes=5)))
    assert service.write("d1", "env1|777").outcome == "waiting"
    assert service.write("c1", "env1|777").outcome == "written"
    assert queue.sent == [("visit-events", {"id": "d1", "appointmentKey": "env1|777", "correlationId": None})]
    assert service.write("d1", "env1|777").outcome == "written"
    assert ehr.calls == [("E1001", "connected"), ("E1001", "disconnected")]


def test_an_event_older_than_one_already_written_is_superseded_not_written():
    ehr = Ehr()
    later = dataclasses.replace(_event("d1", "disconnected", NOW + timedelta(minutes=5)), writeback="written")
    service, _events, _, _ = world(ehr, _event("c1", "connected", NOW), later)
    outcome = service.write("c1", "env1|777")
    assert (outcome.outcome, outcome.reason) == ("superseded", "later_event_already_written")
    assert ehr.calls == []


def test_other_participants_do_not_wait_for_each_other():
    ehr = Ehr()
    service, _, _, _ = world(ehr, _event("c1", "connected", NOW),
                             _event("p1", "connected", NOW + timedelta(seconds=1), "patient", "patient"))
    assert service.write("p1", "env1|777").outcome == "written"


def test_status_codes_come_from_the_environment():
    env = dataclasses.replace(ENV, writeback_status_codes={"connected": "CONN"})
    assert env.status_code("connected") == "CONN" and env.status_code("disconnected") == "2"
    assert env.status_code("in_lobby") is None


def test_an_event_type_without_a_status_code_is_failed_not_sent():
    ehr = Ehr()
    service, _events, _, _ = world(ehr, _event("l1", "in_lobby"))
    assert service.write("l1", "env1|777").reason == "unsupported_event_type"
    assert ehr.calls == []


def test_the_sweep_requeues_overdue_events_and_not_recently_requeued_ones():
    service, events, clock, queue = world(Ehr())
    assert service.sweep()["requeued"] == 0  # due now: its message is on its way
    clock.at = NOW + timedelta(minutes=2)
    assert service.sweep()["requeued"] == 1
    assert service.sweep()["requeued"] == 0
    clock.at = NOW + timedelta(minutes=4)
    assert service.sweep()["requeued"] == 1
    assert len(queue.sent) == 2 and events.get("env1|777", "ev1").writeback == "pending"  # type: ignore[union-attr]


def test_the_sweep_releases_dead_claims_as_unknown():
    service, events, clock, _ = world(Ehr())
    events.update(events.get("env1|777", "ev1"), writeback="sending", claimed_utc=NOW, claim_id="x")  # type: ignore[arg-type]
    clock.at = NOW + CLAIM_LEASE + timedelta(minutes=1)
    assert service.sweep() == {"requeued": 0, "abandoned": 1}
    assert events.get("env1|777", "ev1").writeback == "unknown"  # type: ignore[union-attr]


def test_a_missing_event_is_reported_not_raised():
    service, *_ = world(Ehr())
    assert service.write("nope", "env1|777").outcome == "missing"


def test_poison_marks_a_pending_event_failed_and_leaves_a_written_one():
    service, events, _, _ = world(Ehr())
    assert service.mark_poisoned("ev1", "env1|777").outcome == "failed"
    assert events.get("env1|777", "ev1").writeback_reason == "poisoned"  # type: ignore[union-attr]
    service2, _events2, _, _ = world(Ehr())
    service2.write("ev1", "env1|777")
    assert service2.mark_poisoned("ev1", "env1|777").outcome == "skipped"


@pytest.mark.parametrize(("codes", "horizon", "problems"), [
    ({}, 1440, []),
    ({"connected": "CONN-1"}, 5, []),
    ({"joined": "1"}, 1440, ["Write-back status codes: unknown event type 'joined' (use connected, disconnected, "
                             "device_test_passed, device_test_failed)."]),
    ({"connected": ""}, 1440, ["Write-back status code for 'connected' must be 1-16 letters or digits."]),
    ({}, 4, ["Write-back retry horizon must be a whole number of minutes from 5 to 10080."]),
    ({}, 10081, ["Write-back retry horizon must be a whole number of minutes from 5 to 10080."]),
])
def test_writeback_settings_are_validated(codes, horizon, problems):
    from lib.models import writeback_settings_problems

    assert writeback_settings_problems(codes, horizon) == problems


def test_a_timed_out_call_is_never_resent_and_the_next_status_waits_for_it_to_settle():
    """Epic may apply a call that timed out later than a newer one: the connect is not sent again, and the
    disconnect waits until the connect can no longer land, so Epic ends on the latest state."""
    connect = _event("c1", "connected", NOW)
    disconnect = _event("d1", "disconnected", NOW + timedelta(minutes=1))
    ehr = Ehr(TransientWritebackError("epic_timeout", ambiguous=True))
    service, events, clock, _queue = world(ehr, connect, disconnect)
    first = service.write("c1", "env1|777")
    assert (first.outcome, first.reason) == ("unknown", "outcome_unknown_epic_timeout")
    stored = events.get("env1|777", "c1")
    assert (stored.writeback, stored.ambiguous_attempts, stored.last_error) == (  # type: ignore[union-attr]
        "unknown", 1, "epic_timeout")
    assert service.write("c1", "env1|777").outcome == "skipped"  # a redelivery: never sent again
    clock.at = NOW + timedelta(seconds=30)
    waiting = service.write("d1", "env1|777")
    assert (waiting.outcome, waiting.retry_in) == ("waiting", 91)
    assert events.get("env1|777", "d1").due_utc == NOW + AMBIGUOUS_SETTLE  # type: ignore[union-attr]
    clock.at = NOW + AMBIGUOUS_SETTLE
    assert service.write("d1", "env1|777").outcome == "written"
    assert ehr.calls == [("E1001", "connected"), ("E1001", "disconnected")]


def test_a_timed_out_device_test_is_unknown_at_most_once():
    ehr = Ehr(TransientWritebackError("epic_timeout", ambiguous=True))
    service, _events, clock, _ = world(ehr, _event("t1", "device_test_passed", participant="patient", role="patient"))
    assert service.write("t1", "env1|777").outcome == "unknown"
    clock.at = NOW + timedelta(hours=1)
    service.sweep()
    assert service.write("t1", "env1|777").outcome == "skipped"
    assert ehr.calls == [("patient", "device_test_passed")]


def test_a_failure_that_never_reached_epic_is_retried():
    ehr = Ehr(TransientWritebackError("epic_connect"), None)
    service, _events, clock, _ = world(ehr)
    assert service.write("ev1", "env1|777").outcome == "retry"
    clock.at = NOW + timedelta(seconds=30)
    assert service.write("ev1", "env1|777").outcome == "written"
    assert len(ehr.calls) == 2
