"""The quiet-hours boundary: planning and sending agree (lib.sms.quiet_hours). A reminder planned for the quiet
start (moved there, or naturally due at it) is sent by the run that reads the clock moments after it, in every
zone, on DST days, in zones whose DST shift is 30 minutes, for windows across midnight and within one day; a
run more than ``RUN_TOLERANCE`` late is a catch-up, judged at its own instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lib.models import Appointment, SmsSettings
from lib.sms.planner import plan_texts
from lib.sms.quiet_hours import RUN_TOLERANCE, first_allowed_after, is_quiet, reminder_may_go

NY, LORD_HOWE, ST_JOHNS, KOLKATA = "America/New_York", "Australia/Lord_Howe", "America/St_Johns", "Asia/Kolkata"


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def planned_reminders(zone: str, start: datetime, quiet: tuple[str, str], offsets=(1440, 60)) -> list[datetime]:
    sms = SmsSettings(enabled=True, sender="+18005550100", quiet_hours=quiet, reminder_offsets_minutes=offsets)
    visit = Appointment(
        environment_id="env", appointment_id="A1", status="booked", start_utc=start,
        end_utc=start + timedelta(minutes=30), duration_minutes=30, source_time_zone=zone, schedule_revision=1,
        link_id="x" * 22,
    )
    plan = plan_texts(sms, None, visit, has_phone=True, now=start - timedelta(days=3), time_zone=zone)
    return [item.due_utc for item in plan.create if item.kind == "reminder"]


# (zone, quiet hours, visit start, the reminder instant planning must choose: the quiet start)
CASES = [
    # New York, an ordinary December night (the tester's case: visit 07:45, 1 h reminder moved to 21:00).
    pytest.param(NY, ("21:00", "08:00"), local(NY, 2026, 12, 9, 7, 45), local(NY, 2026, 12, 8, 21, 0), id="ny-dec"),
    # New York, spring forward night (Sun Mar 8 2026): the evening before is EST, the morning EDT.
    pytest.param(NY, ("21:00", "08:00"), local(NY, 2026, 3, 8, 7, 45), local(NY, 2026, 3, 7, 21, 0), id="ny-spring"),
    # New York, quiet start on the fall-back day itself (Sun Nov 1 2026, 21:00 EST).
    pytest.param(NY, ("21:00", "08:00"), local(NY, 2026, 11, 2, 7, 45), local(NY, 2026, 11, 1, 21, 0), id="ny-fall"),
    # Lord Howe: DST shifts by 30 minutes (Sun Oct 4 2026 02:00 -> 02:30; Sun Apr 5 2026 02:00 -> 01:30).
    pytest.param(LORD_HOWE, ("21:00", "08:00"), local(LORD_HOWE, 2026, 10, 4, 7, 45),
                 local(LORD_HOWE, 2026, 10, 3, 21, 0), id="lord-howe-spring"),
    pytest.param(LORD_HOWE, ("21:00", "08:00"), local(LORD_HOWE, 2026, 4, 5, 7, 45),
                 local(LORD_HOWE, 2026, 4, 4, 21, 0), id="lord-howe-autumn"),
    # A window whose start falls in Lord Howe's skipped half hour: the start is the instant of the change.
    pytest.param(LORD_HOWE, ("02:00", "06:00"), local(LORD_HOWE, 2026, 10, 4, 4, 0),
                 datetime(2026, 10, 3, 15, 30, tzinfo=UTC), id="lord-howe-start-in-gap"),
    # Newfoundland (-3:30) on its spring-forward day; India (+5:30, no DST); a window not across midnight.
    pytest.param(ST_JOHNS, ("22:30", "07:00"), local(ST_JOHNS, 2026, 3, 9, 7, 30),
                 local(ST_JOHNS, 2026, 3, 8, 22, 30), id="st-johns-spring"),
    pytest.param(KOLKATA, ("21:00", "08:00"), local(KOLKATA, 2026, 12, 9, 7, 45), local(KOLKATA, 2026, 12, 8, 21, 0),
                 id="kolkata"),
    pytest.param(NY, ("12:00", "13:00"), local(NY, 2026, 12, 9, 13, 30), local(NY, 2026, 12, 9, 12, 0), id="midday"),
    pytest.param(NY, ("00:00", "07:00"), local(NY, 2026, 12, 9, 7, 30), local(NY, 2026, 12, 9, 0, 0),
                 id="from-midnight"),
]


@pytest.mark.parametrize(("zone", "quiet", "start", "quiet_start"), CASES)
def test_a_reminder_planned_for_the_quiet_start_goes_with_the_runs_just_after_it(zone, quiet, start, quiet_start):
    due = planned_reminders(zone, start, quiet, offsets=(60,))
    assert due == [quiet_start]
    assert not is_quiet(quiet_start, zone, quiet)  # planning chose an allowed instant...
    for late in (timedelta(0), timedelta(milliseconds=300), timedelta(seconds=1), timedelta(seconds=59),
                 timedelta(minutes=3), RUN_TOLERANCE):
        assert is_quiet(quiet_start + late, zone, quiet) is (late > timedelta(0))
        assert reminder_may_go(quiet_start + late, quiet_start, zone, quiet), late  # ...and sending agrees


@pytest.mark.parametrize(("zone", "quiet", "start", "quiet_start"), CASES)
def test_a_run_later_than_the_tolerance_is_a_catch_up_and_waits_for_the_end(zone, quiet, start, quiet_start):
    run = quiet_start + RUN_TOLERANCE + timedelta(seconds=1)
    assert not reminder_may_go(run, quiet_start, zone, quiet)
    end = first_allowed_after(run, zone, quiet)
    assert end > run and not is_quiet(end, zone, quiet)
    assert is_quiet(end - timedelta(seconds=1), zone, quiet)


@pytest.mark.parametrize(
    ("zone", "quiet", "visit"),
    [
        (NY, ("21:00", "08:00"), (2026, 12, 9, 22, 0)),  # 1 h reminder naturally due 21:00
        (NY, ("21:00", "08:00"), (2026, 3, 8, 22, 0)),  # on the spring-forward day (21:00 EDT)
        (LORD_HOWE, ("21:00", "08:00"), (2026, 10, 4, 22, 0)),  # the day Lord Howe moved 30 minutes
        (NY, ("12:00", "13:00"), (2026, 12, 9, 13, 0)),  # a same-day window
    ],
)
def test_a_reminder_naturally_due_at_the_quiet_start_is_kept_and_sent(zone, quiet, visit):
    start = local(zone, *visit)
    due = planned_reminders(zone, start, quiet, offsets=(60,))
    assert due == [start - timedelta(hours=1)]
    assert reminder_may_go(due[0] + timedelta(seconds=1), due[0], zone, quiet)
    assert reminder_may_go(due[0] + timedelta(seconds=59), due[0], zone, quiet)


def test_a_24h_reminder_naturally_due_at_the_quiet_start_is_not_pushed_to_the_morning():
    start = local(NY, 2026, 12, 9, 21, 0)  # Wed 21:00: the 24 h reminder is Tue 21:00, not Wed 08:00
    due = planned_reminders(NY, start, ("21:00", "08:00"), offsets=(1440,))
    assert due == [local(NY, 2026, 12, 8, 21, 0)]
    assert reminder_may_go(due[0] + timedelta(seconds=30), due[0], NY, ("21:00", "08:00"))


def test_the_tolerance_never_lets_a_reminder_planned_inside_the_window_go():
    # Planned for 20:30 under ("21:00", "08:00"); the hospital then moved quiet hours to start at 20:00.
    planned = local(NY, 2026, 12, 8, 20, 30)
    assert not reminder_may_go(planned + timedelta(seconds=20), planned, NY, ("20:00", "08:00"))
    # A run before the planned instant (a clock read early) is judged at its own instant.
    assert not reminder_may_go(local(NY, 2026, 12, 8, 21, 5), local(NY, 2026, 12, 8, 21, 6), NY, ("21:00", "08:00"))
