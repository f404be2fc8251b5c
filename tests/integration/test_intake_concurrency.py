"""Concurrent deliveries against the intake's document shapes: the message record and its signatures in one
partition (``hl7_messages``), the planned texts on the appointment, the outbox by deterministic IDs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import appointment_key
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7
from tests.support.environments import make_environment
from tests.support.hl7_signing import default_signer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


@pytest.fixture
def env(app, clock, environment_id):
    clock.set(NOW)
    return make_environment(app, environment_id)


def texts(app, key: str) -> list[str]:
    return sorted(item.id.removeprefix(key + "|") for item in app.repos.outbox.for_appointment(key))


def test_the_same_message_sent_eight_times_at_once_is_applied_once_with_each_text_once(app, env):
    body = siu("S12", csn="7100001", start=START, control_id="CC-1", sent=NOW)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post_hl7(env.id, body), range(8)))  # each signed anew
    assert [(a.status_code, msa(a)[1]) for a in answers] == [(200, "AA")] * 8
    key = appointment_key(env.id, "7100001")
    assert texts(app, key) == ["booked|1", "reminder-1440|1", "reminder-60|1"]
    assert app.repos.appointments.get(key).schedule_revision == 1


def test_one_signed_request_replayed_six_times_at_once_is_accepted_once(app, env):
    body = siu("S12", csn="7100002", start=START, control_id="CC-2", sent=NOW)
    headers = {"content-type": "application/hl7-v2+er7", **default_signer().headers(env.id, body)}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_hl7(env.id, body, headers), range(6)))
    outcomes = sorted((a.status_code, a.mimetype.split(";")[0]) for a in answers)
    assert outcomes == [(200, "application/hl7-v2+er7")] + [(401, "application/problem+json")] * 5
    assert msa(next(a for a in answers if a.status_code == 200))[1] == "AA"
    assert texts(app, appointment_key(env.id, "7100002")) == ["booked|1", "reminder-1440|1", "reminder-60|1"]


def test_a_booking_and_its_cancellation_arriving_together_end_cancelled_and_no_reminder_goes_out(app, env, clock):
    booked = siu("S12", csn="7100003", start=START, control_id="CC-3", sent=NOW)
    cancelled = siu("S15", csn="7100003", start=START, control_id="CC-4", sent=NOW + timedelta(minutes=5))
    for _ in range(3):  # the race goes either way; every order must end the same
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda body: post_hl7(env.id, body), [booked, cancelled]))
        assert [msa(a)[1] for a in answers] == ["AA", "AA"]
    key = appointment_key(env.id, "7100003")
    assert app.repos.appointments.get(key).status == "cancelled"
    # A reminder the booking created after the cancellation looked for it stays pending, and is skipped
    # when it comes due: the dispatcher reads the appointment before every claim.
    for item in app.repos.outbox.for_appointment(key):
        if item.kind == "reminder" and item.state == "pending":
            clock.set(item.due_utc)
            assert app.dispatcher.send_one(item.id) == "skipped"
    assert [i.id for i in app.repos.outbox.for_appointment(key) if i.kind == "reminder" and i.state == "sent"] == []


def test_a_new_booking_takes_three_store_round_trips_and_its_join_link_opens_the_visit(app, env):
    from local.store_calls import StoreCallCounter

    assert msa(post_hl7(env.id, siu("S12", csn="7100010", start=START, control_id="CC-10", sent=NOW)))[1] == "AA"
    counter = StoreCallCounter(app.settings.cosmos_endpoint)  # the environment is cached by now
    body = siu("S12", csn="7100011", start=START, control_id="CC-11", sent=NOW)
    with counter.installed():
        assert msa(post_hl7(env.id, body))[1] == "AA"
        booked = counter.total
        counter.reset()
        assert msa(post_hl7(env.id, body))[1] == "AA"  # the sender's resend
        resent = counter.total
    assert (booked, resent) == (3, 1)
    key = appointment_key(env.id, "7100011")
    appointment = app.repos.appointments.get(key)
    assert app.repos.links.appointment_key(appointment.link_id, now=NOW) == key


def test_two_messages_booking_one_visit_at_once_leave_one_join_link_that_opens_it(app, env):
    first = siu("S12", csn="7100012", start=START, control_id="CC-12", sent=NOW)
    second = siu("S12", csn="7100012", start=START, control_id="CC-13", sent=NOW + timedelta(seconds=1))
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda body: post_hl7(env.id, body), [first, second]))
    assert [msa(a)[1] for a in answers] == ["AA", "AA"]
    key = appointment_key(env.id, "7100012")
    appointment = app.repos.appointments.get(key)
    assert app.repos.links.appointment_key(appointment.link_id, now=NOW) == key


def test_a_reschedule_moves_the_join_links_expiry_with_the_visit(app, env):
    booked = siu("S12", csn="7100014", start=START, control_id="CC-14", sent=NOW)
    later = START + timedelta(days=5)
    moved = siu("S14", csn="7100014", start=later, control_id="CC-15", sent=NOW + timedelta(minutes=1))
    assert [msa(post_hl7(env.id, body))[1] for body in (booked, moved)] == ["AA", "AA"]
    key = appointment_key(env.id, "7100014")
    link_id = app.repos.appointments.get(key).link_id
    # Past the first visit's end plus two hours, the link opens the visit still: it follows the new end.
    assert app.repos.links.appointment_key(link_id, now=START + timedelta(days=1)) == key
    assert app.repos.links.appointment_key(link_id, now=later + timedelta(days=1)) is None
