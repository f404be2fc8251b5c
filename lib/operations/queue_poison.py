"""Poison messages of every work queue for operators: list and replay (``./dev ops queue poison ...``).

The host moves a message its trigger failed on 5 times (``maxDequeueCount``; a store outage of a few minutes
is enough) to ``<queue>-poison``, and the ``poison-messages`` alert fires for any of them. Each poison queue
loses something different (:data:`POISONED`): a launch's follow-up (the visit's call-event subscription and the
clinician's click), an after-meeting read (final attendance and call quality), a report update, a confirmation
text. Only ``visit-events-poison`` has a trigger of its own; the write-back's poison is replayed through
:mod:`lib.operations.poison` (``./dev ops writeback poison``), which resets the event's state as well.

Replay puts the message back on its work queue unchanged and then deletes it from the poison queue. The
triggers are at-least-once safe, so a message delivered twice (a replay whose delete was lost, a second
operator) does its work once: the click is stored under its deterministic ID and the subscription document is
created once per visit (:mod:`lib.visits.launch_followup`), the after-meeting read adds only events the visit
lacks (:mod:`lib.presence.after_meeting`), the report recorder answers ``unchanged`` to an update it has
(:mod:`lib.reports.recorder`), and the outbox item's state decides whether a text goes (``done-already``,
:meth:`lib.sms.dispatcher.Dispatcher.send_one`). A message its trigger cannot read is never replayed (it would
only come back): it is listed as ``malformed`` with the parser's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lib.operations.queues import REPORT_UPDATES_QUEUE, queue_client, send
from lib.queues import (
    CALL_RECORDS_QUEUE,
    LAUNCH_FOLLOWUP_QUEUE,
    SMS_OUTBOX_QUEUE,
    VISIT_EVENTS_QUEUE,
    decode,
    encode,
    poison_queue,
)

#: How long a message received while listing or replaying stays hidden from other readers (seconds).
_HOLD = 60


def _launch_followup(body: dict[str, Any]) -> None:
    from lib.visits.launch_followup import FollowUp

    FollowUp.from_message(encode(body))


def _call_records(body: dict[str, Any]) -> None:
    from lib.presence.after_meeting import AfterMeetingWork

    AfterMeetingWork.parse(body)


def _report_updates(body: dict[str, Any]) -> None:
    from lib.reports.inputs import ReportUpdate

    ReportUpdate.from_message(body)


def _ids(*fields: str) -> Callable[[dict[str, Any]], None]:
    def check(body: dict[str, Any]) -> None:
        from lib.queues import read_ids

        read_ids(encode(body), *fields)

    return check


@dataclass(frozen=True)
class PoisonedQueue:
    """A work queue whose poison queue an operator reads: what a message there loses, and the trigger's own
    parser (``check`` raises ``ValueError`` for a message the trigger cannot read). ``replay_with`` names another
    command when this module does not replay the queue's messages itself."""

    queue: str
    lost: str
    check: Callable[[dict[str, Any]], None]
    replay_with: str | None = None

    @property
    def poison(self) -> str:
        """The host's poison queue of :attr:`queue`."""
        return poison_queue(self.queue)


#: Every work queue of the app, by name (the ``--queue`` choices).
POISONED: dict[str, PoisonedQueue] = {q.queue: q for q in (
    PoisonedQueue(LAUNCH_FOLLOWUP_QUEUE, "the visit's call-event subscription and the clinician's launch click",
                  _launch_followup),
    PoisonedQueue(CALL_RECORDS_QUEUE, "the after-meeting read: final attendance and call quality", _call_records),
    PoisonedQueue(REPORT_UPDATES_QUEUE, "a change to the visit's report row", _report_updates),
    PoisonedQueue(SMS_OUTBOX_QUEUE, "a text sent at once (the reminder timer still sends it when due)", _ids("id")),
    PoisonedQueue(VISIT_EVENTS_QUEUE, "a join or leave written back to Epic", _ids("id", "appointmentKey"),
                  replay_with="./dev ops writeback poison replay --all"),
    # What the write-back's poison trigger itself could not read: malformed by definition.
    PoisonedQueue(poison_queue(VISIT_EVENTS_QUEUE), "nothing readable (a malformed write-back message)",
                  _ids("id", "appointmentKey"), replay_with="nothing: fix the producer, then delete it"),
)}


@dataclass(frozen=True)
class PoisonMessage:
    """One poison message as an operator sees it: IDs only (our messages carry no PHI)."""

    queue: str
    message_id: str
    inserted_utc: str | None
    dequeue_count: int
    appointment_key: str | None
    item_id: str | None
    correlation_id: str | None
    problem: str | None  # why its trigger cannot read it; None when it can

    @property
    def environment_id(self) -> str | None:
        """The environment of the message: the first part of its appointment key or item ID."""
        key = self.appointment_key or self.item_id
        return key.split("|", 1)[0] if key and "|" in key else None

    def to_json(self) -> dict[str, Any]:
        """JSON shape for ``local.ops``."""
        spec = POISONED[self.queue]
        if self.problem:
            action = f"malformed ({self.problem}): fix its producer, then delete it from {spec.poison}"
        elif spec.replay_with:
            action = spec.replay_with
        else:
            action = f"./dev ops queue poison replay --queue {self.queue} --message {self.message_id}"
        return {k: v for k, v in {
            "queue": spec.poison, "messageId": self.message_id, "insertedUtc": self.inserted_utc,
            "dequeueCount": self.dequeue_count, "appointmentKey": self.appointment_key, "itemId": self.item_id,
            "correlationId": self.correlation_id, "lost": spec.lost, "replay": action,
        }.items() if v is not None}


def _read(queue: str, message: Any) -> PoisonMessage:
    spec = POISONED[queue]
    problem = None
    body: dict[str, Any] = {}
    try:
        body = decode(message.content)
        spec.check(body)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:  # MalformedMessage, InvalidReportInput too
        problem = str(exc) if body else "not a JSON object"
    key, item, correlation = body.get("appointmentKey"), body.get("id"), body.get("correlationId")
    return PoisonMessage(
        queue, message.id, message.inserted_on.isoformat() if message.inserted_on else None,
        int(message.dequeue_count or 0), key if isinstance(key, str) else None,
        item if isinstance(item, str) else None, correlation if isinstance(correlation, str) else None, problem)


def _received(client: Any, received: list[Any]) -> Iterator[Any]:
    """Every message of the queue, each once: received (hidden for :data:`_HOLD` seconds) 32 at a time, each
    batch appended to ``received`` so that the caller can :func:`_release` what it did not delete."""
    from azure.core.exceptions import ResourceNotFoundError

    seen: set[str] = set()
    while True:
        try:
            batch = list(client.receive_messages(max_messages=32, visibility_timeout=_HOLD))
        except ResourceNotFoundError:
            return
        received.extend(batch)
        fresh = [m for m in batch if m.id not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message.id)
            yield message


def _release(client: Any, received: list[Any], deleted: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Make the messages received but not deleted visible again at once."""
    from azure.core.exceptions import ResourceNotFoundError

    for message in received:
        if message.id not in deleted:
            try:
                client.update_message(message.id, message.pop_receipt, visibility_timeout=0)
            except ResourceNotFoundError:  # taken by someone else meanwhile
                pass


def _peeked(client: Any) -> list[Any]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return list(client.peek_messages(max_messages=32))
    except ResourceNotFoundError:
        return []


def list_poison(services: Any, queue: str | None = None, environment_id: str | None = None, *,
                limit: int = 100) -> list[PoisonMessage]:
    """Up to ``limit`` messages of the poison queue of ``queue`` (every work queue when ``None``), of
    ``environment_id`` only when given.

    ``visit-events-poison`` is peeked (its trigger takes its messages; at most 32 are shown), the others are
    read through and left as they were.
    """
    found: list[PoisonMessage] = []
    for spec in ([POISONED[queue]] if queue else POISONED.values()):
        client = queue_client(services.settings, spec.poison)
        if spec.queue == VISIT_EVENTS_QUEUE:
            messages = _peeked(client)
        else:
            received: list[Any] = []
            try:
                messages = list(_received(client, received))
            finally:
                _release(client, received)
        for message in messages:
            item = _read(spec.queue, message)
            if environment_id is None or item.environment_id == environment_id:
                found.append(item)
        if len(found) >= limit:
            break
    return found[:limit]


class NotReplayable(ValueError):
    """The queue's poison messages are replayed by another command (or not at all): the message says which."""


def replay(services: Any, queue: str, *, message_id: str | None = None,
           environment_id: str | None = None) -> dict[str, str]:
    """Put poison messages of ``queue`` back on ``queue``: the one ``message_id``, or every one (of
    ``environment_id`` when given). Returns message ID -> outcome:

    - ``requeued``: sent to ``queue`` and deleted from its poison queue;
    - ``malformed``: its trigger cannot read it: left where it is (``list`` says why).

    A ``message_id`` not in the poison queue (replayed already, deleted, or mistyped) is absent from the result.
    Repeating a replay is harmless: a replayed message is no longer in the poison queue, and one sent twice
    does its work once (module docstring).

    Raises:
        NotReplayable: ``queue`` is ``visit-events`` (``writeback poison replay``) or the write-back poison
            trigger's own poison queue.
    """
    spec = POISONED[queue]
    if spec.replay_with:
        raise NotReplayable(f"{spec.poison} is not replayed here: use {spec.replay_with}")
    poison = queue_client(services.settings, spec.poison)
    work = queue_client(services.settings, spec.queue)
    outcomes: dict[str, str] = {}
    received: list[Any] = []
    deleted: set[str] = set()
    try:
        for message in _received(poison, received):
            item = _read(queue, message)
            wanted = item.message_id == message_id if message_id else \
                environment_id is None or item.environment_id == environment_id
            if wanted and item.problem:
                outcomes[item.message_id] = "malformed"
            elif wanted:
                # Sent first, then deleted: a lost delete leaves a copy here, and the trigger does the work once.
                send(work, decode(message.content))
                poison.delete_message(message.id, message.pop_receipt)
                deleted.add(message.id)
                outcomes[item.message_id] = "requeued"
            if message_id and message_id in outcomes:
                break
    finally:
        _release(poison, received, deleted)
    return outcomes
