"""Who is in the room now and since when, from a visit's roster snapshots (:mod:`lib.store.presence`).

Each participant seen during the visit has a state (``lobby``: waiting to be admitted, ``in_meeting``:
admitted, ``left``) and ``since``: when that state began (event time from Graph, UTC). Labels name roles, never
people: "Clinician E1001" (the EHR user ID the clinician's launch already showed), "Patient", "Interpreter",
"Other participant".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.models import iso
from lib.presence.participants import participants
from lib.store.presence import Presence

ROLE_LABELS = {"patient": "Patient", "interpreter": "Interpreter", "other": "Other participant"}
STATE_LABELS = {"lobby": "Waiting in the lobby", "in_meeting": "In the meeting", "left": "Left"}


@dataclass(frozen=True)
class ParticipantStatus:
    """One participant's current state."""

    key: str
    role: str
    label: str
    state: str
    since_utc: datetime

    def to_json(self) -> dict[str, Any]:
        """JSON form (``GET .../status.json``)."""
        return {"role": self.role, "label": self.label, "state": self.state, "stateLabel": STATE_LABELS[self.state],
                "sinceUtc": iso(self.since_utc)}


@dataclass(frozen=True)
class VisitStatus:
    """The live status of one visit."""

    call_started_utc: datetime | None
    call_ended_utc: datetime | None
    participants: tuple[ParticipantStatus, ...]
    updated_utc: datetime | None

    def to_json(self) -> dict[str, Any]:
        """JSON form (``GET .../status.json``)."""
        return {"callStartedUtc": iso(self.call_started_utc), "callEndedUtc": iso(self.call_ended_utc),
                "updatedUtc": iso(self.updated_utc), "participants": [p.to_json() for p in self.participants]}


def _label(role: str, participant_id: str) -> str:
    return f"Clinician {participant_id}" if role == "provider" else ROLE_LABELS.get(role, "Other participant")


def visit_status(presence: Presence | None) -> VisitStatus:
    """The status of each participant after the newest snapshot, in order of first appearance. A participant
    is a person, not an identity (the patient on two devices is one row, in the meeting while either is)."""
    if presence is None:
        return VisitStatus(None, None, (), None)
    current: dict[tuple[str, str], ParticipantStatus] = {}
    history = ((presence.baseline,) if presence.baseline is not None else ()) + presence.snapshots
    for snapshot in history:
        now = participants(snapshot.entries)
        for who, entry in now.items():
            state = "lobby" if entry.lobby else "in_meeting"
            before = current.get(who)
            if before is None or before.state != state:
                current[who] = ParticipantStatus(entry.key, entry.role, _label(entry.role, entry.participant_id),
                                                 state, snapshot.at_utc)
        for who, before in list(current.items()):
            if who not in now and before.state != "left":
                current[who] = ParticipantStatus(before.key, before.role, before.label, "left", snapshot.at_utc)
    return VisitStatus(presence.call_started_utc, presence.call_ended_utc, tuple(current.values()),
                       presence.updated_utc)
