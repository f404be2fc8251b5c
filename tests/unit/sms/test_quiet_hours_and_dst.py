"""Quiet hours (lib.sms.quiet_hours) and reminder times across DST (lib.sms.planner), America/New_York and
Europe/Rome. "24 h before" is 24 elapsed hours: across a DST change the reminder's wall-clock time differs
from the visit's by one hour. Quiet hours are evaluated in local time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import Appointment, SmsSettings
from lib.sms.planner import plan_texts
from lib.sms.quiet_hours import first_allowed_after, is_quiet, last_allowed_before
from lib.sms.templates import format_when

SMS = SmsSettings(enabled=True, sender="+18005550100")
NY, ROME = "America/New_York", "Europe/Rome"
QUIET = ("21:00", "08:00")


def appt(start: datetime) -> Appointment:
    return Appointment(
        environment_id="env", appointment_id="A1", status="booked", start_utc=start,
        end_utc=start + timedelta(minutes=30), duration_minutes=30, source_time_zone=NY, schedule_revision=1,
        link_id="x" * 22,
    )


def reminders(start: datetime, now: datetime, zone: str, sms: SmsSettings = SMS) -> dict[str, datetime]:
    plan = plan_texts(sms, None, appt(start), has_phone=True, now=now, time_zone=zone)
    return {item.id.split("|")[2]: item.due_utc for item in plan.create if item.kind == "reminder"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "quiet"),
    [
        (utc(2026, 7, 2, 1, 0), False),  # 21:00 EDT exactly: allowed ("after 9 p.m." is quiet)
        (utc(2026, 7, 2, 1, 1), True),  # 21:01 EDT
        (utc(2026, 7, 2, 11, 59), True),  # 07:59 EDT
        (utc(2026, 7, 2, 12, 0), False),  # 08:00 EDT
        (utc(2026, 12, 2, 1, 30), False),  # 20:30 EST
        (utc(2026, 12, 2, 2, 30), True),  # 21:30 EST
    ],
)
def test_quiet_hours_are_local_and_exclude_their_bounds(at, quiet):
    assert is_quiet(at, NY, QUIET) is quiet


def test_same_day_and_empty_windows():
    assert is_quiet(utc(2026, 7, 1, 16, 30), NY, ("12:00", "13:00"))  # 12:30 EDT
    assert not is_quiet(utc(2026, 7, 1, 18, 30), NY, ("12:00", "13:00"))
    assert not is_quiet(utc(2026, 7, 2, 3, 0), NY, ("00:00", "00:00"))


def test_quiet_moment_moves_to_the_start_or_end_of_its_window():
    assert last_allowed_before(utc(2026, 7, 2, 11, 0), NY, QUIET) == utc(2026, 7, 2, 1, 0)  # 07:00 -> 21:00 EDT
    assert last_allowed_before(utc(2026, 7, 2, 3, 0), NY, QUIET) == utc(2026, 7, 2, 1, 0)  # 23:00 -> 21:00 EDT
    assert first_allowed_after(utc(2026, 7, 2, 3, 0), NY, QUIET) == utc(2026, 7, 2, 12, 0)  # 23:00 -> 08:00 EDT
    assert first_allowed_after(utc(2026, 7, 2, 11, 0), NY, QUIET) == utc(2026, 7, 2, 12, 0)


def test_reminder_inside_quiet_hours_is_moved_to_the_evening_before():
    # Visit Thu Jul 2 08:30 EDT: the 1 h reminder (07:30) moves to Wed 21:00 EDT; the 24 h one is 08:30 Wed.
    due = reminders(utc(2026, 7, 2, 12, 30), now=utc(2026, 6, 29, 12, 0), zone=NY)
    assert due == {"reminder-1440": utc(2026, 7, 1, 12, 30), "reminder-60": utc(2026, 7, 2, 1, 0)}


def test_moved_reminder_that_would_be_before_the_booking_is_skipped():
    # Booked at 22:00 EDT for 08:30 next morning: 21:00 is already past, and 24 h before is too.
    assert reminders(utc(2026, 7, 2, 12, 30), now=utc(2026, 7, 2, 2, 0), zone=NY) == {}


def test_two_reminders_moved_to_the_same_moment_become_one():
    sms = dataclasses.replace(SMS, reminder_offsets_minutes=(120, 60))
    due = reminders(utc(2026, 7, 2, 12, 30), now=utc(2026, 6, 29, 12, 0), zone=NY, sms=sms)  # 06:30 and 07:30
    assert due == {"reminder-120": utc(2026, 7, 2, 1, 0)}


@pytest.mark.parametrize(
    ("zone", "start", "reminder_24h", "visit_text", "reminder_local"),
    [
        # New York spring forward (Sun Mar 8 2026, 02:00 EST -> 03:00 EDT)
        (NY, utc(2026, 3, 8, 19, 0), utc(2026, 3, 7, 19, 0), "Sun Mar 8, 3:00 PM EDT", "Sat Mar 7, 2:00 PM EST"),
        # New York fall back (Sun Nov 1 2026, 02:00 EDT -> 01:00 EST)
        (NY, utc(2026, 11, 1, 20, 0), utc(2026, 10, 31, 20, 0), "Sun Nov 1, 3:00 PM EST", "Sat Oct 31, 4:00 PM EDT"),
        # Rome spring forward (Sun Mar 29 2026, 02:00 CET -> 03:00 CEST)
        (ROME, utc(2026, 3, 29, 13, 0), utc(2026, 3, 28, 13, 0), "dom 29 mar, 15:00 CEST", "sab 28 mar, 14:00 CET"),
        # Rome fall back (Sun Oct 25 2026, 03:00 CEST -> 02:00 CET)
        (ROME, utc(2026, 10, 25, 14, 0), utc(2026, 10, 24, 14, 0), "dom 25 oct, 15:00 CET", "sab 24 oct, 16:00 CEST"),
    ],
)
def test_24h_reminder_across_dst_is_24_elapsed_hours(zone, start, reminder_24h, visit_text, reminder_local):
    due = reminders(start, now=start - timedelta(days=5), zone=zone)
    assert due["reminder-1440"] == reminder_24h
    assert start - due["reminder-1440"] == timedelta(hours=24)
    language = "en" if zone == NY else "es"
    assert format_when(start, zone, language) == visit_text
    assert format_when(due["reminder-1440"], zone, language) == reminder_local


def test_quiet_hours_across_rome_spring_forward_use_each_nights_offset():
    # Visit Sun Mar 29 2026 08:30 CEST (06:30Z). 1 h before = 07:30 CEST (quiet) -> Sat 21:00 CET (20:00Z);
    # 24 h before = Sat 07:30 CET (quiet) -> Fri 21:00 CET (20:00Z).
    due = reminders(utc(2026, 3, 29, 6, 30), now=utc(2026, 3, 20, 12, 0), zone=ROME)
    assert due == {"reminder-1440": utc(2026, 3, 27, 20, 0), "reminder-60": utc(2026, 3, 28, 20, 0)}


def test_quiet_hours_across_new_york_fall_back():
    # Visit Sun Nov 1 2026 07:30 EST (12:30Z). 1 h before = 06:30 EST (quiet) -> Sat 21:00 EDT (Nov 1 01:00Z).
    due = reminders(utc(2026, 11, 1, 12, 30), now=utc(2026, 10, 25, 12, 0), zone=NY)
    assert due["reminder-60"] == utc(2026, 11, 1, 1, 0)
    assert format_when(due["reminder-60"], NY, "en") == "Sat Oct 31, 9:00 PM EDT"
