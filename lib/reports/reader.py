"""The read side: the rows of a date range, from the day sheets, by point reads only.

Cost of one report: ``environments x days x SHARDS`` point reads (plus the days of the first month before the
range when the environment tracks a monthly allocation, to rank its visits), and bytes proportional to the
visits and texts in the range. It does not depend on how many visits are stored outside the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from lib.models import EnvironmentConfig
from lib.store.reports import SHARDS, sheet_id

#: The longest range one request may ask for.
MAX_DAYS = 366


class RangeError(ValueError):
    """The requested range is not valid (the message says why, for the user)."""


class Sheets(Protocol):
    """:class:`lib.store.reports.ReportSheetRepository`."""

    def get(self, sheet: str) -> dict[str, Any] | None: ...


@dataclass
class RangeRows:
    """Rows read for a range: visits (sorted by day, then scheduled start), texts, and the read cost."""

    visits: list[dict[str, Any]] = field(default_factory=list)
    texts: list[dict[str, Any]] = field(default_factory=list)
    month_visits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    point_reads: int = 0


def check_range(first: date, last: date) -> None:
    """Raises :class:`RangeError` when ``last`` is before ``first`` or the range is longer than a year."""
    if last < first:
        raise RangeError("The end date is before the start date.")
    if (last - first).days + 1 > MAX_DAYS:
        raise RangeError(f"A report covers at most {MAX_DAYS} days; choose a shorter range.")


def read_range(sheets: Sheets, environments: list[EnvironmentConfig], first: date, last: date, *,
               department: str | None = None) -> RangeRows:
    """Every visit and text row of ``environments`` on local days ``first``..``last`` (inclusive), optionally of
    one department. ``month_visits`` holds, per environment with a monthly allocation, its visits of the
    month(s) the range touches from the first of the month (the allocation ranks them in start order)."""
    check_range(first, last)
    result = RangeRows()
    for environment in environments:
        start = first.replace(day=1) if environment.monthly_visit_allocation is not None else first
        month_rows: list[dict[str, Any]] = []
        day = start
        while day <= last:
            for shard in range(SHARDS):
                doc = sheets.get(sheet_id(environment.id, day.isoformat(), shard))
                result.point_reads += 1
                if doc is None:
                    continue
                visits = list((doc.get("visits") or {}).values())
                month_rows.extend(visits)
                if day >= first:
                    result.visits.extend(v for v in visits if department is None or v.get("department") == department)
                    result.texts.extend(t for t in (doc.get("texts") or {}).values()
                                        if department is None or t.get("department") == department)
            day += timedelta(days=1)
        if environment.monthly_visit_allocation is not None:
            result.month_visits[environment.id] = month_rows
    result.visits.sort(key=lambda r: (r.get("day") or "", r.get("scheduled_start_utc") or "", r["appointment_id"]))
    result.texts.sort(key=lambda r: (r.get("day") or "", r.get("due_utc") or "", r["id"]))
    return result
