"""Join-link IDs: the ID inside an SMS link -> the appointment it opens, until the link expires.

A link is the document ``link`` in the ``hl7_messages`` partition named by its link ID
(:mod:`lib.store.messages`). A visit booked by an HL7 message takes that message's partition as its link ID,
so the intake writes the link in the same transactional batch as the message's record
(:meth:`lib.store.messages.ProcessedMessages.record`); a visit opened by a launch has a random link ID, a
partition of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lib.models import cosmos_ttl, iso
from lib.store.cosmos import CosmosStore, read_or_none, translated_errors

_LINK_ID = "link"


def link_document(link_id: str, appointment_key: str, *, expires: datetime, now: datetime) -> dict[str, Any]:
    """The document that maps ``link_id`` to ``appointment_key`` until ``expires`` (UTC)."""
    return {"id": _LINK_ID, "messageKey": link_id, "appointmentKey": appointment_key, "expires": iso(expires),
            "ttl": cosmos_ttl((expires - now).total_seconds())}


class LinkRepository:
    """Maps a link ID to an appointment key until the link expires."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("hl7_messages")

    def put(self, link_id: str, appointment_key: str, *, expires: datetime, now: datetime) -> None:
        """Store or extend the mapping; it expires at ``expires`` (UTC)."""
        self.put_document(link_document(link_id, appointment_key, expires=expires, now=now))

    def put_document(self, link: dict[str, Any]) -> None:
        """Store or extend a mapping made by :func:`link_document`."""
        with translated_errors():
            self._container.upsert_item(link)

    def appointment_key(self, link_id: str, *, now: datetime) -> str | None:
        """The appointment key of a live link, or ``None`` when unknown or expired."""
        doc = read_or_none(self._container, _LINK_ID, link_id)
        if not doc or datetime.fromisoformat(doc["expires"]) <= now:
            return None
        return doc["appointmentKey"]
