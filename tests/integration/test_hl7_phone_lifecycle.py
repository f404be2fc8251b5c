"""The privacy promise "a phone number is kept only until the visit", proved on the real store.

Each lifecycle path runs against its own environment through the HTTP function (signed requests, Cosmos DB
through the SDK); afterwards every container the app has is read whole and no document of that environment
may hold the patient's number in any form (E.164, as sent, digits only, inside base64-kept raw messages).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import appointment_key
from lib.scheduling.intake import CANCEL_NOTICE_WINDOW
from lib.store.contacts import phone_id
from lib.store.schema import CONTAINERS
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2030, 1, 10, 15, 0, tzinfo=UTC)
START = datetime(2030, 1, 20, 19, 0, tzinfo=UTC)
PHONE = "(201)555-0147"
FORMS = ("+12015550147", "2015550147", "555-0147", "5550147")
CSN = "LC-1001"


def message(event: str, minutes_after: int, control_id: str, **kw: object) -> bytes:
    """An SIU for the visit, sent ``minutes_after`` minutes after 2030-01-10 09:00 (MSH-7 orders them)."""
    sent = datetime(2030, 1, 10, 14, 0, tzinfo=UTC) + timedelta(minutes=minutes_after)
    return siu(event, csn=kw.pop("csn", CSN), start=kw.pop("start", START), control_id=control_id, sent=sent,
               phone=kw.pop("phone", PHONE), **kw)  # type: ignore[arg-type]


def _strings(value: object):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value
        if len(value) >= 8:
            try:
                yield base64.b64decode(value, validate=True).decode("latin-1")
            except (binascii.Error, ValueError):
                pass


def documents_holding_the_phone(app, environment_id: str) -> list[tuple[str, str]]:
    """(container, id) of every document of ``environment_id`` in which the number appears, in any container."""
    found = []
    for spec in CONTAINERS:
        for doc in app.store.container(spec.name).query_items("SELECT * FROM c", enable_cross_partition_query=True):
            if environment_id not in json.dumps(doc):
                continue
            if any(form in text for text in _strings(doc) for form in FORMS):
                found.append((spec.name, doc["id"]))
    return found


def phone_of(app, environment_id: str, csn: str = CSN) -> str | None:
    return app.repos.contacts.phone(appointment_key(environment_id, csn), now=NOW)


def send_due_texts(app, env: str, csn: str = CSN) -> dict[str, str]:
    """Run the dispatcher on this visit's due texts (what the queue trigger and timer do); kind -> state."""
    for item in app.repos.outbox.for_appointment(appointment_key(env, csn)):
        if item.state == "pending" and item.due_utc <= NOW:
            app.dispatcher.send_one(item.id)
    return {i.kind: i.state for i in app.repos.outbox.for_appointment(appointment_key(env, csn))}


def booked_then(event: str) -> Callable:
    def path(app, env: str) -> None:
        assert msa(post_hl7(env, message("S12", 0, "C1")))[1] == "AA"
        assert phone_of(app, env) == "+12015550147"  # kept while the visit is ahead
        assert send_due_texts(app, env)["booked"] == "sent"
        assert msa(post_hl7(env, message(event, 5, "C2")))[1] == "AA"
        if event == "S26":
            assert phone_of(app, env) is None  # no text to send: gone at once
        else:
            # Kept only for the cancellation text, at most CANCEL_NOTICE_WINDOW, and gone once it is sent.
            key = appointment_key(env, CSN)
            doc = app.store.container("visits").read_item(item=phone_id(key), partition_key=key)
            assert datetime.fromisoformat(doc["delete_after"]) == NOW + CANCEL_NOTICE_WINDOW
            assert send_due_texts(app, env)["cancelled"] == "sent"
            assert phone_of(app, env) is None
    return path


def ended_first_then_older_booking(event: str) -> Callable:
    def path(app, env: str) -> None:
        assert msa(post_hl7(env, message(event, 5, "C2")))[1] == "AA"  # tombstone, carries a phone in PID-13
        assert msa(post_hl7(env, message("S12", 0, "C1")))[1] == "AA"  # older: stale, changes nothing
        stored = app.repos.appointments.get(appointment_key(env, CSN))
        assert stored is not None and stored.status != "booked"
    return path


def rejected_booking_then_cancel(app, env: str) -> None:
    refused = post_hl7(env, message("S12", 0, "C1", processing_id="P"))  # production ID to a test environment
    assert msa(refused)[1] == "AR"
    assert len(app.repos.rejected.list(env)) == 1  # kept for the operator, with the number inside
    assert msa(post_hl7(env, message("S15", 5, "C2")))[1] == "AA"
    assert app.repos.rejected.list(env) == []


def reused_control_id_then_cancel(app, env: str) -> None:
    assert msa(post_hl7(env, message("S12", 0, "C1")))[1] == "AA"
    assert msa(post_hl7(env, message("S14", 3, "C1", duration_minutes=45)))[1] == "AR"  # same MSH-10, new body
    assert msa(post_hl7(env, message("S15", 5, "C2")))[1] == "AA"


def booking_then_null_phone(app, env: str) -> None:
    assert msa(post_hl7(env, message("S12", 0, "C1")))[1] == "AA"
    assert msa(post_hl7(env, message("S14", 5, "C2", phone='""')))[1] == "AA"
    stored = app.repos.appointments.get(appointment_key(env, CSN))
    assert stored is not None and stored.status == "booked"  # still on, just no number


def past_visit(app, env: str) -> None:
    late = message("S12", 0, "C1", start=NOW - timedelta(days=2))
    assert msa(post_hl7(env, late))[1] == "AA"


PATHS: dict[str, Callable] = {
    "S12 then S15": booked_then("S15"),
    "S12 then S17": booked_then("S17"),
    "S12 then S26": booked_then("S26"),
    "S15 before an older S12": ended_first_then_older_booking("S15"),
    "S17 before an older S12": ended_first_then_older_booking("S17"),
    "S26 before an older S12": ended_first_then_older_booking("S26"),
    "refused S12 then S15": rejected_booking_then_cancel,
    "S12, reused MSH-10, then S15": reused_control_id_then_cancel,
    "S12 then S14 with PID-13 null": booking_then_null_phone,
    "S12 of a visit already over": past_visit,
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_no_container_holds_the_phone_number_after(app, clock, environment_id, path):
    clock.set(NOW)
    make_environment(app, environment_id)
    PATHS[path](app, environment_id)
    send_due_texts(app, environment_id)
    assert documents_holding_the_phone(app, environment_id) == []


def test_the_scan_finds_a_number_that_is_kept(app, clock, environment_id):
    # The scan itself can fail: while the visit is booked and ahead, the number is where it belongs.
    clock.set(NOW)
    make_environment(app, environment_id)
    assert msa(post_hl7(environment_id, message("S12", 0, "C1")))[1] == "AA"
    key = appointment_key(environment_id, CSN)
    assert documents_holding_the_phone(app, environment_id) == [("visits", phone_id(key))]


def test_a_cancel_before_its_booking_leaves_a_tombstone_without_a_number(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id)
    assert msa(post_hl7(environment_id, message("S15", 5, "C2")))[1] == "AA"
    stored = app.repos.appointments.get(appointment_key(environment_id, CSN))
    assert (stored.status, stored.start_utc) == ("cancelled", START)
    assert phone_of(app, environment_id) is None


def test_an_empty_pid13_leaves_the_stored_number_as_it_is(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id)
    assert msa(post_hl7(environment_id, message("S12", 0, "C1")))[1] == "AA"
    assert msa(post_hl7(environment_id, message("S14", 5, "C2", phone="")))[1] == "AA"
    assert phone_of(app, environment_id) == "+12015550147"


def test_a_resent_cancel_does_not_take_the_number_from_its_waiting_cancellation_text(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id)
    assert msa(post_hl7(environment_id, message("S12", 0, "C1")))[1] == "AA"
    send_due_texts(app, environment_id)
    cancel = message("S15", 5, "C2")
    assert msa(post_hl7(environment_id, cancel))[1] == "AA"
    assert msa(post_hl7(environment_id, cancel.replace(b"|C2|", b"|C3|")))[1] == "AA"  # sent again, new MSH-10
    assert phone_of(app, environment_id) == "+12015550147"  # still waiting for the notice
    assert send_due_texts(app, environment_id)["cancelled"] == "sent"
    assert documents_holding_the_phone(app, environment_id) == []


@pytest.mark.parametrize("event", ["S15", "S17"])
def test_a_visit_cancelled_before_its_confirmation_went_out_texts_nothing_and_forgets_the_number(
        app, clock, environment_id, event):
    clock.set(NOW)
    make_environment(app, environment_id)
    assert msa(post_hl7(environment_id, message("S12", 0, "C1")))[1] == "AA"
    assert msa(post_hl7(environment_id, message(event, 5, "C2")))[1] == "AA"  # before any text was sent
    send_due_texts(app, environment_id)
    key = appointment_key(environment_id, CSN)
    texts = {t.kind: t for t in app.repos.outbox.for_appointment(key)}
    assert (texts["cancelled"].state, texts["cancelled"].reason) == (
        "skipped", "the patient was never texted about this visit")
    assert texts["booked"].state == "skipped"
    assert documents_holding_the_phone(app, environment_id) == []


def test_a_cancellation_whose_confirmation_may_have_reached_the_patient_is_sent(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id)
    assert msa(post_hl7(environment_id, message("S12", 0, "C1")))[1] == "AA"
    key = appointment_key(environment_id, CSN)
    booked = next(t for t in app.repos.outbox.for_appointment(key) if t.kind == "booked")
    app.repos.outbox.transition(booked, state="unknown", reason="no answer from ACS")  # ACS may have sent it
    assert msa(post_hl7(environment_id, message("S15", 5, "C2")))[1] == "AA"
    assert send_due_texts(app, environment_id)["cancelled"] == "sent"
    assert phone_of(app, environment_id) is None
