"""What a launch leaves until after the browser's redirect: the clinician's click record and the subscription to
a new meeting's call events, carried by one ``launch-followup`` queue message (docs/launch.md "Round trips").

Neither decides where the browser goes, and both are slow or optional on the launch's path: a Graph
subscription answers only after Graph's validation request to our notification URL came back (and costs three
store calls for its document), and a click record is bookkeeping for the reports. The launch therefore sends
one message and redirects; the ``launch_followup`` queue trigger does the rest, at least once:

- the click is stored under its deterministic event ID (:func:`lib.visits.events.event_id`), with the time of
  the launch, so a redelivered message stores it once;
- the subscription document is created once per visit (:meth:`PresenceSubscriptions.watch`); a Graph failure
  leaves it ``pending`` for the ``presence_subscriptions`` timer.

When the queue does not take the message, both are done at once, inline (the launch still goes on: a failed
subscription never fails it). The message carries IDs only: the appointment key, the clinician's EHR user ID
and a digest of the launch attempt, never the OAuth ``state`` itself.
"""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from lib.models import Appointment, PresenceSource, iso, parse_iso
from lib.queues import LAUNCH_FOLLOWUP_QUEUE, MalformedMessage, decode
from lib.store.appointments import AppointmentRepository
from lib.visits.events import QueueSender, VisitEventRecorder

log = logging.getLogger(__name__)
PRESENCE_SOURCES = frozenset(typing.get_args(PresenceSource))


class MeetingWatch(Protocol):
    """What :class:`lib.presence.subscriptions.PresenceSubscriptions` offers (never raises)."""

    def watch(self, appointment: Appointment, *, source: str = "auto") -> Any:
        """Subscribe to the call events of the appointment's meeting, once per visit (or, for ``source``
        ``attendance_report``, plan the report's read after the meeting)."""
        ...


@dataclass(frozen=True)
class LaunchClick:
    """A clinician's launch into the visit: ``attempt`` is a digest naming the launch (the event ID's input)."""

    participant_id: str
    attempt: str
    at_utc: datetime


@dataclass(frozen=True)
class FollowUp:
    """One ``launch-followup`` message, parsed."""

    appointment_key: str
    watch: bool
    click: LaunchClick | None
    correlation_id: str | None = None
    source: str = "auto"

    def to_message(self) -> dict[str, Any]:
        """The queue message (IDs and a time only)."""
        message: dict[str, Any] = {"appointmentKey": self.appointment_key, "watch": self.watch}
        if self.watch:
            message["source"] = self.source
        if self.click is not None:
            message["click"] = {"participantId": self.click.participant_id, "attempt": self.click.attempt,
                                "at": iso(self.click.at_utc)}
        if self.correlation_id:
            message["correlationId"] = self.correlation_id
        return message

    @classmethod
    def from_message(cls, body: bytes | str) -> FollowUp:
        """Parse a message body.

        Raises:
            MalformedMessage: not a JSON object, no appointment key, or a click without its fields.
        """
        try:
            value = decode(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"not a JSON object ({type(exc).__name__})") from None
        key = value.get("appointmentKey")
        if not isinstance(key, str) or "|" not in key:
            raise MalformedMessage("missing or non-string field(s): appointmentKey")
        click = None
        raw = value.get("click")
        if raw is not None:
            at = _aware(raw.get("at")) if isinstance(raw, dict) else None
            if (at is None or not isinstance(raw.get("participantId"), str) or not raw["participantId"]
                    or not isinstance(raw.get("attempt"), str) or not raw["attempt"]):
                raise MalformedMessage("click without participantId, attempt and at")
            click = LaunchClick(raw["participantId"], raw["attempt"], at)
        watch = value.get("watch") is True
        source = value.get("source", "auto")
        if watch and source not in PRESENCE_SOURCES:
            raise MalformedMessage("watch with an unknown presence source")
        correlation = value.get("correlationId")
        return cls(key, watch, click, correlation if isinstance(correlation, str) else None,
                   source if watch else "auto")


def _aware(value: Any) -> datetime | None:
    """An ISO-8601 time with an offset, else ``None``."""
    try:
        at = parse_iso(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


class LaunchFollowUp:
    """Queues a launch's follow-up work and does it when the message arrives.

    Args:
        queues: the queue producer.
        appointments: the appointment repository (the trigger reads the visit by its key).
        events: records the click.
        presence: subscribes to the meeting's call events (``None``: presence is not configured).
    """

    def __init__(self, *, queues: QueueSender, appointments: AppointmentRepository, events: VisitEventRecorder,
                 presence: MeetingWatch | None) -> None:
        self._queues = queues
        self._appointments = appointments
        self._events = events
        self._presence = presence

    def after_launch(self, appointment: Appointment, *, click: LaunchClick | None, watch: bool,
                     source: str = "auto", correlation_id: str | None = None) -> None:
        """Queue the click record and (``watch``) the subscription of ``appointment``'s meeting (``source``: the
        environment's ``presence_source``); when the queue does not take the message, do both now.

        Raises:
            StoreUnavailable: only on the inline fallback, when Cosmos DB is down too.
        """
        if click is None and not watch:
            return
        followup = FollowUp(appointment.key, watch, click, correlation_id, source)
        try:
            self._queues.send(LAUNCH_FOLLOWUP_QUEUE, followup.to_message())
            return
        except Exception as exc:  # the queue is down: do it now rather than lose it
            log.warning("launch follow-up not enqueued (%s); done inline environment=%s correlation=%s",
                        type(exc).__name__, appointment.environment_id, correlation_id)
        self._apply(appointment, followup)

    def handle(self, followup: FollowUp) -> str:
        """The queue trigger's work: ``done``, or ``gone`` when the appointment no longer exists.

        Raises:
            StoreUnavailable: Cosmos DB is down (the host retries the message, then poisons it).
        """
        appointment = self._appointments.get(followup.appointment_key)
        if appointment is None:
            return "gone"
        self._apply(appointment, followup)
        return "done"

    def _apply(self, appointment: Appointment, followup: FollowUp) -> None:
        if followup.click is not None:
            self._events.record(appointment, event_type="clinician_launched", role="provider",
                                participant_id=followup.click.participant_id, attempt=followup.click.attempt,
                                correlation_id=followup.correlation_id, at_utc=followup.click.at_utc)
        if followup.watch and self._presence is not None:
            self._presence.watch(appointment, source=followup.source)
