"""Report documents: one per visit (``report_visits``), and the day sheets the reports read (``report_days``).

- ``report_visits`` (pk ``/id`` = appointment key): everything the reports know of one visit (appointment
  facts, roster events, media streams, texts), its current row and where its rows are placed. Written only by
  the ``report-updates`` queue trigger (:mod:`lib.reports.recorder`), ETag-guarded.
- ``report_days`` (pk ``/id``), two kinds of document per environment and local day:

  - parts ``{environmentId}|{YYYY-MM-DD}|p{n}`` (n = 0, 1, ...): up to :data:`PART_VISITS` visit rows and
    :data:`PART_TEXTS` text rows, with the totals of those rows per department (computed on every write, so
    they always match the rows) and a ``seq`` that grows with every write. A day has as many parts as it needs.
  - totals ``{environmentId}|{YYYY-MM-DD}|totals``: each part's totals and ``seq``, so a summary reads one
    small document per day.

Every read is a point read: a report's cost grows with the days (and, for rows, the visits) in its range, never
with what is stored outside it (the local Cosmos-compatible server scans a whole container per query).
"""

from __future__ import annotations

from typing import Any

from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors

#: Rows per part: a visit row is about 1.2 KB, a text row about 0.45 KB, so a full part stays near 1 MB
#: (Cosmos DB documents are at most 2 MB), with room for rows that grow after placement.
PART_VISITS = 400
PART_TEXTS = 1200


def part_id(environment_id: str, day: str, number: int) -> str:
    """``{environmentId}|{YYYY-MM-DD}|p{n}``."""
    return f"{environment_id}|{day}|p{number}"


def totals_id(environment_id: str, day: str) -> str:
    """``{environmentId}|{YYYY-MM-DD}|totals``."""
    return f"{environment_id}|{day}|totals"


def day_of(document_id: str) -> str:
    """The day of a part or totals document ID."""
    return document_id.rsplit("|", 2)[1]


def has_room(part: dict[str, Any] | None) -> bool:
    """Whether a new visit (with its texts) may go into ``part`` (``None``: a part not created yet)."""
    if part is None:
        return True
    return len(part.get("visits") or {}) < PART_VISITS and len(part.get("texts") or {}) < PART_TEXTS - 10


class _Documents:
    def __init__(self, store: CosmosStore, container: str) -> None:
        self._container = store.container(container)

    def get(self, document_id: str) -> dict[str, Any] | None:
        """Point read; ``None`` when it does not exist."""
        return read_or_none(self._container, document_id, document_id)

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


class ReportVisitRepository(_Documents):
    """The per-visit report documents."""

    def __init__(self, store: CosmosStore) -> None:
        super().__init__(store, "report_visits")


class ReportSheetRepository(_Documents):
    """Day sheet parts and per-day totals."""

    def __init__(self, store: CosmosStore) -> None:
        super().__init__(store, "report_days")
