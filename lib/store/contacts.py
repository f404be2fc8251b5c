"""Patient phone numbers: the ``phone`` document of each visit's partition (container ``visits``, id
``{appointmentKey}|phone``, see :mod:`lib.store.visits`), apart from the appointment and deleted after the visit.

Each document has a Cosmos ``ttl`` (seconds) recomputed on every write, and ``delete_after`` (UTC) that the
purge timer uses too, because the local Cosmos-compatible server does not enforce TTL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lib.models import cosmos_ttl, iso
from lib.store.cosmos import CosmosStore, delete_if_exists, read_many, read_or_none, translated_errors
from lib.store.schema import VISITS


def phone_id(key: str) -> str:
    """The document ID of the phone number of appointment ``key`` (in the visit's partition ``key``)."""
    return f"{key}|phone"


def phone_document(
    key: str, environment_id: str, phone_e164: str, *, delete_after: datetime, now: datetime
) -> dict[str, Any]:
    """The document holding the number of appointment ``key`` until ``delete_after`` (UTC)."""
    return {
        "id": phone_id(key),
        "appointmentKey": key,
        "type": "phone",
        "environmentId": environment_id,
        "phone_e164": phone_e164,
        "delete_after": iso(delete_after),
        "ttl": cosmos_ttl((delete_after - now).total_seconds()),
    }


class ContactRepository:
    """The SMS phone number of one appointment."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container(VISITS)

    def put(self, key: str, environment_id: str, phone_e164: str, *, delete_after: datetime, now: datetime) -> None:
        """Store or replace the number for appointment ``key``; it expires at ``delete_after`` (UTC)."""
        with translated_errors():
            self._container.upsert_item(
                phone_document(key, environment_id, phone_e164, delete_after=delete_after, now=now)
            )

    def phone(self, key: str, *, now: datetime) -> str | None:
        """The E.164 number of appointment ``key``; ``None`` when absent or past ``delete_after``."""
        return live_phone(read_or_none(self._container, phone_id(key), key), now)

    def phones(self, keys: list[str], *, now: datetime) -> dict[str, str]:
        """The live numbers of appointments ``keys`` (absent or past ``delete_after``: left out), one batch read."""
        docs = read_many(self._container, [(phone_id(key), key) for key in keys])
        return {doc["appointmentKey"]: doc["phone_e164"] for doc in docs if live_phone(doc, now) is not None}

    def delete(self, key: str) -> bool:
        """Delete the number of appointment ``key``; ``False`` when there was none."""
        return delete_if_exists(self._container, phone_id(key), key)

    def expired_keys(self, now: datetime, *, limit: int = 500) -> list[str]:
        """Appointment keys whose number is past ``delete_after`` (for the purge timer)."""
        with translated_errors():
            rows = self._container.query_items(
                "SELECT TOP @limit c.appointmentKey FROM c WHERE c.type = 'phone' AND c.delete_after <= @now",
                parameters=[{"name": "@limit", "value": limit}, {"name": "@now", "value": iso(now)}],
                enable_cross_partition_query=True,
            )
            return [row["appointmentKey"] for row in rows]


def live_phone(doc: dict[str, Any] | None, now: datetime) -> str | None:
    """The number a ``phone`` document holds, ``None`` when there is none or it is past ``delete_after``."""
    if not doc or datetime.fromisoformat(doc["delete_after"]) <= now:
        return None
    return doc["phone_e164"]
