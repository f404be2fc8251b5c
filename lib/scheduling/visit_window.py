"""The window of visit start times the intake accepts.

A start far in the future (a typo such as year 2200, a placeholder date) or before 1970 is not a visit
anyone will attend: storing it would schedule texts whose join links and ``ttl`` values cannot be
represented. The message is refused with ``AR`` 102 naming the field the start came from
(docs/hl7-intake.md "Appointment start"), so the interface team fixes the source instead of the connector
silently moving the visit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lib.hl7.errors import HL7Rejected
from lib.hl7.siu import SiuMessage

#: Furthest ahead a visit may start. Epic Cadence books at most a few years out; five leaves room.
MAX_AHEAD = timedelta(days=5 * 366)
#: Earliest start accepted: Unix time zero (nothing earlier is a virtual visit).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def check_visit_window(message: SiuMessage, now: datetime) -> None:
    """Refuse a message whose start is before 1970 or more than :data:`MAX_AHEAD` after ``now``.

    Raises:
        HL7Rejected: ``AR`` 102 at the start's field (e.g. SCH-11), the reason naming it and the limit (never
            the date itself: a visit date is personal data).
    """
    start = message.start_utc
    if start is None:
        return
    label = message.start_source or "SCH-11"
    if start < EARLIEST:
        problem = "is before 1970"
    elif start > now + MAX_AHEAD:
        problem = f"is more than {MAX_AHEAD.days // 366} years ahead"
    else:
        return
    segment, _, place = label.partition("-")
    raise HL7Rejected(
        f"the start in {label} {problem} (not a plausible visit)",
        "102",
        segment=segment,
        field=int(place.split(".")[0]),
    )
