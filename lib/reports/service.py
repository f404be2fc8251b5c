"""The report a user asks for: environments, a local date range, optionally a department."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from lib.clock import Clock
from lib.models import EnvironmentConfig
from lib.reports.reader import RangeError, Sheets, read_range
from lib.reports.summary import finish_rows, summarize


class Environments(Protocol):
    """:class:`lib.store.environments.EnvironmentRepository`."""

    def get(self, environment_id: str) -> EnvironmentConfig | None: ...

    def all(self) -> list[EnvironmentConfig]: ...


@dataclass(frozen=True)
class Report:
    """Finished visit rows, text rows, their aggregates and the point reads it took."""

    visits: list[dict[str, Any]]
    texts: list[dict[str, Any]]
    summary: dict[str, Any]
    point_reads: int


class ReportService:
    """Builds a :class:`Report` from the day sheets."""

    def __init__(self, *, sheets: Sheets, environments: Environments, clock: Clock) -> None:
        self._sheets = sheets
        self._environments = environments
        self._clock = clock

    def environments(self) -> list[EnvironmentConfig]:
        """Every configured environment (the filter's choices)."""
        return sorted(self._environments.all(), key=lambda e: e.id)

    def report(self, first: date, last: date, *, environment_id: str | None = None,
               department: str | None = None) -> Report:
        """The report of local days ``first``..``last``.

        Raises:
            RangeError: the range is invalid or the environment is unknown.
        """
        if environment_id:
            environment = self._environments.get(environment_id)
            if environment is None:
                raise RangeError("No environment has that ID.")
            chosen = [environment]
        else:
            chosen = self.environments()
        rows = read_range(self._sheets, chosen, first, last, department=department)
        by_id = {e.id: e for e in chosen}
        visits = finish_rows(rows.visits, rows.month_visits, by_id, self._clock.now())
        summary = summarize(visits, rows.texts, first, last)
        summary["point_reads"] = rows.point_reads
        return Report(visits, rows.texts, summary, rows.point_reads)
