"""Clocks: every service takes one, so tests and the demo can move time.

All clocks return aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    """Source of the current instant."""

    def now(self) -> datetime:
        """Return the current time as an aware UTC datetime."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return ``datetime.now(UTC)``."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that stays where it is set (tests)."""

    def __init__(self, at: datetime) -> None:
        self._at = _as_utc(at)

    def now(self) -> datetime:
        """Return the instant last set."""
        return self._at

    def set(self, at: datetime) -> None:
        """Move the clock to ``at`` (aware datetime, any zone)."""
        self._at = _as_utc(at)


class FileClock:
    """Local-only clock read from a file (``DEV_CLOCK_FILE``), so the demo can move the dev runner's time.

    The file holds one ISO-8601 instant with an offset. When the file is missing or empty the system clock
    is used. Never configured in Azure.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def now(self) -> datetime:
        """Return the instant in the file, or the system time when there is none.

        Raises:
            ValueError: the file holds something that is not an ISO-8601 instant with an offset.
        """
        try:
            text = self._path.read_text().strip()
        except FileNotFoundError:
            text = ""
        if not text:
            return datetime.now(UTC)
        return _as_utc(datetime.fromisoformat(text))


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("a naive datetime has no instant; give it a time zone")
    return at.astimezone(UTC)
