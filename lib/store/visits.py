"""One visit's documents, written together: container ``visits``, partition key ``/appointmentKey``.

A visit's partition holds three kinds of document (field ``type``), each carrying ``appointmentKey``:

- ``appointment`` (id = the appointment key): status, times, revision, planned texts; no personal data
  (:mod:`lib.store.appointments`);
- ``phone`` (id = ``{key}|phone``): the SMS number, with its own ``ttl`` and ``delete_after``
  (:mod:`lib.store.contacts`), apart from the appointment so deleting it never races the appointment;
- ``text`` (id = ``{key}|{kind}|{revision}``): one outbox item per text (:mod:`lib.store.outbox`).

What the intake writes for one message is ONE request (:meth:`VisitDocuments.write`): a Cosmos DB
transactional batch within the visit's partition, all or nothing: the appointment (create, or replace with
``If-Match``), the phone number (upsert) and each new text (create). A text that already exists (a resend
after a lost answer) fails its create with 409 and the whole batch with it; the batch is sent again without
that text. A create of the appointment that finds it (409) or a replace that finds it changed (412) is the
caller's cue to read it and decide again: nothing of that batch was kept.

Where transactional batches cannot run (``transactional_batch=False``, ``COSMOS_TRANSACTIONAL_BATCH=0``: a
Cosmos-compatible server without them), the same documents are written one at a time, the appointment
first: its ``planned_outbox`` lets a resend of the same message create the texts an interrupted write left
out (``lib/scheduling/intake.py``, outcome ``redelivered``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.cosmos import exceptions as cosmos_errors

from lib.models import Appointment, OutboxItem
from lib.store.appointments import AppointmentRepository
from lib.store.contacts import live_phone, phone_id
from lib.store.cosmos import CosmosStore, read_many, translated_errors
from lib.store.errors import AlreadyExists, ConcurrencyConflict
from lib.store.outbox import OutboxRepository
from lib.store.schema import VISITS

#: Cosmos DB refuses a transactional batch of more than 100 operations.
MAX_BATCH_OPERATIONS = 100


@dataclass(frozen=True)
class VisitWritten:
    """What :meth:`VisitDocuments.write` stored: the appointment as stored (``None`` when none was written) and
    every text asked for, as stored (created now, or as it already was)."""

    appointment: Appointment | None
    texts: tuple[OutboxItem, ...]


class VisitDocuments:
    """Reads and writes one visit's appointment, phone number and new texts together."""

    def __init__(self, store: CosmosStore, *, transactional_batch: bool = True) -> None:
        self._container = store.container(VISITS)
        self._appointments = AppointmentRepository(store)
        self._outbox = OutboxRepository(store)
        self._batch = transactional_batch

    def read(self, key: str, *, now: datetime) -> tuple[Appointment | None, str | None]:
        """The appointment of visit ``key`` and its live phone number (:func:`lib.store.contacts.live_phone`),
        in one round trip (ReadMany within the visit's partition).

        Raises:
            StoreUnavailable, StoreError: see :func:`lib.store.cosmos.translated_errors`.
        """
        docs = {doc["id"]: doc for doc in read_many(self._container, [(key, key), (phone_id(key), key)])}
        appointment = Appointment.from_doc(docs[key]) if key in docs else None
        return appointment, live_phone(docs.get(phone_id(key)), now)

    def write(
        self, key: str, *, appointment: Appointment | None, create: bool = False,
        phone: dict[str, Any] | None = None, texts: tuple[OutboxItem, ...] = (),
    ) -> VisitWritten:
        """Store, in visit ``key``'s partition, ``appointment`` (created when ``create``, else replaced only if
        unchanged since it was read), the ``phone`` document (:func:`lib.store.contacts.phone_document`) and
        each of ``texts`` unless it exists.

        Raises:
            AlreadyExists: ``create`` and the appointment exists (with a batch, nothing was written).
            ConcurrencyConflict: the appointment changed since it was read (with a batch, nothing was written).
            StoreUnavailable, StoreError: see :func:`lib.store.cosmos.translated_errors`.
        """
        fixed: list[tuple[Any, ...]] = []
        if appointment is not None:
            doc = appointment.to_doc()
            fixed.append(("create", (doc,)) if create else
                         ("replace", (doc["id"], doc), {"if_match_etag": appointment.etag}))
        if phone is not None:
            fixed.append(("upsert", (phone,)))
        if not self._batch or len(fixed) + len(texts) > MAX_BATCH_OPERATIONS:
            return self._one_by_one(appointment, create, phone, texts)
        if len(fixed) + len(texts) <= 1:  # one document: a plain write is the same single round trip
            return self._one_by_one(appointment, create, phone, texts)
        to_create = list(texts)
        while True:
            operations = fixed + [("create", (text.to_doc(),)) for text in to_create]
            try:
                with translated_errors():
                    results = self._container.execute_item_batch(operations, partition_key=key)
                break
            except cosmos_errors.CosmosBatchOperationError as failed:
                index, status = failed.error_index, failed.status_code
                if index >= len(fixed) and status == 409:
                    del to_create[index - len(fixed)]  # that text exists already: the rest again, without it
                    if fixed or to_create:
                        continue
                    results = []
                    break
                if index == 0 and appointment is not None and status == 409:
                    raise AlreadyExists("appointment already exists") from failed
                if index == 0 and appointment is not None and status == 412:
                    raise ConcurrencyConflict("appointment changed since it was read") from failed
                with translated_errors():
                    raise cosmos_errors.CosmosHttpResponseError(
                        status_code=status, message="transactional batch failed") from failed
        stored = Appointment.from_doc(results[0]["resourceBody"]) if appointment is not None else None
        created = {body["id"]: OutboxItem.from_doc(body)
                   for body in (result["resourceBody"] for result in results[len(fixed):])}
        missing = [(text.id, key) for text in texts if text.id not in created]
        found = {doc["id"]: OutboxItem.from_doc(doc) for doc in read_many(self._container, missing)}
        return VisitWritten(stored, tuple(created.get(t.id) or found.get(t.id) or t for t in texts))

    def _one_by_one(
        self, appointment: Appointment | None, create: bool, phone: dict[str, Any] | None,
        texts: tuple[OutboxItem, ...],
    ) -> VisitWritten:
        stored = None
        if appointment is not None:
            stored = self._appointments.create(appointment) if create else self._appointments.replace(appointment)
        if phone is not None:
            with translated_errors():
                self._container.upsert_item(phone)
        return VisitWritten(stored, tuple(self._outbox.create_once(text)[0] for text in texts))
