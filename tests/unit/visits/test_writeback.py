"""WritebackService: idempotent, transient errors retry, permanent errors and poison mark failed."""

from __future__ import annotations

from datetime import UTC, datetime

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


def test_a_device_test_event_is_not_sent_to_set_external_connection_status():
    ehr = Ehr()
    service, _ = world(ehr, "device_test_passed")
    assert service.write("ev1", "env1|777").reason == "unsupported_event_type"
    assert ehr.calls == []


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
