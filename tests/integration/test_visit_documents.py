"""A visit's documents written together (``lib/store/visits.py``), on both paths: one transactional batch
within the visit's partition, and one document at a time (a store without batches)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import Appointment, OutboxItem, hour_bucket
from lib.sms.planner import outbox_id
from lib.store.contacts import phone_document
from lib.store.errors import AlreadyExists, ConcurrencyConflict
from lib.store.visits import VisitDocuments
from local.store_calls import StoreCallCounter

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
PHONE = "+12015550131"


@pytest.fixture(params=[True, False], ids=["transactional-batch", "one-document-at-a-time"])
def visits(app, request) -> VisitDocuments:
    return VisitDocuments(app.store, transactional_batch=request.param)


@pytest.fixture
def appointment() -> Appointment:
    return Appointment(environment_id=f"t-{uuid.uuid4().hex[:10]}", appointment_id="4100001", status="booked",
                       start_utc=START, end_utc=START + timedelta(minutes=30), duration_minutes=30,
                       source_time_zone="America/New_York", schedule_revision=1, link_id="link-4100001",
                       order_key="2026-11-29T12:00:00.000000|M1")


def texts_of(appointment: Appointment) -> tuple[OutboxItem, ...]:
    return tuple(
        OutboxItem(id=outbox_id(appointment.key, kind, 1), bucket=hour_bucket(due), appointment_key=appointment.key,
                   environment_id=appointment.environment_id, kind=kind.split("-")[0], revision=1,  # type: ignore
                   due_utc=due)
        for kind, due in (("booked", NOW), ("reminder-1440", START - timedelta(days=1)),
                          ("reminder-60", START - timedelta(hours=1)))
    )


def phone(appointment: Appointment) -> dict:
    return phone_document(appointment.key, appointment.environment_id, PHONE, delete_after=START + timedelta(hours=2),
                          now=NOW)


def test_a_new_visit_is_stored_with_its_phone_and_texts(app, visits, appointment):
    written = visits.write(appointment.key, appointment=appointment, create=True, phone=phone(appointment),
                           texts=texts_of(appointment))
    assert written.appointment is not None and written.appointment.etag
    assert [t.state for t in written.texts] == ["pending"] * 3 and all(t.etag for t in written.texts)
    assert visits.read(appointment.key, now=NOW) == (written.appointment, PHONE)
    assert sorted(t.id for t in app.repos.outbox.for_appointment(appointment.key)) == sorted(
        t.id for t in texts_of(appointment))


def test_the_batch_is_one_round_trip_and_one_by_one_is_one_per_document(app, appointment):
    counts = {}
    for batch in (True, False):
        visit = dataclasses.replace(appointment, appointment_id=f"4100001-{batch}")
        counter = StoreCallCounter(app.settings.cosmos_endpoint)
        with counter.installed():
            VisitDocuments(app.store, transactional_batch=batch).write(
                visit.key, appointment=visit, create=True, phone=phone(visit), texts=texts_of(visit))
        counts[batch] = counter.total
    assert counts == {True: 1, False: 5}


def test_a_text_that_exists_is_kept_as_it_is_and_the_rest_is_written(app, visits, appointment):
    booked = texts_of(appointment)[0]
    app.repos.outbox.create_once(dataclasses.replace(booked, state="sent", sent_utc=NOW))
    written = visits.write(appointment.key, appointment=appointment, create=True, phone=phone(appointment),
                           texts=texts_of(appointment))
    assert [t.state for t in written.texts] == ["sent", "pending", "pending"]  # never reset to pending
    assert app.repos.outbox.get(booked.id).state == "sent"
    assert app.repos.appointments.get(appointment.key) is not None


def test_creating_a_visit_that_exists_raises_and_writes_nothing_of_that_batch(app, visits, appointment):
    visits.write(appointment.key, appointment=appointment, create=True)
    with pytest.raises(AlreadyExists):
        visits.write(appointment.key, appointment=appointment, create=True, phone=phone(appointment),
                     texts=texts_of(appointment))
    # A batch is all or nothing; one by one, the appointment goes first and nothing follows its failure.
    assert visits.read(appointment.key, now=NOW)[1] is None
    assert app.repos.outbox.for_appointment(appointment.key) == []


def test_a_replace_of_a_changed_visit_raises_and_writes_nothing_of_that_batch(app, visits, appointment):
    first = visits.write(appointment.key, appointment=appointment, create=True).appointment
    assert first is not None
    visits.write(appointment.key, appointment=dataclasses.replace(first, department="CARDIO"))  # another writer
    moved = dataclasses.replace(first, start_utc=START + timedelta(days=1), schedule_revision=2)
    with pytest.raises(ConcurrencyConflict):
        visits.write(appointment.key, appointment=moved, phone=phone(appointment), texts=texts_of(appointment))
    stored, stored_phone = visits.read(appointment.key, now=NOW)
    assert stored is not None and (stored.department, stored.schedule_revision) == ("CARDIO", 1)
    assert stored_phone is None
    assert app.repos.outbox.for_appointment(appointment.key) == []


def test_texts_alone_are_created_once_each(app, visits, appointment):
    """A redelivered message writes no appointment: only the texts it planned, once each."""
    first = visits.write(appointment.key, appointment=None, texts=texts_of(appointment))
    again = visits.write(appointment.key, appointment=None, texts=texts_of(appointment))
    assert first.appointment is None and [t.id for t in again.texts] == [t.id for t in first.texts]
    assert len(app.repos.outbox.for_appointment(appointment.key)) == 3
