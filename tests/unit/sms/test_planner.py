"""Which texts a change plans (lib.sms.planner)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from lib.models import Appointment, SmsSettings
from lib.sms.planner import plan_texts

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SMS = SmsSettings(enabled=True, sender="+18005550100")


def appt(**changes) -> Appointment:
    base = Appointment(
        environment_id="env", appointment_id="A1", status="booked",
        start_utc=NOW + timedelta(days=3), end_utc=NOW + timedelta(days=3, minutes=30),
        duration_minutes=30, source_time_zone="America/New_York", schedule_revision=1, link_id="x" * 22,
    )
    return dataclasses.replace(base, **changes)


def ids(plan) -> list[str]:
    return [item.id for item in plan.create]


def test_new_booking_plans_a_confirmation_now_and_both_reminders():
    plan = plan_texts(SMS, None, appt(), has_phone=True, now=NOW)
    assert ids(plan) == ["env|A1|booked|1", "env|A1|reminder-1440|1", "env|A1|reminder-60|1"]
    assert plan.create[0].due_utc == NOW
    assert plan.create[1].due_utc == NOW + timedelta(days=2)
    assert plan.create[1].bucket == "2026-12-01T12"
    assert plan.create[2].due_utc == NOW + timedelta(days=3, hours=-1)


def test_reminder_that_would_fall_before_the_booking_is_not_planned():
    soon = appt(start_utc=NOW + timedelta(hours=5))
    assert ids(plan_texts(SMS, None, soon, has_phone=True, now=NOW)) == ["env|A1|booked|1", "env|A1|reminder-60|1"]


def test_reschedule_plans_one_changed_text_and_cancels_old_reminders():
    before = appt(outbox_refs=[{"id": "env|A1|reminder-60|1", "bucket": "b"}, {"id": "env|A1|booked|1", "bucket": "b"}])
    after = dataclasses.replace(before, start_utc=NOW + timedelta(days=4), schedule_revision=2)
    plan = plan_texts(SMS, before, after, has_phone=True, now=NOW)
    assert ids(plan) == ["env|A1|changed|2", "env|A1|reminder-1440|2", "env|A1|reminder-60|2"]
    assert plan.cancel == ({"id": "env|A1|reminder-60|1", "bucket": "b"},)


def test_cancel_plans_one_cancellation_and_cancels_every_pending_reminder():
    before = appt(outbox_refs=[{"id": "env|A1|reminder-1440|1", "bucket": "b1"}])
    after = dataclasses.replace(before, status="cancelled")
    plan = plan_texts(SMS, before, after, has_phone=True, now=NOW)
    assert ids(plan) == ["env|A1|cancelled|1"]
    assert plan.cancel == ({"id": "env|A1|reminder-1440|1", "bucket": "b1"},)


def test_noshow_sends_nothing():
    before = appt()
    assert ids(plan_texts(SMS, before, dataclasses.replace(before, status="noshow"), has_phone=True, now=NOW)) == []


def test_nothing_is_planned_without_a_number_or_with_sms_off():
    assert ids(plan_texts(SMS, None, appt(), has_phone=False, now=NOW)) == []
    off = dataclasses.replace(SMS, enabled=False)
    assert ids(plan_texts(off, None, appt(), has_phone=True, now=NOW)) == []


def test_nothing_is_planned_once_the_visit_has_started():
    started = appt(start_utc=NOW - timedelta(minutes=1))
    assert ids(plan_texts(SMS, None, started, has_phone=True, now=NOW)) == []


def test_disabled_confirmation_still_plans_reminders():
    quiet = dataclasses.replace(SMS, confirm_booked=False)
    assert ids(plan_texts(quiet, None, appt(), has_phone=True, now=NOW)) == [
        "env|A1|reminder-1440|1", "env|A1|reminder-60|1"
    ]
