"""Six-field NCRONTAB schedules, as the Azure Functions timer trigger reads them (dev-only).

Format: ``{second} {minute} {hour} {day} {month} {day-of-week}``, evaluated in UTC.

Each field accepts ``*``, a number, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (``a`` up to the
field's maximum), and comma lists of those. Month and day-of-week also accept English names or any prefix of
them (``Jan``, ``mon``), case-insensitive. Day-of-week is 0-6 with Sunday = 0.

Semantics follow the NCrontab library the Functions host uses: a time matches when **every** field matches,
so day-of-month and day-of-week are combined with AND (classic Unix cron uses OR when both are restricted).

The host also accepts a TimeSpan schedule (``"00:05:00"``, App Service plans only); :func:`parse_schedule`
returns an :class:`IntervalSchedule` for it, firing on multiples of the interval since the Unix epoch.

This module is a small stand-in written for the dev runner; no PyPI package was added for it because the
widely used cron libraries default to Unix semantics (five fields, or seconds last, and day OR day-of-week).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["CronSchedule", "IntervalSchedule", "Schedule", "parse_schedule"]

_MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]
_DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]

# (name, minimum, maximum, value names or None)
_FIELDS: tuple[tuple[str, int, int, list[str] | None], ...] = (
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)

# Give up looking for an occurrence after this long (e.g. "0 0 0 30 2 *" never happens).
_SEARCH_LIMIT = timedelta(days=366 * 5)


def _parse_value(text: str, low: int, names: list[str] | None) -> int:
    if text.isdigit():
        return int(text)
    if names and text.isalpha():
        for index, name in enumerate(names):
            if name.startswith(text.lower()):
                return index + low
    raise ValueError(f"{text!r} is not a number{' or a known name' if names else ''}")


def _parse_field(text: str, name: str, low: int, high: int, names: list[str] | None) -> frozenset[int]:
    """Return the set of values one field allows; raises ``ValueError`` naming the field."""
    values: set[int] = set()
    try:
        for part in text.split(","):
            base, _, step_text = part.partition("/")
            step = int(step_text) if step_text else 1
            if step < 1:
                raise ValueError("step must be at least 1")
            if base == "*":
                start, end = low, high
            elif "-" in base:
                first, _, last = base.partition("-")
                start, end = _parse_value(first, low, names), _parse_value(last, low, names)
            else:
                start = _parse_value(base, low, names)
                end = high if step_text else start
            if not (low <= start <= high and low <= end <= high and start <= end):
                raise ValueError(f"{part!r} is outside {low}-{high}")
            values.update(range(start, end + 1, step))
    except ValueError as exc:
        raise ValueError(f"invalid NCRONTAB {name} field {text!r}: {exc}") from None
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed six-field NCRONTAB expression; each attribute is the set of allowed values."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse ``expression``; raises ``ValueError`` unless it has six valid fields."""
        tokens = expression.split()
        if len(tokens) != 6:
            raise ValueError(
                f"NCRONTAB expression {expression!r} must have 6 fields "
                "(second minute hour day month day-of-week)"
            )
        sets = [_parse_field(token, *spec) for token, spec in zip(tokens, _FIELDS, strict=True)]
        return cls(expression, *sets)

    def matches(self, moment: datetime) -> bool:
        """True when ``moment`` (second precision) is an occurrence of the schedule."""
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.day in self.days
            and moment.month in self.months
            and (moment.weekday() + 1) % 7 in self.weekdays
        )

    def next_after(self, after: datetime) -> datetime:
        """The first occurrence strictly after ``after``.

        ``after`` may be naive (taken as UTC) or aware (converted to UTC); the result is an aware UTC datetime
        with whole seconds. Raises ``ValueError`` when no occurrence exists within five years.
        """
        start = _as_utc(after).replace(microsecond=0) + timedelta(seconds=1)
        moment = start
        while moment - start <= _SEARCH_LIMIT:
            if moment.month not in self.months:
                year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
                moment = moment.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
            elif moment.day not in self.days or (moment.weekday() + 1) % 7 not in self.weekdays:
                moment = moment.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0, second=0) + timedelta(hours=1)
            elif moment.minute not in self.minutes:
                moment = moment.replace(second=0) + timedelta(minutes=1)
            elif moment.second not in self.seconds:
                moment += timedelta(seconds=1)
            else:
                return moment
        raise ValueError(f"NCRONTAB expression {self.expression!r} has no occurrence within five years")


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule (``hh:mm:ss``): fires at every multiple of ``interval`` since the Unix epoch."""

    expression: str
    interval: timedelta

    def next_after(self, after: datetime) -> datetime:
        """The first multiple of the interval strictly after ``after`` (aware UTC datetime)."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        elapsed = _as_utc(after) - epoch
        return epoch + (elapsed // self.interval + 1) * self.interval


Schedule = CronSchedule | IntervalSchedule

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


def parse_schedule(expression: str) -> Schedule:
    """Parse a timer trigger ``schedule``: six-field NCRONTAB, or a TimeSpan ``[d.]hh:mm:ss``.

    Raises ``ValueError`` for anything else (including five-field Unix cron).
    """
    match = _TIMESPAN.match(expression.strip())
    if match:
        days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
        interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if interval <= timedelta(0):
            raise ValueError(f"TimeSpan schedule {expression!r} must be positive")
        return IntervalSchedule(expression, interval)
    return CronSchedule.parse(expression)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
