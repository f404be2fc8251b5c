"""Where a visit stands for the patient: too early until 30 minutes before, open, over an hour after the
end, cancelled whatever the time; moved once its time changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.models import Appointment
from lib.visits.visit_state import visit_state

START = datetime(2026, 3, 3, 19, 30, tzinfo=UTC)


def appointment(status: str = "booked", *, end: datetime | None = START + timedelta(minutes=20),
                start: datetime | None = START, revision: int = 1) -> Appointment:
    return Appointment("env1", "777", status, start, end, 20, "America/New_York",  # type: ignore[arg-type]
                       schedule_revision=revision)


@pytest.mark.parametrize(("now", "phase"), [
    (START - timedelta(minutes=31), "too_early"),
    (START - timedelta(minutes=30), "open"),
    (START + timedelta(minutes=79), "open"),  # 20-minute visit + 59 minutes running late
    (START + timedelta(minutes=80), "over"),
])
def test_the_room_opens_half_an_hour_before_and_closes_an_hour_after_the_end(now, phase):
    state = visit_state(appointment(), now)
    assert state.phase == phase
    assert state.opens_utc == START - timedelta(minutes=30)
    assert state.joinable is (phase == "open")


def test_without_an_end_the_visit_is_taken_as_half_an_hour_long():
    assert visit_state(appointment(end=None), START + timedelta(minutes=89)).phase == "open"
    assert visit_state(appointment(end=None), START + timedelta(minutes=90)).phase == "over"


@pytest.mark.parametrize("status", ["cancelled", "deleted", "noshow"])
def test_an_ended_status_is_cancelled_even_during_the_visit(status):
    assert visit_state(appointment(status), START).phase == "cancelled"


def test_a_visit_without_a_time_is_open():
    state = visit_state(appointment(start=None, end=None), START)
    assert (state.phase, state.opens_utc) == ("open", None)


def test_a_rescheduled_visit_is_moved():
    assert visit_state(appointment(revision=2), START - timedelta(hours=3)).moved is True
    assert visit_state(appointment(revision=1), START - timedelta(hours=3)).moved is False
