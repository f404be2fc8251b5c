"""Who counts as one participant of a visit, and how its roster entries become join and leave events.

A participant is a person, not a meeting identity. The patient on two devices, after a page reload (a new ACS
identity while Teams still lists the old one) or a relative opening the same link on a second phone are all
"patient"; a clinician whose two Entra accounts map to one EHR user is that EHR user; an interpreter whose
identities were registered with one ``person`` reference is one interpreter. So a participant is in the
meeting while **any** of its identities is (else in the lobby while any is there): it connects when the first
identity joins and disconnects when the last one leaves. The roster, the call record and the attendance report
all go through this module, so they agree.
"""

from __future__ import annotations

from datetime import datetime

from lib.store.presence import RosterEntry

#: The roles and event types written back to the EHR.
WRITTEN_BACK_ROLES = frozenset({"provider", "patient"})
WRITTEN_BACK_TYPES = frozenset({"connected", "disconnected"})


def participant_ref(who: RosterEntry) -> str | None:
    """The opaque reference stored with an interpreter's or other participant's events (``None`` for the
    clinician and the patient, named by ``participant_id``)."""
    if who.role in WRITTEN_BACK_ROLES:
        return None
    return who.participant_id.partition(":")[2] or who.key


def participants(entries: tuple[RosterEntry, ...]) -> dict[tuple[str, str], RosterEntry]:
    """One entry per participant (``RosterEntry.participant``) of a roster: in the meeting when any of its
    identities is, else in the lobby (the entry of the lowest key stands for it, so the choice is stable)."""
    found: dict[tuple[str, str], RosterEntry] = {}
    for entry in sorted(entries, key=lambda e: (e.lobby, e.key)):
        found.setdefault(entry.participant, entry)
    return found


def transitions(before: tuple[RosterEntry, ...], after: tuple[RosterEntry, ...]) -> list[tuple[RosterEntry, str]]:
    """The participant events between two rosters: ``(participant, type)`` with type ``in_lobby``,
    ``connected`` (joined, or admitted from the lobby), ``disconnected`` (left the meeting) or ``left_lobby``.
    Compared per participant, not per identity: a second device joining or one of two leaving changes nothing."""
    old = participants(before)
    new = participants(after)
    found: list[tuple[RosterEntry, str]] = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key), new.get(key)
        was_state = None if was is None else ("lobby" if was.lobby else "in")
        now_state = None if now is None else ("lobby" if now.lobby else "in")
        if was_state == now_state:
            continue
        who = now or was
        assert who is not None
        if now_state == "in":
            found.append((who, "connected"))
        elif now_state == "lobby":
            if was_state == "in":
                found.append((who, "disconnected"))
            found.append((who, "in_lobby"))
        else:
            found.append((who, "disconnected" if was_state == "in" else "left_lobby"))
    return found


def merged_stays(intervals: list[tuple[datetime, datetime | None]]) -> list[tuple[datetime, datetime | None]]:
    """One participant's stays from those of all its identities (sessions of two devices, a reload's old and
    new identity): overlapping or touching stays become one; a stay without a leave (``None``) lasts."""
    merged: list[tuple[datetime, datetime | None]] = []
    for start, end in sorted(intervals, key=lambda i: i[0]):
        if merged and (merged[-1][1] is None or start <= merged[-1][1]):
            first, last = merged[-1]
            merged[-1] = (first, None if last is None or end is None else max(last, end))
        else:
            merged.append((start, end))
    return merged
