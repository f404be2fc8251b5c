"""The report a user asks for: environments, a local date range, optionally a department."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from lib.clock import Clock
from lib.models import EnvironmentConfig, parse_iso
from lib.reports.reader import DayReader, RangeError, Sheets, check_range, days_between
from lib.reports.summary import add, empty, pick, summarize, totals_by_department, within_allocation
from lib.reports.visits import outcome

#: Local days this recent may hold visits that are not over yet: summed from their rows at read time.
RECENT_DAYS = 2
_INTERNAL = ("version", "bucket")


class Environments(Protocol):
    """:class:`lib.store.environments.EnvironmentRepository`."""

    def get(self, environment_id: str) -> EnvironmentConfig | None: ...

    def all(self) -> list[EnvironmentConfig]: ...


@dataclass(frozen=True)
class Summary:
    """The aggregates of a range and the point reads they took."""

    body: dict[str, Any]
    point_reads: int


@dataclass(frozen=True)
class Rows:
    """Finished rows (a page, or all of them) and the point reads they took."""

    visits: list[dict[str, Any]]
    texts: list[dict[str, Any]]
    point_reads: int


class ReportService:
    """Builds summaries and rows from the day documents (:mod:`lib.store.reports`)."""

    def __init__(self, *, sheets: Sheets, environments: Environments, clock: Clock) -> None:
        self._sheets = sheets
        self._environments = environments
        self._clock = clock

    def environments(self) -> list[EnvironmentConfig]:
        """Every configured environment (the filter's choices)."""
        return sorted(self._environments.all(), key=lambda e: e.id)

    def _chosen(self, environment_id: str | None) -> list[EnvironmentConfig]:
        if environment_id:
            environment = self._environments.get(environment_id)
            if environment is None:
                raise RangeError("No environment has that ID.")
            return [environment]
        return self.environments()

    def _today(self, environment: EnvironmentConfig) -> date:
        return self._clock.now().astimezone(ZoneInfo(environment.time_zone)).date()

    def _day_totals(self, reader: DayReader, environment: EnvironmentConfig, day: date,
                    now: datetime) -> dict[str, dict[str, Any]]:
        if day > self._today(environment) - timedelta(days=RECENT_DAYS):
            visits, texts = reader.rows(environment.id, day)
            return totals_by_department(visits, texts, now)
        return reader.totals(environment.id, day)

    def summary(self, first: date, last: date, *, environment_id: str | None = None,
                department: str | None = None) -> Summary:
        """The aggregates of local days ``first``..``last``.

        Raises:
            RangeError: the range is invalid or the environment is unknown.
        """
        check_range(first, last)
        reader = DayReader(self._sheets)
        now = self._clock.now()
        per_day: dict[str, dict[str, Any]] = {}
        within = over = 0
        for environment in self._chosen(environment_id):
            allocation = environment.monthly_visit_allocation
            start = first.replace(day=1) if allocation is not None else first
            completed: list[tuple[date, int]] = []
            for day in days_between(start, last):
                by_department = self._day_totals(reader, environment, day, now)
                if allocation is not None:
                    completed.append((day, pick(by_department, None)["completed"]))
                if day >= first:
                    add(per_day.setdefault(day.isoformat(), empty()), pick(by_department, department))
            w, o = _allocation_in_range(completed, first, allocation)
            within, over = within + w, over + o
        body = summarize(per_day, first, last, within=within, over=over)
        body["point_reads"] = reader.point_reads
        return Summary(body, reader.point_reads)

    def rows(self, first: date, last: date, *, environment_id: str | None = None, department: str | None = None,
             limit: int | None = None, offset: int = 0, texts: bool = True) -> Rows:
        """Finished visit rows (``outcome`` now, ``within_allocation``) and text rows of the range, in day order;
        with ``limit``, reading stops once ``offset + limit`` visit rows are collected (texts likewise).

        Raises:
            RangeError: the range is invalid or the environment is unknown.
        """
        check_range(first, last)
        reader = DayReader(self._sheets)
        now = self._clock.now()
        visits: list[dict[str, Any]] = []
        text_rows: list[dict[str, Any]] = []
        wanted = None if limit is None else offset + limit
        for environment in self._chosen(environment_id):
            for _day, day_visits, day_texts in self._finished_days(reader, environment, first, last, now):
                visits.extend(r for r in day_visits if department is None or r.get("department") == department)
                if texts:
                    text_rows.extend(_public(t) for t in day_texts
                                     if department is None or t.get("department") == department)
                if wanted is not None and len(visits) >= wanted and (not texts or len(text_rows) >= wanted):
                    break
        if limit is not None:
            visits, text_rows = visits[offset:offset + limit], text_rows[offset:offset + limit]
        return Rows(visits, text_rows, reader.point_reads)

    def _finished_days(self, reader: DayReader, environment: EnvironmentConfig, first: date, last: date,
                       now: datetime) -> Iterator[tuple[date, list[dict[str, Any]], list[dict[str, Any]]]]:
        allocation = environment.monthly_visit_allocation
        zone = ZoneInfo(environment.time_zone)
        before = 0
        month = None
        if allocation is not None:
            month = first.replace(day=1)
            for day in days_between(month, first - timedelta(days=1)):
                before += pick(reader.totals(environment.id, day), None)["completed"]
        for day in days_between(first, last):
            if allocation is not None and day.replace(day=1) != month:
                month, before = day.replace(day=1), 0
            visits, texts = reader.rows(environment.id, day)
            finished = [_public({**r, "outcome": outcome(r, now)}) for r in visits]
            held = sorted((r for r in finished if r["outcome"] == "completed"),
                          key=lambda r: (r.get("start_utc") or "", r["appointment_id"]))
            ranks = {r["appointment_id"]: before + n for n, r in enumerate(held, start=1)}
            for row in finished:
                rank = ranks.get(row["appointment_id"])
                row["within_allocation"] = (rank <= allocation) if allocation is not None and rank else None
                start = parse_iso(row.get("start_utc"))
                row["start_local"] = start.astimezone(zone).isoformat() if start else None
            before += len(held)
            yield day, finished, texts


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _INTERNAL}


def _allocation_in_range(completed: list[tuple[date, int]], first: date, allocation: int | None) -> tuple[int, int]:
    """Within / over the allocation for the days from ``first``, counting each month from its first day."""
    if allocation is None:
        return 0, 0
    within = over = 0
    by_month: dict[date, list[tuple[date, int]]] = {}
    for day, count in completed:
        by_month.setdefault(day.replace(day=1), []).append((day, count))
    for days in by_month.values():
        before = sum(c for d, c in days if d < first)
        w, o = within_allocation([c for d, c in days if d >= first], before, allocation)
        within, over = within + w, over + o
    return within, over
