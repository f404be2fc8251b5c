"""Final attendance and media quality of a visit's call, from its Graph call record (container
``call_quality``, partition ``/id`` = appointment key). Shape in ``docs/presence.md`` (the reports read it)."""

from __future__ import annotations

from typing import Any

from lib.store.cosmos import CosmosStore, read_or_none, translated_errors


class CallQualityRepository:
    """One document per visit, replaced whenever a newer version of the call record is read."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("call_quality")

    def get(self, appointment_key: str) -> dict[str, Any] | None:
        """The visit's document, or ``None``."""
        return read_or_none(self._container, appointment_key, appointment_key)

    def put(self, doc: dict[str, Any]) -> None:
        """Create or replace (``doc["id"]`` is the appointment key)."""
        with translated_errors():
            self._container.upsert_item(doc)
