"""Quiet hours: no reminder late at night or early in the morning, in the patient's local time.

Policy (``security.md`` §3): the federal window of 47 CFR 64.1200(c)(1) ("before the hour of 8
a.m. or after 9 p.m. (local time at the called party's location)") governs telephone solicitations only,
but this project adopts it for reminders. So with the default ``("21:00", "08:00")`` a text at exactly
21:00 or 08:00 is allowed; 21:00:01 to 07:59:59 is quiet. A window whose start is before its end (e.g.
``("12:00", "13:00")``) is a same-day window; equal start and end means no quiet hours.

All instants are aware UTC datetimes; local time exists only inside these functions (``zoneinfo``). A quiet
start that falls in a DST gap is read with ``fold=0`` and normalised through UTC (PEP 495).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def _parse(hhmm: str) -> time:
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def _local_at(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    """``at`` on the local date of ``day``, as an aware UTC instant."""
    return datetime.combine(day.date(), at, tzinfo=zone).astimezone(UTC)


def is_quiet(at_utc: datetime, time_zone: str, quiet_hours: tuple[str, str]) -> bool:
    """Whether ``at_utc`` falls strictly inside the quiet window in ``time_zone``."""
    start, end = (_parse(t) for t in quiet_hours)
    if start == end:
        return False
    local = at_utc.astimezone(ZoneInfo(time_zone)).time()
    if start > end:  # overnight window
        return local > start or local < end
    return start < local < end


def last_allowed_before(at_utc: datetime, time_zone: str, quiet_hours: tuple[str, str]) -> datetime:
    """``at_utc`` itself when not quiet, else the start of the quiet window it falls in (the latest allowed
    instant before it), e.g. 07:00 local -> 21:00 local of the evening before."""
    if not is_quiet(at_utc, time_zone, quiet_hours):
        return at_utc
    zone = ZoneInfo(time_zone)
    start = _parse(quiet_hours[0])
    local = at_utc.astimezone(zone)
    candidate = _local_at(local, start, zone)
    if candidate > at_utc:
        candidate = _local_at(local - timedelta(days=1), start, zone)
    return candidate


def first_allowed_after(at_utc: datetime, time_zone: str, quiet_hours: tuple[str, str]) -> datetime:
    """``at_utc`` itself when not quiet, else the end of the quiet window it falls in, e.g. 23:00 local ->
    08:00 local the next morning."""
    if not is_quiet(at_utc, time_zone, quiet_hours):
        return at_utc
    zone = ZoneInfo(time_zone)
    end = _parse(quiet_hours[1])
    local = at_utc.astimezone(zone)
    candidate = _local_at(local, end, zone)
    if candidate < at_utc:
        candidate = _local_at(local + timedelta(days=1), end, zone)
    return candidate
