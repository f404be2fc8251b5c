"""The meeting roster of a visit as Graph reported it (container ``presence``, partition ``/id`` = appointment
key): every roster snapshot received, in event time order, and when the call started and ended.

Keeping the snapshots (not only the latest) lets a late, out-of-order notification be slotted into its place,
so joins and leaves come out right whatever order Graph delivered them in. The history is bounded: when it
grows past its cap, the oldest snapshots are dropped and the newest dropped one is kept as the ``baseline``
(the roster at the cut), so participant events are still derived from the true roster before the first kept
snapshot, never from an empty one. Shape: ``docs/presence.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from lib.models import iso, parse_iso
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import AlreadyExists

#: Snapshots kept per visit (a visit has a few dozen roster changes; the oldest go first, the newest of them
#: staying as the baseline).
MAX_SNAPSHOTS = 300


@dataclass(frozen=True)
class RosterEntry:
    """One participant in a snapshot: ``key`` (stable per identity, opaque), ``role``, ``participant_id``
    (EHR user ID, ``patient``, or ``{role}:{ref}``), ``lobby`` (waiting in the lobby)."""

    key: str
    role: str
    participant_id: str
    lobby: bool = False

    @property
    def participant(self) -> tuple[str, str]:
        """Who this is, whatever identity (device, account) it came with: ``(role, participant_id)``."""
        return self.role, self.participant_id

    def to_doc(self) -> dict[str, Any]:
        """Document form."""
        return {"key": self.key, "role": self.role, "participant_id": self.participant_id, "lobby": self.lobby}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RosterEntry:
        """From the document form."""
        return cls(doc["key"], doc["role"], doc["participant_id"], bool(doc.get("lobby")))


@dataclass(frozen=True)
class Snapshot:
    """The roster at ``at_utc`` (Graph's ``eventDateTime``); ``event_id`` is Graph's call event ID."""

    at_utc: datetime
    event_id: str
    entries: tuple[RosterEntry, ...]

    def to_doc(self) -> dict[str, Any]:
        """Document form."""
        return {"at_utc": iso(self.at_utc), "event_id": self.event_id, "entries": [e.to_doc() for e in self.entries]}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Snapshot:
        """From the document form."""
        return cls(parse_iso(doc["at_utc"]), doc["event_id"],  # type: ignore[arg-type]
                   tuple(RosterEntry.from_doc(e) for e in doc.get("entries") or ()))


@dataclass(frozen=True)
class Presence:
    """A visit's roster history: ``snapshots`` in event-time order and, once older ones were dropped,
    ``baseline``: the newest dropped snapshot (the roster just before the first kept one)."""

    appointment_key: str
    snapshots: tuple[Snapshot, ...] = ()
    call_started_utc: datetime | None = None
    call_ended_utc: datetime | None = None
    updated_utc: datetime | None = None
    etag: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    baseline: Snapshot | None = None

    def trimmed(self, max_snapshots: int = MAX_SNAPSHOTS) -> Presence:
        """At most ``max_snapshots`` snapshots: the oldest are dropped and the newest dropped one becomes the
        baseline."""
        if len(self.snapshots) <= max_snapshots:
            return self
        cut = len(self.snapshots) - max_snapshots
        return replace(self, snapshots=self.snapshots[cut:], baseline=self.snapshots[cut - 1])

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document (a history longer than :data:`MAX_SNAPSHOTS` is trimmed first)."""
        kept = self.trimmed() if len(self.snapshots) > MAX_SNAPSHOTS else self
        return {"id": self.appointment_key, "snapshots": [s.to_doc() for s in kept.snapshots],
                "baseline": kept.baseline.to_doc() if kept.baseline else None,
                "call_started_utc": iso(self.call_started_utc), "call_ended_utc": iso(self.call_ended_utc),
                "updated_utc": iso(self.updated_utc)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Presence:
        """Build from a stored document, keeping its ``_etag``."""
        baseline = doc.get("baseline")
        return cls(doc["id"], tuple(Snapshot.from_doc(s) for s in doc.get("snapshots") or ()),
                   parse_iso(doc.get("call_started_utc")), parse_iso(doc.get("call_ended_utc")),
                   parse_iso(doc.get("updated_utc")), doc.get("_etag"),
                   baseline=Snapshot.from_doc(baseline) if isinstance(baseline, dict) else None)


class PresenceRepository:
    """Point reads and ETag-guarded writes of :class:`Presence`."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("presence")

    def get(self, appointment_key: str) -> Presence | None:
        """The visit's presence document, or ``None``."""
        doc = read_or_none(self._container, appointment_key, appointment_key)
        return Presence.from_doc(doc) if doc else None

    def save(self, presence: Presence) -> Presence:
        """Create (no ETag yet) or replace with ``If-Match``.

        Raises:
            ConcurrencyConflict: another writer changed it first.
            AlreadyExists: another writer created it first.
        """
        with translated_errors():
            if presence.etag is None:
                doc = self._container.create_item(presence.to_doc())
            else:
                doc = self._container.replace_item(item=presence.appointment_key, body=presence.to_doc(),
                                                   **if_match(presence.etag))
        return Presence.from_doc(doc)


__all__ = ["MAX_SNAPSHOTS", "AlreadyExists", "Presence", "PresenceRepository", "RosterEntry", "Snapshot"]
