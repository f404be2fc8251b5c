"""WritebackService: idempotent, transient errors retry, permanent errors and poison mark failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.clock import FixedClock
from lib.ehr.writeback import PermanentWritebackError, TransientWritebackError
from lib.models import EnvironmentConfig
from lib.store.visit_events import VisitEvent
from lib.visits.writeback import WritebackService
from tests.unit.visits import fakes

NOW = datetime(2026, 3, 3, 19, 0, tzinfo=UTC)
ENV = EnvironmentConfig(id="env1", kind="test", display_name="C", fhir_base_urls=("https://e/api/FHIR/R4",),
                        approved=True, epic_client_id="c")


class Ehr:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[dict] = []

    def set_connection_status(self, environment, *, conference_id, external_id, status, fhir_base_url=None):
        self.calls.append({"conference_id": conference_id, "external_id": external_id, "status": status})
        if self.error:
            raise self.error


def world(ehr: Ehr, event_type: str = "connected"):
    events = fakes.VisitEvents()
    events.create_once(VisitEvent(id="ev1", appointment_key="env1|777", environment_id="env1", appointment_id="777",
                                  type=event_type, role="provider", participant_id="E1001", at_utc=NOW))  # type: ignore[arg-type]
    service = WritebackService(visit_events=events, environments=fakes.Environments(ENV), ehr=ehr,  # type: ignore[arg-type]
                               clock=FixedClock(NOW))
    return service, events


def test_a_pending_event_is_written_once():
    ehr = Ehr()
    service, events = world(ehr)
    assert service.write("ev1", "env1|777").outcome == "written"
    assert service.write("ev1", "env1|777").outcome == "skipped"
    assert ehr.calls == [{"conference_id": "777", "external_id": "E1001", "status": "connected"}]
    assert events.get("env1|777", "ev1").writeback == "written"  # type: ignore[union-attr]


def test_a_transient_failure_raises_and_leaves_the_event_pending():
    service, events = world(Ehr(TransientWritebackError("epic_http_503")))
    with pytest.raises(TransientWritebackError):
        service.write("ev1", "env1|777")
    assert events.get("env1|777", "ev1").writeback == "pending"  # type: ignore[union-attr]


def test_a_permanent_failure_marks_failed_with_its_reason():
    service, events = world(Ehr(PermanentWritebackError("epic_http_400")))
    outcome = service.write("ev1", "env1|777")
    assert (outcome.outcome, outcome.reason) == ("failed", "epic_http_400")
    assert events.get("env1|777", "ev1").writeback == "failed"  # type: ignore[union-attr]


@pytest.mark.parametrize("event_type", ["device_test_passed", "device_test_failed"])
def test_a_device_test_result_is_written_back_with_its_assumed_status_code(event_type):
    from lib.ehr.writeback import CONNECTION_STATUS

    ehr = Ehr()
    service, _ = world(ehr, event_type)
    assert service.write("ev1", "env1|777").outcome == "written"
    assert [c["status"] for c in ehr.calls] == [event_type]
    assert CONNECTION_STATUS[event_type] == {"device_test_passed": "3", "device_test_failed": "4"}[event_type]


def _sweep_world(at: datetime):
    events = fakes.VisitEvents()
    events.create_once(VisitEvent(id="ev1", appointment_key="env1|777", environment_id="env1", appointment_id="777",
                                  type="connected", role="patient", participant_id="patient", at_utc=at))
    clock = MutableClock(NOW)
    service = WritebackService(visit_events=events, environments=fakes.Environments(ENV), ehr=Ehr(),  # type: ignore[arg-type]
                               clock=clock)
    return service, events, fakes.Queue(), clock


class MutableClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_the_sweep_requeues_an_event_left_pending_after_a_failed_enqueue():
    service, events, queue, _ = _sweep_world(NOW - timedelta(minutes=16))
    assert service.sweep(queue) == {"requeued": 1, "exhausted": 0}
    assert queue.sent == [("visit-events", {"id": "ev1", "appointmentKey": "env1|777", "correlationId": None})]
    event = events.get("env1|777", "ev1")
    assert (event.requeue_count, event.requeued_utc, event.writeback) == (1, NOW, "pending")


def test_the_sweep_leaves_recent_and_recently_requeued_events_alone():
    service, _, queue, clock = _sweep_world(NOW - timedelta(minutes=5))
    assert service.sweep(queue)["requeued"] == 0
    clock.at = NOW + timedelta(minutes=11)
    assert service.sweep(queue)["requeued"] == 1
    clock.at = NOW + timedelta(minutes=20)  # requeued 9 minutes ago: its message may still be on its way
    assert service.sweep(queue)["requeued"] == 0
    assert len(queue.sent) == 1


def test_the_sweep_gives_up_after_five_requeues():
    from lib.visits.writeback import MAX_REQUEUES

    service, events, queue, clock = _sweep_world(NOW - timedelta(minutes=16))
    for i in range(MAX_REQUEUES):
        clock.at = NOW + timedelta(minutes=16 * i)
        assert service.sweep(queue)["requeued"] == 1
    clock.at += timedelta(minutes=16)
    assert service.sweep(queue) == {"requeued": 0, "exhausted": 1}
    event = events.get("env1|777", "ev1")
    assert (event.writeback, event.writeback_reason) == ("failed", "requeue_exhausted")


def test_the_sweep_skips_written_events():
    service, _events, queue, _ = _sweep_world(NOW - timedelta(hours=1))
    assert service.write("ev1", "env1|777").outcome == "written"
    assert service.sweep(queue)["requeued"] == 0 and queue.sent == []


def test_a_missing_event_is_reported_not_raised():
    service, _ = world(Ehr())
    assert service.write("nope", "env1|777").outcome == "missing"


def test_poison_marks_a_pending_event_failed_and_leaves_a_written_one():
    service, events = world(Ehr())
    assert service.mark_poisoned("ev1", "env1|777").outcome == "failed"
    assert events.get("env1|777", "ev1").writeback == "failed"  # type: ignore[union-attr]
    service2, events2 = world(Ehr())
    service2.write("ev1", "env1|777")
    assert service2.mark_poisoned("ev1", "env1|777").outcome == "skipped"
    assert events2.get("env1|777", "ev1").writeback == "written"  # type: ignore[union-attr]
