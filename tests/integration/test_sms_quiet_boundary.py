"""Quiet-hours boundary end to end: HL7 S12 -> planned reminder -> the every-minute timer run that reads the
clock moments after the planned instant -> ACS stand-in. The reminder planning put at the quiet start (moved
there, or naturally due at it) is sent by that run, not deferred to the morning or skipped (docs/sms.md
"Quiet hours")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from azure.functions.timer import TimerRequest

from lib.models import SmsSettings, appointment_key
from local.siu_builder import siu
from tests.support.calls import post_hl7
from tests.support.environments import make_environment
from tests.support.standins import AcsStandin

pytestmark = pytest.mark.integration

SENDER = "+18005550117"  # this module's own sender: opt-outs and rate windows of other modules do not apply
NY, LORD_HOWE = "America/New_York", "Australia/Lord_Howe"


def local(zone: str, *args: float) -> datetime:
    whole = [int(a) for a in args]
    at = datetime(*whole, tzinfo=ZoneInfo(zone)).astimezone(UTC)  # type: ignore[arg-type]
    return at + timedelta(seconds=args[-1] - whole[-1]) if len(args) == 6 else at


def run_timer() -> None:
    from functions.reminders import reminders_due

    reminders_due.build().get_user_function()(TimerRequest(past_due=False))


@pytest.mark.parametrize(
    ("zone", "quiet", "booked_at", "visit", "run", "phone"),
    [
        # The tester's case: booked Tue 20:55 EST for Wed 07:45; the 1 h reminder moved to Tue 21:00:00.
        pytest.param(NY, ("21:00", "08:00"), (2026, 12, 8, 20, 55), (2026, 12, 9, 7, 45), (2026, 12, 8, 21, 0, 1),
                     "(201)555-0121", id="moved-run-1s-after"),
        pytest.param(NY, ("21:00", "08:00"), (2026, 12, 8, 20, 55), (2026, 12, 9, 8, 30), (2026, 12, 8, 21, 0, 59),
                     "(201)555-0122", id="moved-run-59s-after"),
        # Naturally due at the quiet start: a visit at 22:00, its 1 h reminder at 21:00:00.
        pytest.param(NY, ("21:00", "08:00"), (2026, 12, 8, 12, 0), (2026, 12, 8, 22, 0), (2026, 12, 8, 21, 0, 0.4),
                     "(201)555-0123", id="naturally-due"),
        # Spring-forward evening (Sun Mar 8 2026, 21:00 EDT) and Lord Howe's 30-minute DST day (Sun Oct 4 2026).
        pytest.param(NY, ("21:00", "08:00"), (2026, 3, 8, 12, 0), (2026, 3, 9, 7, 45), (2026, 3, 8, 21, 0, 30),
                     "(201)555-0124", id="ny-dst-day"),
        pytest.param(LORD_HOWE, ("21:00", "08:00"), (2026, 10, 4, 12, 0), (2026, 10, 5, 7, 45),
                     (2026, 10, 4, 21, 0, 2), "(201)555-0125", id="lord-howe-dst-day"),
        # A window that does not cross midnight: visit 13:30, its 1 h reminder moved to 12:00.
        pytest.param(NY, ("12:00", "13:00"), (2026, 12, 9, 9, 0), (2026, 12, 9, 13, 30), (2026, 12, 9, 12, 0, 20),
                     "(201)555-0126", id="same-day-window"),
    ],
)
def test_the_reminder_planned_for_the_quiet_start_is_sent_by_the_run_just_after_it(
        app, clock, environment_id, service_settings, zone, quiet, booked_at, visit, run, phone):
    sms = SmsSettings(enabled=True, sender=SENDER, quiet_hours=quiet, reminder_offsets_minutes=(60,),
                      confirm_booked=False)
    env = make_environment(app, environment_id, sms=sms, time_zone=zone)
    now, start = local(zone, *booked_at), local(zone, *visit)
    clock.set(now)
    csn = "84" + uuid.uuid4().hex[:6].translate(str.maketrans("abcdef", "123456"))
    response = post_hl7(env.id, siu("S12", csn=csn, start=start, control_id=uuid.uuid4().hex[:12], sent=now,
                                    phone=phone, time_zone=zone))
    assert b"MSA|AA" in response.get_body()
    [reminder] = app.repos.outbox.for_appointment(appointment_key(env.id, csn))
    quiet_start = local(zone, *run[:5])
    assert (reminder.id.rsplit("|", 2)[1], reminder.due_utc) == ("reminder-60", quiet_start)

    clock.set(local(zone, *run))
    run_timer()

    [reminder] = app.repos.outbox.for_appointment(appointment_key(env.id, csn))
    assert (reminder.state, reminder.reason) == ("sent", None)
    texts = AcsStandin(service_settings).texts(env.id)
    assert [t["to"] for t in texts] == ["+1" + "".join(c for c in phone if c.isdigit())]


def test_a_run_more_than_the_tolerance_late_is_a_catch_up_and_waits_for_the_morning(app, clock, environment_id,
                                                                                      service_settings):
    sms = SmsSettings(enabled=True, sender=SENDER, reminder_offsets_minutes=(1440,), confirm_booked=False)
    env = make_environment(app, environment_id, sms=sms)
    now = local(NY, 2026, 12, 7, 12, 0)
    clock.set(now)
    csn = "85" + uuid.uuid4().hex[:6].translate(str.maketrans("abcdef", "123456"))
    # Visit Wed 20:55: the 24 h reminder is due Tue 20:55 (allowed).
    start = local(NY, 2026, 12, 9, 20, 55)
    post_hl7(env.id, siu("S12", csn=csn, start=start, control_id=uuid.uuid4().hex[:12], sent=now,
                         phone="(201)555-0127"))
    clock.set(local(NY, 2026, 12, 8, 21, 6))  # 11 minutes after 20:55: a catch-up inside quiet hours
    run_timer()
    [reminder] = app.repos.outbox.for_appointment(appointment_key(env.id, csn))
    assert (reminder.state, reminder.reason) == ("pending", "deferred: quiet hours")
    assert reminder.due_utc == local(NY, 2026, 12, 9, 8, 0)
    assert AcsStandin(service_settings).texts(env.id) == []
