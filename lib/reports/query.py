"""The query string of the report page and API, parsed once into a :class:`ReportQuery`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from lib.reports.reader import EARLIEST, LATEST, OUTSIDE, RangeError, check_range

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DIGITS = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() takes "²", which int() refuses
_DEPARTMENT = re.compile(r"[^\x00-\x1f<>\"']{1,64}")
#: Rows per page of the JSON API (the CSV has them all).
PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000
DEFAULT_DAYS = 7


@dataclass(frozen=True)
class ReportQuery:
    """Local dates ``first``..``last`` (inclusive), an optional environment and department, a page of rows."""

    first: date
    last: date
    environment_id: str | None = None
    department: str | None = None
    offset: int = 0
    limit: int = PAGE_SIZE

    def params(self) -> dict[str, str]:
        """Back to query parameters (for links: CSV exports of the same selection)."""
        values = {"from": self.first.isoformat(), "to": self.last.isoformat()}
        if self.environment_id:
            values["environment"] = self.environment_id
        if self.department:
            values["department"] = self.department
        return values


def parse_query(params: Mapping[str, str], *, today: date) -> ReportQuery:
    """Parse ``from``, ``to`` (``YYYY-MM-DD``; default the last 7 days to ``today``), ``environment``,
    ``department``, ``offset`` and ``limit``.

    Raises:
        RangeError: a value is not valid; the message says which and what to send instead.
    """
    chosen_first = _date(params.get("from"), "from")
    last = _date(params.get("to"), "to") or today
    first = chosen_first or max(EARLIEST, last - timedelta(days=DEFAULT_DAYS - 1))
    check_range(first, last)
    environment = (params.get("environment") or "").strip() or None
    if environment is not None and not _ID.fullmatch(environment):
        raise RangeError("The environment ID may use letters, digits, '.', '_' and '-' only.")
    department = (params.get("department") or "").strip() or None
    if department is not None and not _DEPARTMENT.fullmatch(department):
        raise RangeError("The department is at most 64 characters, without quotes or angle brackets.")
    offset = _int(params.get("offset"), "offset", 0, 10_000_000)
    limit = _int(params.get("limit"), "limit", 1, MAX_PAGE_SIZE, default=PAGE_SIZE)
    return ReportQuery(first, last, environment, department, offset, limit)


def _date(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise RangeError(f"'{name}' must be a date written YYYY-MM-DD, e.g. 2026-03-02.") from None
    if not EARLIEST <= day <= LATEST:
        raise RangeError(f"'{name}' is outside the dates reports cover: {OUTSIDE}.")
    return day


def _int(value: str | None, name: str, low: int, high: int, *, default: int | None = None) -> int:
    if value is None or value == "":
        return default if default is not None else low
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise RangeError(f"'{name}' must be a whole number from {low} to {high}.")
    return int(value)
