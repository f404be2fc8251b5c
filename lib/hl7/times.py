"""HL7 v2 date/time (DTM/TS) and duration parsing.

DTM format ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`` (hl7.md §5, [DTM-V2PLUS]); tolerated
quirks seen in real feeds (hl7.md §4): surrounding spaces (``200803061000 ``), more than 14 digits
without a dot (Epic's 16-digit MSH-7 ``2010052711090000``: the extra digits are read as a fraction
of a second). The TS degree-of-precision component (``202601150800^YYYYLLDDHHMM``) is removed by
the caller, which always passes component 1.

Local-time rule (documented for :func:`to_utc`): a time without offset is wall-clock time in the
configured IANA zone, resolved with ``fold=0``:

- nonexistent local time (spring-forward gap): shifted forward by the gap, e.g. 02:30 on the
  America/New_York spring-forward day becomes 03:30 EDT (= 07:30 UTC);
- ambiguous local time (fall-back): the FIRST occurrence, e.g. 01:30 on the America/New_York
  fall-back day is 01:30 EDT (= 05:30 UTC).

MSH-7, which orders messages, is read with both readings of an ambiguous time and its precision
(:func:`local_readings`, :func:`dtm_precision`, ``lib/scheduling/message_time.py``).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

__all__ = ["dtm_precision", "format_offset", "parse_dtm", "parse_duration", "parse_duration_text", "to_utc"]

_MAX_DURATION = timedelta(days=366)

_UNIT_SECONDS: dict[str, int] = {}
for _names, _secs in (
    (("S", "SEC", "SECS", "SECOND", "SECONDS"), 1),
    (("M", "MIN", "MINS", "MINUTE", "MINUTES"), 60),
    (("H", "HR", "HRS", "HOUR", "HOURS"), 3600),
):
    for _name in _names:
        _UNIT_SECONDS[_name] = _secs

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DURATION_TEXT = re.compile(r"([A-Za-z]*)\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)")


_DTM = re.compile(r"([0-9]{4,20})(?:\.([0-9]{1,6}))?(?:([+-])([0-9]{2})([0-9]{2}))?")


@functools.lru_cache(maxsize=128)
def _offset(sign: str, hh: str, mm: str) -> tzinfo | None:
    h, m = int(hh), int(mm)
    if h > 23 or m > 59:
        return None
    delta = timedelta(hours=h, minutes=m)
    return timezone(-delta if sign == "-" else delta)


def parse_dtm(value: str, *, min_digits: int = 4) -> datetime | None:
    """Parse one HL7 DTM/TS component-1 value.

    Args:
        value: e.g. ``20260516130000+0200``, ``202601150800``, ``20150508115035.02+0200``.
        min_digits: least number of date/time digits accepted (10 = hour precision); fewer digits
            return None.

    Returns:
        A naive datetime when no offset is given (sender-local time), an aware datetime with a
        fixed-offset tzinfo when ``+/-ZZZZ`` is present (``-0000`` reads as UTC); None when the
        value is empty or not a valid DTM. Missing month/day default to 1, missing time parts to 0.
    """
    m = _DTM.fullmatch(value.strip())
    if m is None:
        return None
    s, frac, sign, hh, mm = m.groups()
    offset: tzinfo | None = None
    if sign is not None:
        offset = _offset(sign, hh, mm)
        if offset is None:
            return None
    n = len(s)
    if n > 14:
        if frac:
            return None
        s, frac = s[:14], s[14:]
        n = 14
    if n < min_digits or n % 2:
        return None
    try:
        dt = datetime(
            int(s[0:4]),
            int(s[4:6]) if n >= 6 else 1,
            int(s[6:8]) if n >= 8 else 1,
            int(s[8:10]) if n >= 10 else 0,
            int(s[10:12]) if n >= 12 else 0,
            int(s[12:14]) if n >= 14 else 0,
            int(frac.ljust(6, "0")[:6]) if frac else 0,
            tzinfo=offset,
        )
    except ValueError:
        return None
    if offset is not None and dt.year in (1, 9999):
        try:
            dt.astimezone(UTC)
        except OverflowError:
            return None
    return dt


def dtm_precision(value: str) -> timedelta | None:
    """How much time a DTM value covers: the unit of its last digit (``202612061137`` a minute,
    ``20261206113707`` a second, ``20261206113707.12`` and Epic's 16-digit ``2026120611370712`` 10 ms); None
    when :func:`parse_dtm` would not read it. A value covers ``[its instant, instant + precision)``: HL7 DTM
    "precision is to the last digit sent", so the missing digits are unknown, not zeros."""
    m = _DTM.fullmatch(value.strip())
    if m is None:
        return None
    digits, frac = m.group(1), m.group(2)
    if len(digits) > 14:
        digits, frac = digits[:14], digits[14:]
    if frac:
        return timedelta(microseconds=10 ** max(0, 6 - len(frac)))
    unit = {4: timedelta(days=366), 6: timedelta(days=31), 8: timedelta(days=1), 10: timedelta(hours=1),
            12: timedelta(minutes=1), 14: timedelta(seconds=1)}
    return unit.get(len(digits))


def local_readings(dt: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """Both UTC readings of a wall-clock time without offset in ``zone``: ``(first, second)``, equal except in
    the hour repeated when clocks go back (``01:30`` on America/New_York's fall-back day is 05:30 UTC and 06:30
    UTC). A time in the spring-forward gap does not exist on a clock that follows the zone: it is read once, as
    :func:`to_utc` does (shifted forward by the gap).

    Raises:
        OverflowError: as :func:`to_utc`.
    """
    first = dt.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = dt.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return (first, second) if second > first else (first, first)


def to_utc(dt: datetime, zone: tzinfo) -> datetime:
    """Convert a parsed DTM to an aware UTC datetime.

    Aware values (an offset was sent) keep their instant. Naive values are wall-clock time in
    ``zone`` (a ``zoneinfo.ZoneInfo``) with ``fold=0``: a time in a spring-forward gap is shifted
    forward by the gap; an ambiguous fall-back time is the first occurrence.

    Raises:
        OverflowError: when the instant falls outside the datetime range (year 1 / 9999 edges).
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone, fold=0)
    return dt.astimezone(UTC)


def format_offset(dt: datetime) -> str:
    """``+02:00``-style text of an aware datetime's UTC offset."""
    off = dt.utcoffset() or timedelta(0)
    sign = "-" if off < timedelta(0) else "+"
    minutes = abs(int(off.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse_duration(amount: str, unit: str) -> timedelta | None:
    """Duration from a number and a unit code (SCH-9/10, AIS-7/8, AIG-11/12, AIL-9/10, AIP-9/10, TQ1-13).

    Units (case-insensitive; pass CE component 1, e.g. ``m`` of ``m^Minutes``): minutes
    MIN/M/MINS/MINUTE/MINUTES, seconds S/SEC/SECS/SECOND/SECONDS, hours H/HR/HRS/HOUR/HOURS; an
    empty unit means minutes (the HL7 default for these fields). Returns None for an empty or
    non-numeric amount, an unknown unit, or more than 366 days.
    """
    amount = amount.strip()
    if not amount or not _NUMBER.fullmatch(amount):
        return None
    unit = unit.strip().upper()
    secs = _UNIT_SECONDS.get(unit) if unit else 60
    if secs is None:
        return None
    try:
        total = float(amount) * secs
    except (ValueError, OverflowError):
        return None
    if total > _MAX_DURATION.total_seconds():
        return None
    return timedelta(seconds=total)


def parse_duration_text(text: str) -> timedelta | None:
    """Duration from TQ.3 free text (SCH-11.3): ``M30`` (unit first), ``60`` (minutes), ``2 hours``.

    Returns None when the text is empty, has a unit both before and after the number, or uses a
    unit other than seconds/minutes/hours (e.g. ``D2``, ``INDEF``).
    """
    text = text.strip()
    if not text:
        return None
    m = _DURATION_TEXT.fullmatch(text)
    if m is None:
        return None
    prefix, amount, suffix = m.groups()
    if prefix and suffix:
        return None
    return parse_duration(amount, prefix or suffix)
