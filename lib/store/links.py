"""Join-link IDs (container ``links``): the random ID inside an SMS link -> the appointment it opens."""

from __future__ import annotations

from datetime import datetime

from lib.models import cosmos_ttl, iso
from lib.store.cosmos import CosmosStore, read_or_none, translated_errors


class LinkRepository:
    """Maps a link ID to an appointment key until the link expires."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("links")

    def put(self, link_id: str, appointment_key: str, *, expires: datetime, now: datetime) -> None:
        """Store or extend the mapping; it expires at ``expires`` (UTC)."""
        ttl = cosmos_ttl((expires - now).total_seconds())
        with translated_errors():
            self._container.upsert_item(
                {"id": link_id, "appointmentKey": appointment_key, "expires": iso(expires), "ttl": ttl}
            )

    def appointment_key(self, link_id: str, *, now: datetime) -> str | None:
        """The appointment key of a live link, or ``None`` when unknown or expired."""
        doc = read_or_none(self._container, link_id, link_id)
        if not doc or datetime.fromisoformat(doc["expires"]) <= now:
            return None
        return doc["appointmentKey"]
