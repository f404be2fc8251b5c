"""In-memory stand-ins for the repositories and the queue (same methods and ETag rules, no Cosmos)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime
from typing import Any

from lib.models import Appointment, EnvironmentConfig
from lib.store.errors import AlreadyExists, ConcurrencyConflict
from lib.store.launch_states import LaunchState
from lib.store.visit_events import VisitEvent

_etags = itertools.count(1)


def _etag() -> str:
    return f'"{next(_etags)}"'


class Environments:
    def __init__(self, *configs: EnvironmentConfig) -> None:
        self.configs = {c.id: c for c in configs}
        self.lookups: list[str] = []

    def get(self, environment_id: str, *, fresh: bool = False) -> EnvironmentConfig | None:
        return self.configs.get(environment_id)

    def find_by_fhir_base_url(self, iss: str) -> EnvironmentConfig | None:
        self.lookups.append(iss)
        return next((c for c in self.configs.values() if iss in c.fhir_base_urls), None)


class LaunchStates:
    def __init__(self) -> None:
        self.docs: dict[str, LaunchState] = {}
        self.taken: set[str] = set()

    def create(self, state: LaunchState) -> None:
        if state.state in self.docs:
            raise AlreadyExists("exists")
        self.docs[state.state] = dataclasses.replace(state, etag=_etag())

    def get(self, state: str) -> LaunchState | None:
        return self.docs.get(state)

    def consume(self, state: LaunchState) -> bool:
        stored = self.docs.get(state.state)
        if stored is None or stored.etag != state.etag:
            return False
        del self.docs[state.state]
        return True

    def take(self, state: str, browser_binding: str, *, now: datetime) -> LaunchState | str:
        """Like the store's conditional patch: the used mark is dropping the state."""
        stored = self.docs.get(state)
        if stored is None or stored.expired(now):
            return "used" if stored is None and state in self.taken else "unknown"
        if stored.browser_binding != browser_binding:
            return "other_browser"
        del self.docs[state]
        self.taken.add(state)
        return stored


class Appointments:
    def __init__(self) -> None:
        self.docs: dict[str, Appointment] = {}

    def get(self, key: str) -> Appointment | None:
        doc = self.docs.get(key)
        return dataclasses.replace(doc) if doc else None

    def create(self, appointment: Appointment) -> Appointment:
        if appointment.key in self.docs:
            raise AlreadyExists("exists")
        self.docs[appointment.key] = dataclasses.replace(appointment, etag=_etag())
        return self.get(appointment.key)  # type: ignore[return-value]

    def replace(self, appointment: Appointment) -> Appointment:
        stored = self.docs.get(appointment.key)
        if stored is None or (appointment.etag is not None and stored.etag != appointment.etag):
            raise ConcurrencyConflict("changed")
        self.docs[appointment.key] = dataclasses.replace(appointment, etag=_etag())
        return self.get(appointment.key)  # type: ignore[return-value]


class Links:
    def __init__(self) -> None:
        self.docs: dict[str, tuple[str, datetime]] = {}

    def put(self, link_id: str, appointment_key: str, *, expires: datetime, now: datetime) -> None:
        self.docs[link_id] = (appointment_key, expires)

    def appointment_key(self, link_id: str, *, now: datetime) -> str | None:
        hit = self.docs.get(link_id)
        return hit[0] if hit and hit[1] > now else None


class VisitEvents:
    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], VisitEvent] = {}

    def create_once(self, event: VisitEvent) -> tuple[VisitEvent, bool]:
        key = (event.appointment_key, event.id)
        if key in self.docs:
            return self.docs[key], False
        self.docs[key] = dataclasses.replace(event, etag=_etag())
        return self.docs[key], True

    def get(self, appointment_key: str, event_id: str) -> VisitEvent | None:
        return self.docs.get((appointment_key, event_id))

    def update(self, event: VisitEvent, **changes: Any) -> VisitEvent:
        key = (event.appointment_key, event.id)
        if self.docs[key].etag != event.etag:
            raise ConcurrencyConflict("changed")
        self.docs[key] = dataclasses.replace(event, **changes, etag=_etag())
        return self.docs[key]

    def pending_before(self, cutoff: datetime, *, limit: int = 100) -> list[VisitEvent]:
        found = sorted((e for e in self.docs.values()
                        if e.writeback in ("pending", "sending") and (e.due_utc or e.at_utc) < cutoff),
                       key=lambda e: e.due_utc or e.at_utc)
        return found[:limit]

    def for_appointment(self, appointment_key: str) -> list[VisitEvent]:
        return sorted((e for e in self.docs.values() if e.appointment_key == appointment_key),
                      key=lambda e: e.at_utc)


class Queue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, queue: str, message: Any, *, visibility_timeout: int | None = None) -> None:
        self.sent.append((queue, dict(message)))
