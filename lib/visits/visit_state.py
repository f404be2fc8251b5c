"""Where a visit stands for the patient at a given moment: too early, open, over or cancelled (and moved).

The join page shows one of these; the browser adds its own (not supported, blocked, offline, lobby...).
The room opens :data:`OPENS_BEFORE` before the start; the visit is over :data:`OVER_AFTER` after its end
(or its start plus :data:`DEFAULT_LENGTH` when the end is unknown). The link itself lives two hours past
the end, so "over" is what a patient sees first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from lib.models import ENDED_STATUSES, Appointment

#: How early the patient may enter the room (and the lobby) before the visit's start.
OPENS_BEFORE = timedelta(minutes=30)
#: How long after the visit's end the room still lets the patient in (visits run late).
OVER_AFTER = timedelta(minutes=60)
#: The length assumed when the visit has no end.
DEFAULT_LENGTH = timedelta(minutes=30)

VisitPhase = Literal["too_early", "open", "over", "cancelled"]


@dataclass(frozen=True)
class VisitState:
    """``phase`` of the visit; ``opens_utc`` when the room opens (``None`` without a start time);
    ``moved``: the visit's time was changed after it was first booked (the page says "new time")."""

    phase: VisitPhase
    opens_utc: datetime | None
    moved: bool

    @property
    def joinable(self) -> bool:
        """The patient may get a call token and enter the lobby."""
        return self.phase == "open"


def visit_state(appointment: Appointment, now: datetime) -> VisitState:
    """The patient's view of ``appointment`` at ``now`` (UTC)."""
    moved = appointment.schedule_revision > 1
    start = appointment.start_utc
    opens = start - OPENS_BEFORE if start is not None else None
    if appointment.status in ENDED_STATUSES:
        return VisitState("cancelled", opens, moved)
    if start is None:  # a visit created from a launch without a time: always open
        return VisitState("open", None, moved)
    end = appointment.end_utc or start + DEFAULT_LENGTH
    if now >= end + OVER_AFTER:
        return VisitState("over", opens, moved)
    if opens is not None and now < opens:
        return VisitState("too_early", opens, moved)
    return VisitState("open", opens, moved)
