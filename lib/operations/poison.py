"""Poison write-backs for operators: list and replay.

A write-back the queue gave up on (``maxDequeueCount`` attempts) lands in ``visit-events-poison``; the
``writeback_poison`` trigger marks its visit event ``failed`` (reason ``poisoned``) and removes the
message. So an operator finds poison write-backs in two places, and both are listed: messages still in
the poison queue (not yet handled by the trigger, or no trigger running) and visit events whose write-back
``failed`` (Epic refused it, with Epic's reason, or the retry horizon passed) or ended ``unknown`` (a worker
died mid-call: it may or may not have reached Epic; replay only after checking Epic). Replay puts the
event's write-back back to ``pending`` and enqueues it on ``visit-events`` again (base64,
:mod:`lib.queues`), then deletes the poison message if there was one.

Replaying *all* skips every event that may already be in Epic (:func:`needs_epic_check`): its outcome is
``check-epic-first`` and :func:`check_epic_first_note` says what to do; each is replayed on its own once
someone has looked at the visit in Epic (the portal's "replay all" follows the same rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lib.operations.queues import peek, queue_client
from lib.queues import VISIT_EVENTS_QUEUE, poison_queue

POISON_QUEUE = poison_queue(VISIT_EVENTS_QUEUE)


@dataclass(frozen=True)
class PoisonWriteback:
    """One write-back that failed for good: where it was found (``queue`` or ``event``), its IDs, and
    the event's state when known (``event``: the whole :class:`lib.store.visit_events.VisitEvent` of an
    ``event`` entry, for callers that show more than the JSON has)."""

    source: str
    event_id: str
    appointment_key: str
    writeback: str | None = None
    reason: str | None = None
    at_utc: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    detail: str | None = None
    attempts: int | None = None
    event: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON shape for ``local.ops``."""
        return {k: v for k, v in {
            "source": self.source, "eventId": self.event_id, "appointmentKey": self.appointment_key,
            "writeback": self.writeback, "reason": self.reason, "atUtc": self.at_utc,
            "messageId": self.message_id, "correlationId": self.correlation_id, "epicDetail": self.detail,
            "attempts": self.attempts,
        }.items() if v is not None}


def _failed_events(services: Any, environment_id: str | None) -> list[Any]:
    from lib.store.cosmos import translated_errors
    from lib.store.visit_events import VisitEvent

    query = "SELECT * FROM c WHERE (c.writeback = 'failed' OR c.writeback = 'unknown')"
    parameters: list[dict[str, Any]] = []
    if environment_id:
        query += " AND c.environmentId = @env"
        parameters.append({"name": "@env", "value": environment_id})
    with translated_errors():
        docs = services.store.container("visit_events").query_items(
            query, parameters=parameters, enable_cross_partition_query=True
        )
        return [VisitEvent.from_doc(d) for d in docs]


def list_poison(services: Any, environment_id: str | None = None) -> list[PoisonWriteback]:
    """Messages in ``visit-events-poison`` and visit events whose write-back failed (oldest first)."""
    found: list[PoisonWriteback] = []
    for message in peek(queue_client(services.settings, POISON_QUEUE)):
        body = message.body or {}
        key = str(body.get("appointmentKey", ""))
        if environment_id and not key.startswith(f"{environment_id}|"):
            continue
        found.append(PoisonWriteback("queue", str(body.get("id", "")), key, message_id=message.message_id,
                                     at_utc=message.inserted_utc, correlation_id=body.get("correlationId")))
    for event in _failed_events(services, environment_id):
        found.append(PoisonWriteback("event", event.id, event.appointment_key, event.writeback,
                                     event.writeback_reason, event.at_utc.isoformat(),
                                     correlation_id=event.correlation_id, detail=event.epic_detail,
                                     attempts=event.attempts, event=event))
    return found


#: The outcome of an event :func:`replay_all` left alone because it may already be in Epic.
CHECK_EPIC_FIRST = "check-epic-first"


def needs_epic_check(event: Any) -> bool:
    """Whether ``event`` (a :class:`lib.store.visit_events.VisitEvent`) may already be in Epic, so replaying it
    unchecked could write its status twice: its outcome is ``unknown`` (a worker stopped while calling Epic),
    or it ``failed`` after a call whose outcome is unknown (a time-out that may have arrived)."""
    return event.writeback == "unknown" or (event.writeback == "failed" and event.ambiguous_attempts > 0)


def check_epic_first_note(event_id: str, appointment_key: str) -> str:
    """What an operator reads for an event :func:`replay_all` skipped: why, and how to replay it."""
    return (f"skipped event {event_id} (appointment key {appointment_key}): its write-back outcome is unknown (a "
            "worker stopped while calling Epic, or a call timed out), so Epic may already show this status and a "
            "blind replay could write it twice. Check the visit's connection status in Epic; only if it is "
            "missing, replay this event on its own: ./dev ops writeback poison replay --event "
            f"{event_id} --appointment-key '{appointment_key}'")


def replay(services: Any, event_id: str, appointment_key: str, *, unsure_too: bool = True) -> str:
    """Write one event back again: reset it to ``pending``, enqueue it, drop its poison message.

    Safe to repeat (a double-submitted form, a retried script): only a ``failed`` or ``unknown`` event, or a
    ``pending`` one whose message sits in the poison queue, is enqueued; the write-back's claim before the
    call (:mod:`lib.visits.writeback`) keeps any extra message from reaching Epic a second time. Outcomes:

    - ``requeued``: back on ``visit-events``;
    - ``already-queued``: ``pending`` already (an earlier replay, or its retry is scheduled): nothing sent;
    - ``already-written``: Epic has it: nothing sent;
    - ``in-progress``: a worker is calling Epic with it right now: left alone (resetting it could write twice);
    - ``superseded``: a later status of the same participant was written: replaying would show an older one;
    - ``not-written-back``: a kind of event Epic never gets (a click, a lobby entry);
    - ``check-epic-first``: ``unsure_too`` is false and the event may already be in Epic
      (:func:`needs_epic_check`): left alone;
    - ``missing``: no such event.

    An ``unknown`` event may have reached Epic (a worker died mid-call): replay it only after checking Epic
    (``unsure_too=False`` refuses it, deciding on the event as read here, not as some listing saw it).

    Raises:
        lib.store.errors.StoreUnavailable: the store cannot be reached.
        lib.store.errors.ConcurrencyConflict: the event kept changing (run it again).
    """
    from lib.store.errors import ConcurrencyConflict

    events = services.repos.visit_events
    for _ in range(3):
        event = events.get(appointment_key, event_id)
        if event is None:
            return "missing"
        if event.writeback == "written":
            _drop_poison_messages(services, event_id)
            return "already-written"
        if event.writeback == "sending":
            return "in-progress"
        if not unsure_too and needs_epic_check(event):
            return CHECK_EPIC_FIRST
        if event.writeback in ("superseded", "none"):
            _drop_poison_messages(services, event_id)
            return "superseded" if event.writeback == "superseded" else "not-written-back"
        if event.writeback == "pending":
            # Its message may be in the poison queue (not yet marked failed by the poison trigger): move it.
            if not _drop_poison_messages(services, event_id):
                return "already-queued"
        else:
            try:
                # A fresh start: a new retry horizon, no claim, due now. If-Match: one of two racing replays wins.
                events.update(event, writeback="pending", writeback_utc=None, writeback_reason=None, due_utc=None,
                              first_attempt_utc=None, claimed_utc=None, claim_id=None)
            except ConcurrencyConflict:
                continue  # changed meanwhile: decide again on what it is now
            _drop_poison_messages(services, event_id)
        # If this send is lost the event is pending and overdue: the write-back sweep enqueues it.
        services.queues.send(VISIT_EVENTS_QUEUE, {"id": event.id, "appointmentKey": event.appointment_key,
                                                  "correlationId": event.correlation_id})
        return "requeued"
    raise ConcurrencyConflict("visit event kept changing")


@dataclass(frozen=True)
class Replayed:
    """What :func:`replay_all` did with one event: its outcome (see :func:`replay`)."""

    event_id: str
    appointment_key: str
    outcome: str


def replay_all(services: Any, environment_id: str | None = None) -> list[Replayed]:
    """Replay every poison write-back found by :func:`list_poison`, each event once, except those that may
    already be in Epic (outcome ``check-epic-first``: :func:`check_epic_first_note` says what to do)."""
    done: dict[str, Replayed] = {}
    for item in list_poison(services, environment_id):
        if item.event_id and item.event_id not in done:
            outcome = replay(services, item.event_id, item.appointment_key, unsure_too=False)
            done[item.event_id] = Replayed(item.event_id, item.appointment_key, outcome)
    return list(done.values())


def _drop_poison_messages(services: Any, event_id: str) -> int:
    """Delete the poison messages of ``event_id``; others become visible again at once."""
    from azure.core.exceptions import ResourceNotFoundError

    from lib.queues import decode

    client = queue_client(services.settings, POISON_QUEUE)
    deleted = 0
    try:
        received = list(client.receive_messages(max_messages=32, visibility_timeout=30))
    except ResourceNotFoundError:
        return 0
    for message in received:
        try:
            body = decode(message.content)
        except (ValueError, UnicodeDecodeError, TypeError):
            body = {}
        if body.get("id") == event_id:
            client.delete_message(message)
            deleted += 1
        else:
            client.update_message(message, visibility_timeout=0)
    return deleted
