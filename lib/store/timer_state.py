"""Small named values the timers keep between runs (container ``timer_state``), e.g. the bucket cursor."""

from __future__ import annotations

from lib.store.cosmos import CosmosStore, read_or_none, translated_errors


class TimerStateRepository:
    """Get and put one string value per name."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("timer_state")

    def get(self, name: str) -> str | None:
        """The stored value of ``name``, or ``None``."""
        doc = read_or_none(self._container, name, name)
        return doc["value"] if doc else None

    def put(self, name: str, value: str, *, now: str | None = None) -> None:
        """Store ``value`` under ``name`` (last writer wins: a cursor only ever moves forward in time)."""
        with translated_errors():
            self._container.upsert_item({"id": name, "value": value, "updated": now})
