"""Rules for applying SIU messages to an appointment (lib.scheduling.apply)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lib.scheduling.apply import apply_message, order_key

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@dataclass
class Msg:
    appointment_id: str = "36996"
    status: str = "booked"
    start_utc: datetime | None = T0
    end_utc: datetime | None = T0 + timedelta(minutes=30)
    duration_minutes: int | None = 30
    source_time_zone: str | None = "America/Chicago"
    department: str | None = "IM"
    provider_ehr_id: str | None = "400"
    language: str | None = None
    sms_phone_reason: str = "mobile"
    conference_id: str | None = None


def key(minute: int, control: str = "1") -> str:
    return order_key(datetime(2026, 11, 29, 12, minute, tzinfo=UTC), control)


def test_first_message_creates_revision_1_with_a_random_link_id():
    applied = apply_message(None, Msg(), environment_id="env", key=key(0))
    assert applied.outcome == "created"
    assert applied.after.key == "env|36996"
    assert applied.after.schedule_revision == 1
    assert applied.after.start_utc == T0
    assert len(applied.after.link_id) == 22
    assert "36996" not in applied.after.link_id


def test_reschedule_to_a_new_time_increments_the_revision():
    first = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    moved = apply_message(first, Msg(start_utc=T0 + timedelta(hours=2)), environment_id="env", key=key(1))
    assert moved.outcome == "updated"
    assert moved.time_changed
    assert moved.after.schedule_revision == 2
    assert moved.after.start_utc == T0 + timedelta(hours=2)


def test_modification_without_time_change_keeps_the_revision():
    first = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    modified = apply_message(first, Msg(department="CARD"), environment_id="env", key=key(1))
    assert modified.after.schedule_revision == 1
    assert modified.after.department == "CARD"
    assert not modified.time_changed


def test_s12_older_than_an_applied_s15_is_ignored():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    cancelled = apply_message(booked, Msg(status="cancelled"), environment_id="env", key=key(5)).after
    late = apply_message(cancelled, Msg(status="booked"), environment_id="env", key=key(3))
    assert late.outcome == "stale"
    assert late.after is None


def test_same_message_again_is_a_redelivery_that_changes_nothing():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    again = apply_message(booked, Msg(), environment_id="env", key=key(0))
    assert again.outcome == "redelivered"
    assert again.after is booked


def test_equal_msh7_ties_are_broken_by_msh10():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0, "A")).after
    assert apply_message(booked, Msg(status="cancelled"), environment_id="env", key=key(0, "B")).outcome == "updated"
    assert apply_message(booked, Msg(status="cancelled"), environment_id="env", key=key(0, "0")).outcome == "stale"


def test_cancel_without_times_keeps_the_stored_times():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    cancelled = apply_message(
        booked, Msg(status="cancelled", start_utc=None, end_utc=None, duration_minutes=None),
        environment_id="env", key=key(1),
    ).after
    assert cancelled.status == "cancelled"
    assert cancelled.start_utc == T0
    assert cancelled.duration_minutes == 30


def test_newer_s12_after_cancel_books_again_with_a_new_revision():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    cancelled = apply_message(booked, Msg(status="cancelled"), environment_id="env", key=key(1)).after
    rebooked = apply_message(cancelled, Msg(status="booked"), environment_id="env", key=key(2))
    assert rebooked.after.status == "booked"
    assert rebooked.after.schedule_revision == 2


def test_order_key_compares_instants_not_local_clock_text():
    from zoneinfo import ZoneInfo

    rome = datetime(2026, 11, 29, 13, 0, tzinfo=ZoneInfo("Europe/Rome"))  # 12:00 UTC
    utc = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
    assert order_key(rome, "9") < order_key(utc, "1")


def test_conference_id_is_carried_and_kept_when_a_later_message_omits_it():
    created = apply_message(None, Msg(conference_id="GRP-7"), environment_id="env", key=key(0)).after
    assert created.conference_id == "GRP-7"
    later = apply_message(created, Msg(status="cancelled", conference_id=None), environment_id="env", key=key(5))
    assert later.after.conference_id == "GRP-7"
