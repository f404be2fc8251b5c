"""Who an anonymous meeting participant is (container ``participant_identities``, partition ``/id``).

The patient's join page issues an ACS identity per join (``8:acs:...``); whoever issues it records here which
visit and role it belongs to, so the meeting's roster can name the participant "patient" (or "interpreter")
without any name. Call :meth:`ParticipantIdentityRepository.register` right after creating the identity::

    services().participant_identities.register(acs_user_id, appointment.key, "patient", expires=end + 1 day)

One person may hold several identities (the patient on a phone and a laptop, a reload of the page, a relative on
a second phone): every ``patient`` identity of a visit is the one participant "patient"; identities registered
with the same ``person`` reference (e.g. one interpreter's link) are one interpreter.

The document expires with ``ttl`` (and is never needed after the visit's call record is settled).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lib.models import iso
from lib.store.cosmos import CosmosStore, read_or_none, translated_errors

IdentityRole = Literal["patient", "interpreter", "other"]


@dataclass(frozen=True)
class ParticipantIdentity:
    """An issued ACS identity: its visit, role and, when the issuer knows it, an opaque ``person`` reference
    shared by every identity of the same person."""

    acs_user_id: str
    appointment_key: str
    role: str
    person: str | None = None


class ParticipantIdentityRepository:
    """Register and look up issued ACS identities (point reads by the ACS user ID)."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("participant_identities")

    def register(self, acs_user_id: str, appointment_key: str, role: IdentityRole, *, expires: datetime,
                 now: datetime, person: str | None = None) -> None:
        """Record that ``acs_user_id`` joins visit ``appointment_key`` as ``role`` (kept until ``expires``);
        ``person``: an opaque reference (no name) the issuer gives every identity of one person."""
        ttl = max(60, int((expires - now).total_seconds()))
        with translated_errors():
            self._container.upsert_item({"id": acs_user_id, "appointmentKey": appointment_key, "role": role,
                                         "person": person, "expires_utc": iso(expires), "ttl": ttl})

    def get(self, acs_user_id: str) -> ParticipantIdentity | None:
        """The identity's visit and role, or ``None`` when we did not issue it."""
        doc = read_or_none(self._container, acs_user_id, acs_user_id)
        if not doc:
            return None
        return ParticipantIdentity(doc["id"], doc["appointmentKey"], doc.get("role", "other"), doc.get("person"))
