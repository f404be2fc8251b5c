"""MSH-7 (date/time of message) as the instant that orders a visit's messages, or the reason it cannot.

MSH-7 is the sender's clock and the only order a feed gives the messages of one appointment, so a value that
cannot be that order is refused (``AR``, ERR at ``MSH^1^7``) instead of being stored as the visit's ordering
key, where one bad value would make every later message "older" (a cancel silently ignored):

- missing: ``AR`` 101 (required field missing) from version 2.4 on, where MSH-7 is required. Versions 2.3
  and 2.3.1 made it optional, and a message of theirs without it is ordered by the time we received it
  (a sender that never values MSH-7 is then ordered by arrival throughout);
- not an HL7 date/time, or less precise than the minute: ``AR`` 102;
- ahead of our clock by more than :data:`FUTURE_ALLOWANCE` when MSH-7 carries its offset (clock skew like
  the request signature's 60 s, ``lib/scheduling/signature.py``, plus a few minutes of engine clocks
  drifting between NTP syncs), or by more than :data:`ZONELESS_FUTURE_ALLOWANCE` when it does not (it is
  then read in the environment's zone, and a sender whose clock keeps another zone, UTC say, is hours off
  for every message alike, which orders its messages just as well): a typo or a wrong clock, ``AR`` 102;
- before :data:`EARLIEST` (1980, before HL7 version 2 existed; the 1970 of a reset clock too): a placeholder
  such as ``19000101`` or a clock reset, ``AR`` 102.

An old but plausible MSH-7 is accepted (an engine's backlog, an operator's replay): it loses to newer
messages, which is what it should do.

An accepted MSH-7 is a span of time, not an instant (:class:`MessageTime`): a value covers everything its
precision leaves open (``202612061137`` the whole minute, ``20261206113707`` the whole second), and a local time
without an offset that falls in the hour the environment's zone repeats when clocks go back (01:00-02:00 on
America/New_York's and Europe/London's autumn night, 01:30-02:00 on Australia/Lord_Howe's) covers both of its
readings. Two messages whose spans overlap are a tie (:mod:`lib.scheduling.ordering`), so a cancel stamped
less precisely, or in the second pass of the repeated hour, is never judged older than its booking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from lib.hl7.errors import HL7Rejected
from lib.hl7.header import MessageHeader
from lib.hl7.times import dtm_precision, local_readings, parse_dtm

#: How far an MSH-7 with its own UTC offset may be ahead of the connector's clock.
FUTURE_ALLOWANCE = timedelta(minutes=5)
#: How far an MSH-7 without an offset may be ahead: the widest gap between the environment's zone and the
#: zone a sender's clock may keep (UTC against UTC-10 Hawaii, UTC+14 against UTC), plus the clock skew.
ZONELESS_FUTURE_ALLOWANCE = timedelta(hours=14) + FUTURE_ALLOWANCE
#: The earliest MSH-7 accepted: HL7 version 2 dates from 1987, and a clock reset to 1970 is caught. Example
#: messages of the standard's own chapters (the 1990s) are still read.
EARLIEST = datetime(1980, 1, 1, tzinfo=UTC)
_MIN_DIGITS = 12  # YYYYMMDDHHMM
#: Versions whose MSH-7 is optional: the standard made it required in version 2.4, and "messages with versions
#: prior to 2.4 are not required to value this field" (MSH-7's definition since 2.4).
_MSH7_OPTIONAL = frozenset({"2.3", "2.3.1"})


_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class MessageTime:
    """When a message was sent, as far as MSH-7 tells: from ``earliest`` to ``latest`` (UTC, both included).

    ``earliest`` is the first instant the value can mean (its first reading, the missing digits zero);
    ``latest`` the last (its second reading in a repeated hour, plus its precision less a microsecond).
    Equal for a value to the microsecond and for a message ordered by its arrival."""

    earliest: datetime
    latest: datetime


def message_instant(header: MessageHeader, time_zone: str, now: datetime) -> datetime:
    """MSH-7 as a UTC instant (its earliest reading, :func:`message_time`).

    Raises:
        HL7Rejected: as :func:`message_time`.
    """
    return message_time(header, time_zone, now).earliest


def message_time(header: MessageHeader, time_zone: str, now: datetime) -> MessageTime:
    """MSH-7 as the span of UTC time it names: its own offset when it has one, else ``time_zone`` (the
    environment's), where a local time in the repeated autumn hour has two readings; widened by its precision.

    Raises:
        HL7Rejected: ``AR`` 101 or 102 at ``MSH^1^7`` (module docstring), the reason saying what to fix.
    """
    raw = header.message_datetime_raw
    if not raw and header.version in _MSH7_OPTIONAL:
        return MessageTime(now, now)
    if not raw:
        raise HL7Rejected(
            "MSH-7 (date/time of message) is missing: it is required and orders the visit's messages; "
            "send the time the message was created",
            "101", location="MSH^1^7",
        )
    parsed = parse_dtm(raw, min_digits=_MIN_DIGITS)
    instant = last = None
    if parsed is not None:
        try:
            instant, last = (parsed.astimezone(UTC),) * 2 if parsed.tzinfo is not None else local_readings(
                parsed, ZoneInfo(time_zone))
        except (OverflowError, ValueError):
            instant = None
    if instant is None:
        raise HL7Rejected(
            "MSH-7 (date/time of message) is not an HL7 date/time to the minute at least "
            "(YYYYMMDDHHMM[SS][+/-ZZZZ])",
            "102", location="MSH^1^7",
        )
    allowance = FUTURE_ALLOWANCE if parsed.tzinfo is not None else ZONELESS_FUTURE_ALLOWANCE
    if instant > now + allowance:
        raise HL7Rejected(
            f"MSH-7 (date/time of message) is {_ahead(instant - now)} ahead of the connector's clock (at most "
            f"{_ahead(allowance)} allowed): check the sending system's clock and time zone; "
            f"MSH-7 without an offset is read in {time_zone}",
            "102", location="MSH^1^7",
        )
    if instant < EARLIEST:
        raise HL7Rejected(
            f"MSH-7 (date/time of message) is before {EARLIEST.year}, a placeholder or a reset clock: send "
            "the time the message was created",
            "102", location="MSH^1^7",
        )
    precision = dtm_precision(raw) or _TICK
    try:
        latest = (last or instant) + precision - _TICK
    except OverflowError:
        latest = instant
    return MessageTime(instant, latest)


def _ahead(delta: timedelta) -> str:
    """``delta`` for a reader: ``7 min``, ``3 h 5 min``, ``300 days``."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // (24 * 60)} days"
