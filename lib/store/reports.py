"""Report documents: one per visit (``report_visits``) and the day sheets the reports read (``report_days``).

- ``report_visits`` (pk ``/id`` = appointment key): everything the reports know of one visit (appointment
  facts, roster events, media streams, texts) and its current row. Written only by the ``report-updates``
  queue trigger (:mod:`lib.reports.recorder`), ETag-guarded.
- ``report_days`` (pk ``/id`` = ``{environmentId}|{YYYY-MM-DD}|{shard}``): the rows of the visits and texts of
  one local day of one environment, spread over :data:`SHARDS` documents by a hash of the appointment ID. A
  report for a range reads ``environments x days x SHARDS`` documents by point read, whatever the total
  stored (the local Cosmos-compatible server scans a whole container per query; point reads it does not).
"""

from __future__ import annotations

import hashlib
from typing import Any

from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors

#: Day sheets per (environment, day). A sheet holds about 300 bytes per visit row and per text row; Cosmos DB
#: documents are at most 2 MB, so 4 sheets hold about 6,000 visits with their texts per environment per day.
SHARDS = 4


def shard_of(appointment_id: str) -> int:
    """The stable shard of an appointment (SHA-256, not Python's per-process ``hash``)."""
    return hashlib.sha256(appointment_id.encode()).digest()[0] % SHARDS


def sheet_id(environment_id: str, day: str, shard: int) -> str:
    """``{environmentId}|{YYYY-MM-DD}|{shard}``."""
    return f"{environment_id}|{day}|{shard}"


class ReportVisitRepository:
    """Point reads and ETag-guarded writes of the per-visit report documents."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("report_visits")

    def get(self, appointment_key: str) -> dict[str, Any] | None:
        """The visit's document (with ``_etag``), or ``None``."""
        return read_or_none(self._container, appointment_key, appointment_key)

    def save(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Create (no ``_etag`` yet) or replace only if unchanged since read.

        Raises:
            AlreadyExists, ConcurrencyConflict: someone else wrote it first (read again and retry).
        """
        body = {k: v for k, v in doc.items() if not k.startswith("_")}
        with translated_errors():
            if doc.get("_etag") is None:
                return self._container.create_item(body)
            return self._container.replace_item(item=body["id"], body=body, **if_match(doc["_etag"]))


class ReportSheetRepository:
    """The day sheets: ``{"visits": {appointmentId: row}, "texts": {outboxId: row}}`` per document."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("report_days")

    def get(self, sheet: str) -> dict[str, Any] | None:
        """One sheet, or ``None`` (no visit that day in that shard)."""
        return read_or_none(self._container, sheet, sheet)

    def save(self, doc: dict[str, Any]) -> None:
        """Create (no ``_etag``) or replace if unchanged since read.

        Raises:
            AlreadyExists, ConcurrencyConflict: someone else wrote it first (read again and retry).
        """
        body = {k: v for k, v in doc.items() if not k.startswith("_")}
        with translated_errors():
            if doc.get("_etag") is None:
                self._container.create_item(body)
            else:
                self._container.replace_item(item=body["id"], body=body, **if_match(doc["_etag"]))
