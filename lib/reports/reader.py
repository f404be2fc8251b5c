"""The read side: day totals and day rows of a range, by point reads only.

- A summary reads one totals document per environment and day (rows only for the last two local days, whose
  visits may not be over yet), plus the days of the month before the range when the environment tracks a
  monthly allocation.
- Rows (the tables and the CSV) read each day's totals document and the parts it names (in parallel), plus one
  miss, day after day, until the page is full (all of them for the CSV).

Nothing here depends on how many visits are stored outside the range.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from lib.store.reports import part_id, totals_id

#: The longest range one request may ask for.
MAX_DAYS = 366
#: The dates a report may cover. Visits are never older or later, and the date arithmetic (the month before a
#: range, for a monthly allocation; the default week before a date) stays far from year 1 and year 9999.
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)
#: What to choose instead, for every date outside them.
OUTSIDE = f"choose dates from {EARLIEST.isoformat()} to {LATEST.isoformat()}"


class RangeError(ValueError):
    """The requested range is not valid (the message says why, for the user)."""


class Sheets(Protocol):
    """:class:`lib.store.reports.ReportSheetRepository`."""

    def get(self, document_id: str) -> dict[str, Any] | None: ...


def check_range(first: date, last: date) -> None:
    """Raises :class:`RangeError` when ``last`` is before ``first``, the range is longer than a year, or it
    reaches outside :data:`EARLIEST`..:data:`LATEST`."""
    if first < EARLIEST or last > LATEST:
        raise RangeError(f"Reports cover {EARLIEST.year} to {LATEST.year}: {OUTSIDE}.")
    if last < first:
        raise RangeError("The end date is before the start date.")
    if (last - first).days + 1 > MAX_DAYS:
        raise RangeError(f"A report covers at most {MAX_DAYS} days; choose a shorter range.")


def days_between(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last`` inclusive."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass
class DayReader:
    """Reads day documents and counts the point reads made."""

    sheets: Sheets
    point_reads: int = 0
    _cache: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def _get(self, document_id: str) -> dict[str, Any] | None:
        if document_id not in self._cache:
            self.point_reads += 1
            self._cache[document_id] = self.sheets.get(document_id)
        return self._cache[document_id]

    def totals(self, environment_id: str, day: date) -> dict[str, dict[str, Any]]:
        """The day's totals per department, summed over its parts (empty when nothing happened that day)."""
        from lib.reports.summary import add

        doc = self._get(totals_id(environment_id, day.isoformat()))
        result: dict[str, dict[str, Any]] = {}
        for entry in ((doc or {}).get("parts") or {}).values():
            for department, values in (entry.get("totals") or {}).items():
                add(result.setdefault(department, {}), values)
        return result

    def rows(self, environment_id: str, day: date) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(visit rows, text rows)`` of the day: the parts its totals document names, read in parallel, then
        the next numbers until one is missing (a part written before its totals were)."""
        listed = (self._get(totals_id(environment_id, day.isoformat())) or {}).get("parts") or {}
        numbers = sorted(int(name[1:]) for name in listed)
        ids = [part_id(environment_id, day.isoformat(), n) for n in numbers if
               part_id(environment_id, day.isoformat(), n) not in self._cache]
        if len(ids) > 1:
            with ThreadPoolExecutor(min(4, len(ids))) as pool:
                for document_id, doc in zip(ids, pool.map(self.sheets.get, ids), strict=True):
                    self._cache[document_id] = doc
                    self.point_reads += 1
        parts = [self._get(part_id(environment_id, day.isoformat(), n)) for n in numbers]
        number = (numbers[-1] + 1) if numbers else 0
        while (extra := self._get(part_id(environment_id, day.isoformat(), number))) is not None:
            parts.append(extra)
            number += 1
        visits = [row for doc in parts if doc for row in (doc.get("visits") or {}).values()]
        texts = [row for doc in parts if doc for row in (doc.get("texts") or {}).values()]
        visits.sort(key=lambda r: (r.get("scheduled_start_utc") or "", r["appointment_id"]))
        texts.sort(key=lambda r: (r.get("due_utc") or "", r["id"]))
        return visits, texts
