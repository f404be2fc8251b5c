"""Quiet hours: no reminder late at night or early in the morning, in the patient's local time.

Policy (``security.md`` §3): the federal window of 47 CFR 64.1200(c)(1) ("before the hour of 8
a.m. or after 9 p.m. (local time at the called party's location)") governs telephone solicitations only,
but this project adopts it for reminders. So with the default ``("21:00", "08:00")`` a text at exactly
21:00 or 08:00 is allowed; 21:00:01 to 07:59:59 is quiet. A window whose start is before its end (e.g.
``("12:00", "13:00")``) is a same-day window; equal start and end means no quiet hours.

Planning and sending apply the one rule :func:`is_quiet`: planning moves a reminder to the last allowed instant
(the quiet start itself, 21:00:00), and sending judges the reminder at the instant it was planned for, not at the
instant the timer happens to read the clock (:func:`reminder_may_go`): the every-minute run that comes moments
after 21:00:00, or a run a few minutes late (a busy sender spreading a 21:00 batch over several minutes at its
per-minute rate, a retry), still sends it. Only a run more than :data:`RUN_TOLERANCE` after the planned
instant (a catch-up after downtime) is judged at its own instant.

All instants are aware UTC datetimes; local time exists only inside these functions (``zoneinfo``). The window
is compared as instants (its start and end on the right local dates): a start or end that falls in a DST gap
is read with ``fold=0`` and normalised through UTC (PEP 495), so it is an instant that is itself allowed.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: A run this long after a reminder's planned instant is still "on time": the reminder is judged at the planned
#: instant. Later, the run is a catch-up judged at its own instant.
RUN_TOLERANCE = timedelta(minutes=10)


def _parse(hhmm: str) -> time:
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def _local_at(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    """``at`` on the local date of ``day``, as an aware UTC instant."""
    return datetime.combine(day.date(), at, tzinfo=zone).astimezone(UTC)


def _window(at_utc: datetime, time_zone: str, quiet_hours: tuple[str, str]) -> tuple[datetime, datetime] | None:
    """The latest quiet window starting at or before ``at_utc``, as (start, end) UTC instants; ``None`` when there
    are no quiet hours. Compared as instants, so a start or end that a DST change skips (Lord Howe's 02:00 ->
    02:30) is the instant of the change, and the planned start itself is never "inside"."""
    start, end = (_parse(t) for t in quiet_hours)
    if start == end:
        return None
    zone = ZoneInfo(time_zone)
    local = at_utc.astimezone(zone)
    begin = _local_at(local, start, zone)
    if begin > at_utc:
        begin = _local_at(local - timedelta(days=1), start, zone)
    begin_local = begin.astimezone(zone)
    finish = _local_at(begin_local, end, zone)
    if finish <= begin:
        finish = _local_at(begin_local + timedelta(days=1), end, zone)
    return begin, finish


def is_quiet(at_utc: datetime, time_zone: str, quiet_hours: tuple[str, str]) -> bool:
    """Whether ``at_utc`` falls strictly inside the quiet window in ``time_zone``."""
    window = _window(at_utc, time_zone, quiet_hours)
    return window is not None and window[0] < at_utc < window[1]


def reminder_may_go(now: datetime, planned: datetime, time_zone: str, quiet_hours: tuple[str, str]) -> bool:
    """Whether a reminder planned for ``planned`` may be sent by a run at ``now``: when ``now`` is allowed, or when
    the run is at most :data:`RUN_TOLERANCE` after an allowed ``planned`` (the same instant and rule planning
    used, so a reminder planned for the quiet start goes out with the run just after it)."""
    if not is_quiet(now, time_zone, quiet_hours):
        return True
    return timedelta(0) <= now - planned <= RUN_TOLERANCE and not is_quiet(planned, time_zone, quiet_hours)


def last_allowed_before(at_utc: datetime, time_zone: str, quiet_hours: tuple[str, str]) -> datetime:
    """``at_utc`` itself when not quiet, else the start of the quiet window it falls in (the latest allowed
    instant before it), e.g. 07:00 local -> 21:00 local of the evening before."""
    window = _window(at_utc, time_zone, quiet_hours)
    if window is None or not window[0] < at_utc < window[1]:
        return at_utc
    return window[0]


def first_allowed_after(at_utc: datetime, time_zone: str, quiet_hours: tuple[str, str]) -> datetime:
    """``at_utc`` itself when not quiet, else the end of the quiet window it falls in, e.g. 23:00 local ->
    08:00 local the next morning."""
    window = _window(at_utc, time_zone, quiet_hours)
    if window is None or not window[0] < at_utc < window[1]:
        return at_utc
    return window[1]
