"""Which of two HL7 messages about one visit is the newer: the ordering key and how two keys compare.

A key is ``MSH-7 as UTC (microseconds) | MSH-10`` (the text stored as ``Appointment.order_key`` since the
first version: stored keys are parsed, never compared as text). When MSH-7 names a span of time rather than an
instant (:class:`lib.scheduling.message_time.MessageTime`: a value to the second or the minute, a local time in
the repeated autumn hour), the key is ``earliest~latest | MSH-10``. Two keys compare by:

1. MSH-7: one is older when its span ends before the other's begins; spans that overlap are a tie (a cancel to
   the second and its booking to the millisecond in that second; a cancel in the second pass of the repeated
   hour and a booking in the first), never "older" by digits the sender did not send or a reading it did not
   mean;
2. on an MSH-7 tie, when both MSH-10s are numbers of one numbering scheme (the same text once every digit
   run is taken out: ``99``/``100``, ``MSG00099``/``MSG00100``, ``7001234-1``/``7001234-2``), MSH-10 in
   natural order: digit runs compare as numbers, so a sender's counter orders right past ``...99``;
3. otherwise (random IDs such as GUIDs or hex, which say nothing about order): the message that ends the
   visit (S15 cancel, S17 delete, S26 no-show; a stored visit that is cancelled, deleted or a no-show)
   is the newer one, so a cancelled visit never keeps texting because of a coin flip; then MSH-10 in
   natural order, so the result is the same whatever order the two arrive in.

Digit runs compare by value without ``int()`` (a 4,000-digit run cannot trip Python's limit), and
``007`` and ``7`` stay different (the shorter text first), so two different keys never compare equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_KEY_TIME = "%Y-%m-%dT%H:%M:%S.%f"
_RUNS = re.compile(r"\d+|\D+")
_DIGITS = re.compile(r"\d+")


def order_key(message_time: datetime, control_id: str, *, latest: datetime | None = None) -> str:
    """The ordering key of a message: MSH-7 in UTC (microseconds), ``~`` and the last instant it can mean when
    that is later (``latest``), then ``|`` + MSH-10."""
    stamp = message_time.astimezone(UTC).strftime(_KEY_TIME)
    if latest is not None and latest > message_time:
        stamp += "~" + latest.astimezone(UTC).strftime(_KEY_TIME)
    return f"{stamp}|{control_id}"


@dataclass(frozen=True)
class OrderKey:
    """A parsed ordering key: the span of time the message's MSH-7 names (``instant`` to ``latest``, both
    included; equal for a key written before spans existed) and its control ID (MSH-10)."""

    instant: datetime
    control_id: str
    latest: datetime | None = None

    @property
    def last(self) -> datetime:
        """The last instant MSH-7 can mean."""
        return self.latest or self.instant

    @classmethod
    def parse(cls, text: str) -> OrderKey | None:
        """The parts of a stored key; ``None`` for an empty key (a visit a launch opened before any message)
        or text that is not a key."""
        stamp, sep, control_id = text.partition("|")
        if not sep:
            return None
        first, _, last = stamp.partition("~")
        try:
            instant = datetime.strptime(first, _KEY_TIME).replace(tzinfo=UTC)
            latest = datetime.strptime(last, _KEY_TIME).replace(tzinfo=UTC) if last else None
        except ValueError:
            return None
        return cls(instant, control_id, latest if latest is not None and latest > instant else None)


def natural_sort_key(control_id: str) -> tuple[object, ...]:
    """``control_id`` with its digit runs as numbers (``"M99"`` before ``"M100"``); total and deterministic."""
    parts: list[tuple[object, ...]] = []
    for run in _RUNS.findall(control_id):
        if run[0].isdigit():
            value = run.lstrip("0")
            parts.append((0, len(value), value, len(run)))
        else:
            parts.append((1, run))
    return (tuple(parts), control_id)


def same_numbering(a: str, b: str) -> bool:
    """Whether two control IDs differ only in their digit runs (one counter, e.g. ``MSG0099``/``MSG0100``)."""
    return _DIGITS.sub("#", a) == _DIGITS.sub("#", b)


def compare(new: OrderKey, new_ends_visit: bool, stored: OrderKey, stored_ends_visit: bool) -> int:
    """Negative when ``new`` is older than ``stored``, 0 for the same message, positive when newer.

    Args:
        new_ends_visit: the new message is an S15, S17 or S26.
        stored_ends_visit: the stored visit is cancelled, deleted or a no-show.
    """
    if new.last < stored.instant:
        return -1
    if new.instant > stored.last:
        return 1
    if new.control_id == stored.control_id:
        return 0
    if not same_numbering(new.control_id, stored.control_id) and new_ends_visit != stored_ends_visit:
        return 1 if new_ends_visit else -1
    return -1 if natural_sort_key(new.control_id) < natural_sort_key(stored.control_id) else 1
