"""Write-back failures in the portal (docs/portal.md "Write-back failures"): per environment, the participant
events Epic did not get (refused for good, retried past the horizon, outcome unknown, or given up by the queue)
with Epic's reason, whether the environment's write-back settings are wrong, and replay, one event or all,
audited.

Listing and replaying are :mod:`lib.operations.poison` (the same as ``./dev ops writeback poison``); this module
adds what the portal needs: rows an admin can read (the visit's appointment ID and the clinician's EHR user ID,
never anything about the patient), the environment's settings check, the rule that an event which may already
have reached Epic (outcome unknown, or a time-out that may have arrived) is replayed only by itself after
someone checked Epic, and one audit entry per replay naming the events and their outcomes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from lib.config.access import Principal
from lib.config.audit import AuditEntry, AuditLog
from lib.config.environments import EnvironmentAdmin, Problem, writeback_problems
from lib.models import COSMOS_ID_FORBIDDEN, EnvironmentConfig, parse_iso
from lib.operations import poison

#: What a visit event's ID looks like (32 hex digits from lib.visits.events; tests' own IDs too).
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
#: The audit action of a replay.
REPLAY_ACTION = "writeback.replay"
#: What the admin reads for each replay outcome (lib.operations.poison.replay, plus the portal's own rule).
OUTCOMES = {
    "requeued": "queued to be written to Epic again",
    "already-queued": "already waiting to be written: not queued twice",
    "already-written": "already written to Epic: not sent again",
    "in-progress": "being written right now: left alone",
    "superseded": "a later status of the same participant was written: not replayed",
    "not-written-back": "this kind of event is never written to Epic",
    "check-epic-first": "may already be in Epic: check Epic, then replay it on its own",
    "missing": "no longer exists",
}
#: Why an event failed, for people (by the start of its reason code).
REASONS = (
    ("retry_horizon_exceeded", "Epic kept failing (time-outs, busy or down) until the retry horizon passed"),
    ("outcome_unknown", "a worker stopped while calling Epic: the status may or may not be in Epic"),
    ("poisoned", "the queue gave up on it after repeated errors"),
    ("environment_missing", "its environment no longer exists"),
    ("unsupported_event_type", "no status code is configured for this kind of event"),
    ("epic_http_", "Epic refused it"),
    ("epic_", "Epic refused it"),
)


class ReplayRefused(Exception):
    """A replay request cannot be carried out: ``status`` (404, 409), ``code`` and ``reason`` (safe to show)."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


class ReplayBody(BaseModel):
    """Body of ``POST /api/config/environments/{id}/writeback-failures/replay``: one event (``eventId`` and
    ``appointmentKey`` as listed), or ``all``. ``checkedInEpic``: for an event whose outcome is unknown, someone
    checked that its status is not in Epic."""

    model_config = ConfigDict(extra="forbid")
    all: StrictBool = False  # JSON true/false only: "yes" or 1 is refused, not read as true
    eventId: str | None = Field(default=None, min_length=1, max_length=200)
    appointmentKey: str | None = Field(default=None, min_length=1, max_length=400)
    checkedInEpic: StrictBool = False

    @model_validator(mode="after")
    def _one_target(self) -> ReplayBody:
        if self.all == bool(self.eventId or self.appointmentKey):
            raise ValueError("send either all: true, or eventId with appointmentKey")
        if not self.all and not (self.eventId and self.appointmentKey):
            raise ValueError("eventId and appointmentKey go together (both as listed)")
        return self


def reason_text(code: str | None) -> str:
    """A sentence for a write-back reason code (``epic_http_403``, ``retry_horizon_exceeded:epic_http_503``...)."""
    if not code:
        return "the queue gave up on it; its event has not been marked yet"
    return next((text for prefix, text in REASONS if code.startswith(prefix)), "it failed")


@dataclass(frozen=True)
class FailureRow:
    """One event Epic did not get, as the portal shows it.

    ``state``: ``failed``, ``unknown`` (may or may not be in Epic) or ``queued`` (its message is in the poison
    queue and the event is not marked yet). ``participant``: the clinician's EHR user ID, ``None`` for anyone
    else (the role says who). ``needs_epic_check``: replay only after checking Epic.
    """

    event_id: str
    appointment_key: str
    appointment_id: str
    event_type: str | None
    role: str | None
    participant: str | None
    at_utc: datetime | None
    state: str
    reason: str | None
    epic_detail: str | None
    attempts: int | None
    last_attempt_utc: datetime | None
    needs_epic_check: bool

    @property
    def reason_text(self) -> str:
        """The reason for people."""
        return reason_text(self.reason)

    def to_json(self) -> dict[str, Any]:
        """The JSON API's shape."""
        return {"eventId": self.event_id, "appointmentKey": self.appointment_key,
                "appointmentId": self.appointment_id, "event": self.event_type, "role": self.role,
                "participant": self.participant, "atUtc": _iso(self.at_utc), "state": self.state,
                "reason": self.reason, "reasonText": self.reason_text, "epicDetail": self.epic_detail,
                "attempts": self.attempts, "lastAttemptUtc": _iso(self.last_attempt_utc),
                "needsEpicCheck": self.needs_epic_check}


@dataclass(frozen=True)
class FailureReport:
    """One environment (as stored), its failures (oldest first) and what is wrong with its write-back settings."""

    environment: EnvironmentConfig
    rows: list[FailureRow]
    settings_problems: list[Problem]

    def to_json(self) -> dict[str, Any]:
        """The JSON API's shape."""
        env_id = self.environment.id
        return {"environmentId": env_id, "failures": [r.to_json() for r in self.rows],
                "settingsProblems": [{"field": p.field, "message": p.message} for p in self.settings_problems],
                "settingsUrl": f"/api/portal/environments/{env_id}/edit"}


@dataclass(frozen=True)
class ReplayResult:
    """What one replay request did: ``outcomes`` (event ID -> outcome of :data:`OUTCOMES`), its audit entry
    (``None`` when there was nothing to replay), who and when."""

    outcomes: dict[str, str]
    audit_id: str | None
    actor: str | None = None
    at: datetime | None = None
    events: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON API's shape."""
        return {"outcomes": self.outcomes, "auditId": self.audit_id, "by": self.actor, "at": _iso(self.at)}

    @classmethod
    def from_audit(cls, entry: AuditEntry) -> ReplayResult:
        """The result recorded in a replay's audit entry."""
        return cls(dict((entry.after or {}).get("outcomes") or {}), entry.id, entry.actor_name, entry.at,
                   tuple((entry.before or {}).get("events") or ()))

    def lines(self) -> list[dict[str, Any]]:
        """One line per replayed event for the page: the event as audited and its outcome."""
        named = {e.get("eventId"): e for e in self.events}
        return [{**named.get(event_id, {"eventId": event_id}), "outcome": outcome}
                for event_id, outcome in self.outcomes.items()]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _target(event_id: str, appointment_key: str, appointment_id: str, event_type: str | None, role: str | None,
            state: str) -> dict[str, Any]:
    """One replayed event as the audit entry names it (IDs and the event's kind; nothing about the patient)."""
    return {"eventId": event_id, "appointmentKey": appointment_key, "appointmentId": appointment_id,
            "event": event_type, "role": role, "state": state}


class WritebackFailures:
    """Lists and replays one environment's failed write-backs.

    Args:
        operations: what :mod:`lib.operations.poison` works on (the app's services: store, queues, repositories).
        environments: the portal's environment service (the environment must exist; its settings are checked).
        audit: the audit log.
        clock: ``now()`` for audit entries.
    """

    def __init__(self, *, operations: Any, environments: EnvironmentAdmin, audit: AuditLog, clock: Any) -> None:
        self._ops = operations
        self._environments = environments
        self._audit = audit
        self._clock = clock

    def report(self, environment_id: str) -> FailureReport:
        """The environment's failures and settings problems.

        Raises:
            lib.config.environments.NotFound: unknown environment.
            StoreUnavailable: Cosmos DB is down.
        """
        config = self._environments.get(environment_id)
        return FailureReport(config, self._rows(config.id), writeback_problems(config))

    def counts(self) -> dict[str, int]:
        """Environment ID -> number of failures, for every environment that has some."""
        counts: dict[str, int] = {}
        seen: set[str] = set()
        for item in poison.list_poison(self._ops, None):
            if item.event_id in seen:
                continue
            seen.add(item.event_id)
            env_id = item.appointment_key.split("|", 1)[0]
            counts[env_id] = counts.get(env_id, 0) + 1
        return counts

    def _rows(self, environment_id: str) -> list[FailureRow]:
        rows: dict[str, FailureRow] = {}
        for item in poison.list_poison(self._ops, environment_id):
            if item.source == "event":
                rows[item.event_id] = self._row(item)
            elif item.event_id not in rows:
                rows[item.event_id] = self._queued_row(item)
        return sorted(rows.values(), key=lambda r: (r.at_utc is None, r.at_utc or datetime.min))

    def _row(self, item: poison.PoisonWriteback) -> FailureRow:
        event = item.event
        ambiguous = bool(event and event.ambiguous_attempts)
        return FailureRow(
            event_id=item.event_id, appointment_key=item.appointment_key,
            appointment_id=event.appointment_id if event else item.appointment_key.split("|", 1)[-1],
            event_type=event.type if event else None, role=event.role if event else None,
            participant=event.participant_id if event and event.role == "provider" else None,
            at_utc=event.at_utc if event else parse_iso(item.at_utc), state=item.writeback or "failed",
            reason=item.reason, epic_detail=item.detail, attempts=item.attempts,
            last_attempt_utc=event.writeback_utc if event else None,
            needs_epic_check=item.writeback == "unknown" or ambiguous)

    def _queued_row(self, item: poison.PoisonWriteback) -> FailureRow:
        event = self._ops.repos.visit_events.get(item.appointment_key, item.event_id) if item.event_id else None
        return FailureRow(
            event_id=item.event_id, appointment_key=item.appointment_key,
            appointment_id=event.appointment_id if event else item.appointment_key.split("|", 1)[-1],
            event_type=event.type if event else None, role=event.role if event else None,
            participant=event.participant_id if event and event.role == "provider" else None,
            at_utc=event.at_utc if event else parse_iso(item.at_utc), state="queued", reason=None,
            epic_detail=event.epic_detail if event else None, attempts=event.attempts if event else None,
            last_attempt_utc=event.writeback_utc if event else None,
            needs_epic_check=bool(event and (event.writeback == "unknown" or event.ambiguous_attempts)))

    # ---- replay ----------------------------------------------------------------------------------------------
    def replay_one(self, environment_id: str, event_id: str, appointment_key: str, actor: Principal, *,
                   checked_in_epic: bool = False) -> ReplayResult:
        """Replay one event of the environment (safe to repeat: see :func:`lib.operations.poison.replay`).

        Raises:
            lib.config.environments.NotFound: unknown environment.
            ReplayRefused: 404 ``EVENT_NOT_FOUND`` (no such event in this environment); 409 ``CHECK_EPIC_FIRST``
                (its outcome is unknown and ``checked_in_epic`` was not given).
        """
        self._environments.get(environment_id)
        event = None
        if (_EVENT_ID.fullmatch(event_id) and appointment_key.startswith(f"{environment_id}|")
                and len(appointment_key) <= 400 and not COSMOS_ID_FORBIDDEN.intersection(appointment_key)):
            event = self._ops.repos.visit_events.get(appointment_key, event_id)
        if event is None or event.environment_id != environment_id:
            raise ReplayRefused(404, "EVENT_NOT_FOUND", f"Environment '{environment_id}' has no write-back event "
                                                        f"'{event_id[:80]}'. Reload the list: it shows the events "
                                                        "that can be replayed.")
        unsure = event.writeback == "unknown" or (event.writeback == "failed" and event.ambiguous_attempts > 0)
        if unsure and not checked_in_epic:
            raise ReplayRefused(409, "CHECK_EPIC_FIRST", "This status may already be in Epic (the call's outcome is "
                                                         "unknown). Check the visit in Epic first; if the status "
                                                         "is not there, tick the box and replay it.")
        outcome = poison.replay(self._ops, event_id, appointment_key)
        target = _target(event_id, appointment_key, event.appointment_id, event.type, event.role, event.writeback)
        return self._audited(environment_id, actor, [target], {event_id: outcome})

    def replay_all(self, environment_id: str, actor: Principal) -> ReplayResult:
        """Replay every failure listed for the environment, except those that may already be in Epic (each of
        those is replayed on its own, after a check).

        Raises:
            lib.config.environments.NotFound: unknown environment.
        """
        rows = self.report(environment_id).rows
        outcomes: dict[str, str] = {}
        for row in rows:
            if row.needs_epic_check:
                outcomes[row.event_id] = "check-epic-first"
            elif row.event_id:
                outcomes[row.event_id] = poison.replay(self._ops, row.event_id, row.appointment_key)
        targets = [_target(r.event_id, r.appointment_key, r.appointment_id, r.event_type, r.role, r.state)
                   for r in rows]
        return self._audited(environment_id, actor, targets, outcomes)

    def _audited(self, environment_id: str, actor: Principal, targets: list[dict[str, Any]],
                 outcomes: dict[str, str]) -> ReplayResult:
        """Record the request in the audit trail, even a replay of all with nothing waiting (every replay request
        is one entry: who asked, when, and that nothing was sent)."""
        queued = sum(1 for o in outcomes.values() if o == "requeued")
        entry = self._audit.record(
            environment_id=environment_id, at=self._clock.now(), actor_id=actor.user_id, actor_name=actor.name,
            action=REPLAY_ACTION,
            summary=(f"Replayed {len(targets)} write-back(s): {queued} queued to be written to Epic again" if targets
                     else "Asked to replay all write-back failures: there was nothing to replay"),
            before={"events": targets},
            after={"outcomes": outcomes})
        return ReplayResult.from_audit(entry)

    def result(self, environment_id: str, audit_id: str) -> ReplayResult | None:
        """The result of an earlier replay of this environment (its audit entry), or ``None``."""
        entry = self._audit.get(environment_id, audit_id)
        return ReplayResult.from_audit(entry) if entry and entry.action == REPLAY_ACTION else None
