"""Texts from HL7 to the ACS stand-in: exactly once, on time, and never after a cancel (issue: foundation,
steps 2, 3 and 7; the outbox state machine)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from lib.models import appointment_key
from lib.queues import encode
from local.siu_builder import siu
from tests.support.calls import post_hl7
from tests.support.environments import SENDER, make_environment
from tests.support.standins import AcsStandin

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)  # 15:00 in New York
CSN = "8100001"


@pytest.fixture
def acs(service_settings):
    standin = AcsStandin(service_settings)
    yield standin
    standin.clear_faults()


@pytest.fixture
def env(app, clock, environment_id):
    clock.set(NOW)
    return make_environment(app, environment_id)


def book(env, *, phone: str = "(201)555-0123", event: str = "S12", control: str = "C1", sent=NOW, start=START):
    return post_hl7(env.id, siu(event, csn=CSN, start=start, control_id=control, sent=sent, phone=phone))


def send_queued(app, env) -> list[str]:
    """Run the ``sms_outbox`` queue function on every pending text due now, as the host would."""
    from functions.reminders import sms_outbox

    function = sms_outbox.build().get_user_function()
    outcomes = []
    for item in app.repos.outbox.for_appointment(appointment_key(env.id, CSN)):
        if item.state == "pending" and item.due_utc <= app.clock.now():
            body = encode({"id": item.id}).encode()
            function(QueueMessage(id="m1", body=body, dequeue_count=1))
            outcomes.append(app.repos.outbox.get(item.id).state)
    return outcomes


def run_timer(app) -> None:
    from functions.reminders import reminders_due

    reminders_due.build().get_user_function()(TimerRequest(past_due=False))


def test_booking_sends_one_confirmation_with_local_time_and_an_opaque_link(app, env, acs):
    book(env)
    assert send_queued(app, env) == ["sent"]
    [text] = acs.texts(env.id)
    assert text["to"] == "+12015550123"
    assert text["from"] == SENDER
    assert text["enableDeliveryReport"] is True
    assert text["message"].startswith("Contoso Health: your video visit is booked for Thu Dec 3, 3:00 PM EST. ")
    assert f"{app.settings.public_base_url}/api/join/" in text["message"]
    assert CSN not in text["message"]
    assert "PATIENT" not in text["message"] and "CLINICIAN" not in text["message"]


def test_redelivered_queue_message_does_not_text_twice(app, env, acs):
    book(env)
    send_queued(app, env)
    from functions.reminders import sms_outbox

    item = next(i for i in app.repos.outbox.for_appointment(appointment_key(env.id, CSN)) if i.kind == "booked")
    body = encode({"id": item.id}).encode()
    sms_outbox.build().get_user_function()(QueueMessage(id="m1", body=body, dequeue_count=2))
    assert len(acs.texts(env.id)) == 1


def test_reminder_is_sent_once_when_due_even_if_the_timer_fires_twice(app, env, clock, acs):
    book(env)
    send_queued(app, env)
    clock.set(START - timedelta(hours=24) - timedelta(minutes=1))
    run_timer(app)
    assert len(acs.texts(env.id)) == 1  # not due yet
    clock.set(START - timedelta(hours=24) + timedelta(minutes=1))
    run_timer(app)
    run_timer(app)
    texts = acs.texts(env.id)
    assert len(texts) == 2
    assert texts[1]["message"].startswith("Contoso Health: reminder of your video visit Thu Dec 3, 3:00 PM EST.")


def test_two_dispatchers_at_once_send_each_due_reminder_exactly_once(app, env, clock, acs):
    from functions.dependencies import Services

    book(env)
    send_queued(app, env)
    clock.set(START - timedelta(minutes=30))  # both reminders are due (a catch-up after downtime)
    workers = [Services() for _ in range(2)]  # two hosts: separate clients, same store
    barrier = threading.Barrier(2)

    def run(services) -> None:
        barrier.wait()
        services.dispatcher.run_due()

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reminders = [t for t in acs.texts(env.id) if "reminder" in t["message"]]
    assert len(reminders) == 2
    assert len({t["tag"] for t in reminders}) == 2


def test_cancel_sends_one_cancellation_and_no_reminder_follows(app, env, clock, acs):
    book(env)
    send_queued(app, env)
    clock.set(NOW + timedelta(hours=1))
    book(env, event="S15", control="C2", sent=NOW + timedelta(hours=1))
    send_queued(app, env)
    texts = acs.texts(env.id)
    assert "has been cancelled" in texts[-1]["message"]
    assert len(texts) == 2
    clock.set(START - timedelta(minutes=30))
    run_timer(app)
    assert len(acs.texts(env.id)) == 2


def test_throttled_send_is_retried_later_and_sent_once(app, env, clock, acs):
    book(env)
    acs.fail_next({"status": 429, "retry_after": 20})
    assert send_queued(app, env) == ["pending"]
    assert acs.texts(env.id) == []
    clock.set(NOW + timedelta(seconds=21))
    run_timer(app)
    assert len(acs.texts(env.id)) == 1


def test_permanent_recipient_error_is_recorded_and_not_retried(app, env, clock, acs):
    acs.fail_recipient("+12015550177", 400, "Invalid To phone number format.")
    book(env, phone="(201)555-0177")
    assert send_queued(app, env) == ["failed"]
    item = next(i for i in app.repos.outbox.for_appointment(appointment_key(env.id, CSN)) if i.kind == "booked")
    assert "Invalid To phone number format." in item.reason
    assert "5550177" not in item.reason
    clock.set(NOW + timedelta(minutes=5))
    run_timer(app)
    assert acs.texts(env.id) == []
