"""Which device tests of a visit reach Epic (lib/visits/device_test_limits.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.store.visit_events import VisitEvent
from lib.visits.device_test_limits import ENOUGH_WRITTEN, IN_MEETING, TooManyDeviceTests, writeback_hold

T0 = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)


def event(n: int, event_type: str, *, role: str = "patient", source: str = "roster",
          writeback: str = "pending") -> VisitEvent:
    return VisitEvent(id=f"e{n}", appointment_key="env|1", environment_id="env", appointment_id="1",
                      type=event_type, role=role, participant_id=role, at_utc=T0 + timedelta(minutes=n),
                      source=source, writeback=writeback)


def test_a_first_device_test_is_written_back():
    assert writeback_hold([event(0, "page_opened", source="click", writeback="none")]) is None


def test_the_patients_latest_roster_status_decides_whether_they_are_in_the_meeting():
    assert writeback_hold([event(0, "connected")]) == IN_MEETING
    assert writeback_hold([event(0, "connected"), event(1, "disconnected")]) is None
    assert writeback_hold([event(1, "disconnected"), event(0, "connected")]) is None  # by time, not list order
    assert writeback_hold([event(0, "connected", role="provider")]) is None  # only the patient counts
    assert writeback_hold([event(0, "connected", writeback="superseded")]) is None
    assert writeback_hold([event(0, "connected", source="call_record")]) == IN_MEETING


def test_after_three_written_device_tests_the_next_ones_stay_out_of_epic():
    written = [event(i, "device_test_passed", source="device_test", writeback="written") for i in range(3)]
    assert writeback_hold(written[:2]) is None
    assert writeback_hold(written) == ENOUGH_WRITTEN
    held = [event(i, "device_test_failed", source="device_test", writeback="none") for i in range(3)]
    assert writeback_hold(held) is None  # held ones do not use up the three


def test_the_tenth_device_test_of_a_visit_is_the_last_one_recorded():
    nine = [event(i, "device_test_failed", source="device_test", writeback="none") for i in range(9)]
    assert writeback_hold(nine) is None
    with pytest.raises(TooManyDeviceTests):
        writeback_hold([*nine, event(9, "device_test_passed", source="device_test")])
