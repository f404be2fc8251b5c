"""One report row per visit, derived from the appointment and the meeting's roster.

Definitions (``docs/reports.md``):

- **start**: the first instant a clinician and the patient were both in the meeting (the lobby does not count);
  **end**: when the meeting became empty for the last time after that; **duration** = end - start.
- **peak participants**: the most people in the meeting at once (any role, lobby excluded).
- **lobby wait**: from the patient's first lobby entry to their first admission after it (``None`` when the
  patient never waited in the lobby or was never admitted).
- **outcome** (decided at read time, :func:`outcome`): ``completed`` (both were in at the same time),
  ``cancelled``, ``no_show`` (Epic's S26), ``patient_never_joined``, ``clinician_never_joined``,
  ``never_together`` (both came, never at the same time, e.g. the patient left the lobby unadmitted),
  ``nobody_joined``; ``scheduled`` while the visit is not over yet. A visit where one side never joined is a
  row like any other, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lib.models import iso, parse_iso
from lib.reports.inputs import ParticipantEvent

#: A visit with nobody together is "over" this long after its scheduled end (before that: ``scheduled``).
OVER_GRACE = timedelta(hours=1)
#: Scheduled length assumed when the appointment has no end.
DEFAULT_LENGTH = timedelta(minutes=30)

OUTCOMES = ("completed", "patient_never_joined", "clinician_never_joined", "never_together", "nobody_joined",
            "no_show", "cancelled", "scheduled")
_ORDER = {"lobby": 0, "joined": 1, "left": 2}


@dataclass(frozen=True)
class Attendance:
    """What the roster says about one visit."""

    start_utc: datetime | None
    end_utc: datetime | None
    peak_participants: int
    lobby_wait_seconds: int | None
    clinician_joined: bool
    patient_joined: bool
    clinicians: tuple[str, ...]

    @property
    def duration_seconds(self) -> int | None:
        """Seconds from start to end, when both are known."""
        if self.start_utc is None or self.end_utc is None:
            return None
        return int((self.end_utc - self.start_utc).total_seconds())


def attendance(events: Iterable[ParticipantEvent]) -> Attendance:
    """Replay the roster events in time order (duplicates by ID count once)."""
    unique = {e.id: e for e in events}
    ordered = sorted(unique.values(), key=lambda e: (e.at_utc, _ORDER[e.kind], e.id))
    present: dict[str, str] = {}  # "role|participant" -> role
    start = end = None
    peak = 0
    lobby_since: datetime | None = None
    admitted: datetime | None = None
    clinician_joined = patient_joined = False
    clinicians: list[str] = []
    for event in ordered:
        who = f"{event.role}|{event.participant_id}"
        if event.kind == "lobby":
            if event.role == "patient":
                patient_joined = True
                if lobby_since is None:
                    lobby_since = event.at_utc
            continue
        if event.kind == "joined":
            present[who] = event.role
            if event.role == "clinician":
                clinician_joined = True
                if event.participant_id not in clinicians:
                    clinicians.append(event.participant_id)
            elif event.role == "patient":
                patient_joined = True
                if lobby_since is not None and admitted is None and event.at_utc >= lobby_since:
                    admitted = event.at_utc
            peak = max(peak, len(present))
            roles = set(present.values())
            if start is None and {"clinician", "patient"} <= roles:
                start = event.at_utc
        else:
            present.pop(who, None)
            if start is not None and not present:
                end = event.at_utc
    if present:
        end = None  # someone is still in the meeting: not ended yet
    wait = int((admitted - lobby_since).total_seconds()) if lobby_since and admitted else None
    return Attendance(start, end, peak, wait, clinician_joined, patient_joined, tuple(clinicians))


def outcome(row: dict[str, Any], now: datetime) -> str:
    """The outcome of a stored visit row at ``now`` (see the module docstring)."""
    if row.get("start_utc"):
        return "completed"
    status = row.get("status")
    if status in ("cancelled", "deleted"):
        return "cancelled"
    if status == "noshow":
        return "no_show"
    scheduled_end = parse_iso(row.get("scheduled_end_utc"))
    if scheduled_end is None:
        scheduled_start = parse_iso(row.get("scheduled_start_utc"))
        scheduled_end = scheduled_start + DEFAULT_LENGTH if scheduled_start else None
    if scheduled_end is not None and now < scheduled_end + OVER_GRACE:
        return "scheduled"
    clinician, patient = bool(row.get("clinician_joined")), bool(row.get("patient_joined"))
    if clinician and patient:
        return "never_together"
    if clinician:
        return "patient_never_joined"
    if patient:
        return "clinician_never_joined"
    return "nobody_joined"


def row_times(att: Attendance) -> dict[str, Any]:
    """The attendance part of a stored row."""
    return {
        "start_utc": iso(att.start_utc), "end_utc": iso(att.end_utc), "duration_seconds": att.duration_seconds,
        "peak_participants": att.peak_participants, "lobby_wait_seconds": att.lobby_wait_seconds,
        "clinician_joined": att.clinician_joined, "patient_joined": att.patient_joined,
        "clinicians": list(att.clinicians),
    }
