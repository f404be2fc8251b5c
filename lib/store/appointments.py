"""Appointments: the ``appointment`` document of each visit's partition (container ``visits``, partition key
``/appointmentKey`` = ``{environmentId}|{appointmentId}``, see :mod:`lib.store.visits`)."""

from __future__ import annotations

from lib.models import Appointment, Meeting
from lib.store.cosmos import CosmosStore, if_match, read_many, read_or_none, translated_errors
from lib.store.schema import VISITS


class AppointmentRepository:
    """Point reads and ETag-guarded writes of :class:`Appointment`."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container(VISITS)

    def get(self, key: str) -> Appointment | None:
        """The appointment with document ID ``key``, or ``None``."""
        doc = read_or_none(self._container, key, key)
        return Appointment.from_doc(doc) if doc else None

    def get_many(self, keys: list[str]) -> dict[str, Appointment]:
        """The stored appointments among ``keys``, by key, in one batch read (ReadMany)."""
        docs = read_many(self._container, [(key, key) for key in keys])
        return {doc["id"]: Appointment.from_doc(doc) for doc in docs}

    def create(self, appointment: Appointment) -> Appointment:
        """Store a new appointment.

        Raises:
            AlreadyExists: another writer created it first.
        """
        with translated_errors():
            doc = self._container.create_item(appointment.to_doc())
        return Appointment.from_doc(doc)

    def replace(self, appointment: Appointment) -> Appointment:
        """Replace an appointment read earlier, only if nobody changed it since (``If-Match``).

        Raises:
            ConcurrencyConflict: the stored document's ETag differs.
        """
        with translated_errors():
            doc = self._container.replace_item(
                item=appointment.key, body=appointment.to_doc(), **if_match(appointment.etag)
            )
        return Appointment.from_doc(doc)

    def group_meeting(self, environment_id: str, conference_id: str) -> Meeting | None:
        """The meeting already made for any appointment of group visit ``conference_id``, or ``None``.

        A cross-partition query (each visit is its own partition); group visits are few and
        the query runs only until the group has its meeting.
        """
        with translated_errors():
            rows = list(
                self._container.query_items(
                    "SELECT TOP 1 c.meeting FROM c WHERE c.type = 'appointment' AND c.environmentId = @env "
                    "AND c.conference_id = @conf "
                    "AND IS_DEFINED(c.meeting.id)",
                    parameters=[{"name": "@env", "value": environment_id}, {"name": "@conf", "value": conference_id}],
                    enable_cross_partition_query=True,
                )
            )
        return Meeting(**rows[0]["meeting"]) if rows else None
