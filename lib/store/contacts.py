"""Patient phone numbers (container ``contacts``), kept apart from appointments and deleted after the visit.

Each document has a Cosmos ``ttl`` (seconds) recomputed on every write, and ``delete_after`` (UTC) that the
purge timer uses too, because the local Cosmos-compatible server does not enforce TTL.
"""

from __future__ import annotations

from datetime import datetime

from lib.models import cosmos_ttl, iso
from lib.store.cosmos import CosmosStore, delete_if_exists, read_many, read_or_none, translated_errors


class ContactRepository:
    """The SMS phone number of one appointment."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("contacts")

    def put(self, key: str, environment_id: str, phone_e164: str, *, delete_after: datetime, now: datetime) -> None:
        """Store or replace the number for appointment ``key``; it expires at ``delete_after`` (UTC)."""
        ttl = cosmos_ttl((delete_after - now).total_seconds())
        with translated_errors():
            self._container.upsert_item(
                {
                    "id": key,
                    "environmentId": environment_id,
                    "phone_e164": phone_e164,
                    "delete_after": iso(delete_after),
                    "ttl": ttl,
                }
            )

    def phone(self, key: str, *, now: datetime) -> str | None:
        """The E.164 number of appointment ``key``; ``None`` when absent or past ``delete_after``."""
        doc = read_or_none(self._container, key, key)
        if not doc or datetime.fromisoformat(doc["delete_after"]) <= now:
            return None
        return doc["phone_e164"]

    def phones(self, keys: list[str], *, now: datetime) -> dict[str, str]:
        """The live numbers of appointments ``keys`` (absent or past ``delete_after``: left out), one batch read."""
        docs = read_many(self._container, [(key, key) for key in keys])
        return {doc["id"]: doc["phone_e164"] for doc in docs if datetime.fromisoformat(doc["delete_after"]) > now}

    def delete(self, key: str) -> bool:
        """Delete the number of appointment ``key``; ``False`` when there was none."""
        return delete_if_exists(self._container, key, key)

    def expired_keys(self, now: datetime, *, limit: int = 500) -> list[str]:
        """Appointment keys whose number is past ``delete_after`` (for the purge timer)."""
        with translated_errors():
            rows = self._container.query_items(
                "SELECT TOP @limit c.id FROM c WHERE c.delete_after <= @now",
                parameters=[{"name": "@limit", "value": limit}, {"name": "@now", "value": iso(now)}],
                enable_cross_partition_query=True,
            )
            return [row["id"] for row in rows]
