"""What the reports are fed, as small typed values, and the ``report-updates`` queue messages carrying them.

Producers never call the recorder directly: they enqueue one small message (IDs, or the event itself; never a
phone number, a name or a token) on ``report-updates`` through :class:`ReportFeed`, and the queue trigger
applies it. So the HL7 intake pays one queue send, and a redelivered message is harmless (every merge is
idempotent).

Presence comes from the meeting's roster (``lib/presence``): ``joined`` / ``left`` the meeting, ``lobby``
(entered the lobby), each with a role, the participant's ID (EHR user ID for a clinician, ``patient`` for the
patient, an opaque reference for others) and a UTC time. Media quality comes from the call record
(Graph ``callRecords`` ``mediaStream``): per participant and media, averages and worst values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from lib.models import iso, parse_iso

REPORT_UPDATES_QUEUE = "report-updates"

PresenceKind = Literal["joined", "left", "lobby"]
Role = Literal["clinician", "patient", "interpreter", "other"]
Media = Literal["audio", "video"]

#: visit_events types (``lib/store/visit_events.py``) that are presence, and what they mean here.
_VISIT_EVENT_KINDS: dict[str, PresenceKind] = {"connected": "joined", "disconnected": "left", "in_lobby": "lobby"}
_VISIT_EVENT_ROLES: dict[str, Role] = {"provider": "clinician", "patient": "patient", "interpreter": "interpreter",
                                       "other": "other"}


class InvalidReportInput(ValueError):
    """A report message or input that cannot be applied (the reason is safe to log)."""


@dataclass(frozen=True)
class ParticipantEvent:
    """One roster change of a visit's meeting. ``id`` is stable per event (duplicates merge)."""

    id: str
    kind: PresenceKind
    role: Role
    participant_id: str
    at_utc: datetime
    display_name: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """Document / message form."""
        doc: dict[str, Any] = {"id": self.id, "kind": self.kind, "role": self.role,
                               "participant_id": self.participant_id, "at_utc": iso(self.at_utc)}
        if self.display_name:
            doc["display_name"] = self.display_name
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ParticipantEvent:
        """Parse the document / message form.

        Raises:
            InvalidReportInput: a field is missing or not one of the allowed values.
        """
        try:
            kind, role = doc["kind"], doc["role"]
            at = parse_iso(doc["at_utc"])
            if kind not in ("joined", "left", "lobby") or role not in _VISIT_EVENT_ROLES.values() or at is None:
                raise ValueError
            if at.tzinfo is None:
                raise ValueError
            return cls(str(doc["id"]), kind, role, str(doc["participant_id"]), at, doc.get("display_name"))
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidReportInput("participant event is malformed") from exc

    @classmethod
    def from_visit_event(cls, event: Any) -> ParticipantEvent | None:
        """The presence meaning of a stored visit event (``lib.store.visit_events.VisitEvent``), or ``None``
        for events that are not presence (device tests, clicks on our pages, call start/end)."""
        kind = _VISIT_EVENT_KINDS.get(event.type)
        role = _VISIT_EVENT_ROLES.get(event.role)
        if kind is None or role is None:
            return None
        participant = getattr(event, "participant_ref", None) or event.participant_id
        return cls(event.id, kind, role, participant, event.at_utc)


@dataclass(frozen=True)
class StreamQuality:
    """One media stream of one participant from the call record (times in ms, loss as a fraction 0..1).

    ``direction`` is the Graph ``streamDirection`` (``callerToCallee`` / ``calleeToCaller``) seen from the
    participant: ``sent`` or ``received``. ``packets`` is the stream's packet count when known (CQD leaves a
    stream with 500 packets or fewer unclassified). ``source`` names the stream in the call record
    (``<segment id>/<stream id or position>``): a participant who rejoined, or whose session has several
    segments, has one stream per segment for the same media and direction, and each is kept (and classified)
    on its own.
    """

    participant_id: str
    role: Role
    media: Media
    direction: str
    avg_jitter_ms: float | None = None
    max_jitter_ms: float | None = None
    avg_loss: float | None = None
    max_loss: float | None = None
    avg_rtt_ms: float | None = None
    max_rtt_ms: float | None = None
    packets: int | None = None
    source: str | None = None

    @property
    def key(self) -> str:
        """Stable identity within a visit (a call record re-read replaces, never adds): the participant, media
        and direction, and the stream's place in the record (segment IDs are stable across record versions)."""
        base = f"{self.role}|{self.participant_id}|{self.media}|{self.direction}"
        return f"{base}|{self.source}" if self.source else base

    def to_doc(self) -> dict[str, Any]:
        """Document / message form."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StreamQuality:
        """Parse the document / message form.

        Raises:
            InvalidReportInput: a field is missing, of the wrong type or out of range.
        """
        try:
            if doc["media"] not in ("audio", "video") or doc["role"] not in _VISIT_EVENT_ROLES.values():
                raise ValueError
            numbers = {}
            for name in ("avg_jitter_ms", "max_jitter_ms", "avg_loss", "max_loss", "avg_rtt_ms", "max_rtt_ms"):
                value = doc.get(name)
                if value is not None:
                    value = float(value)
                    if value < 0 or value != value:
                        raise ValueError
                numbers[name] = value
            packets, source = doc.get("packets"), doc.get("source")
            if source is not None and (not isinstance(source, str) or len(source) > 200):
                raise ValueError
            return cls(str(doc["participant_id"]), doc["role"], doc["media"], str(doc.get("direction") or "sent"),
                       packets=int(packets) if packets is not None else None, source=source, **numbers)
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidReportInput("media stream quality is malformed") from exc


def duration_ms(value: str | None) -> float | None:
    """Milliseconds of an ISO 8601 duration as Graph writes them (``PT0.025S``, ``PT1M2.5S``), or ``None``."""
    if not value:
        return None
    import re

    match = re.fullmatch(r"PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?", value)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return round((hours * 3600 + minutes * 60 + seconds) * 1000, 3)


def streams_from_media(participant_id: str, role: Role, media: Media, streams: list[dict[str, Any]],
                       segment_id: str | None = None) -> list[StreamQuality]:
    """Our :class:`StreamQuality` values from Graph ``callRecords`` ``mediaStream`` objects of one participant's
    media in one segment (``averageJitter``, ``maxJitter``: ISO durations; ``averagePacketLossRate``,
    ``maxPacketLossRate``: fractions; ``averageRoundTripTime``, ``maxRoundTripTime``: ISO durations;
    ``packetUtilization``). ``segment_id`` (the segment's ``id``) with the stream's ``streamId`` (else its
    position) becomes :attr:`StreamQuality.source`."""
    found = []
    for position, stream in enumerate(streams):
        direction = "sent" if stream.get("streamDirection") == "callerToCallee" else "received"
        source = f"{segment_id}/{stream.get('streamId') or position}" if segment_id else None
        found.append(StreamQuality(
            participant_id, role, media, direction,
            avg_jitter_ms=duration_ms(stream.get("averageJitter")), max_jitter_ms=duration_ms(stream.get("maxJitter")),
            avg_loss=stream.get("averagePacketLossRate"), max_loss=stream.get("maxPacketLossRate"),
            avg_rtt_ms=duration_ms(stream.get("averageRoundTripTime")),
            max_rtt_ms=duration_ms(stream.get("maxRoundTripTime")),
            packets=stream.get("packetUtilization"), source=source,
        ))
    return found


# ---- the queue messages --------------------------------------------------------------------------------
UpdateType = Literal["appointment", "text", "presence", "quality"]


@dataclass(frozen=True)
class ReportUpdate:
    """One ``report-updates`` message: what changed for which visit.

    ``appointment``: re-read the appointment (status, times, department, organizer, its texts).
    ``text``: re-read one outbox item (``text_id``, ``bucket``). ``presence``: ``event``. ``quality``:
    ``streams`` (replacing streams with the same key).
    """

    type: UpdateType
    appointment_key: str
    text_id: str | None = None
    bucket: str | None = None
    event: ParticipantEvent | None = None
    streams: tuple[StreamQuality, ...] = ()

    def to_message(self) -> dict[str, Any]:
        """The queue message (JSON object)."""
        message: dict[str, Any] = {"type": self.type, "appointmentKey": self.appointment_key}
        if self.text_id:
            message.update(id=self.text_id, bucket=self.bucket)
        if self.event:
            message["event"] = self.event.to_doc()
        if self.streams:
            message["streams"] = [s.to_doc() for s in self.streams]
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> ReportUpdate:
        """Parse a queue message.

        Raises:
            InvalidReportInput: not a report update we know.
        """
        kind, key = message.get("type"), message.get("appointmentKey")
        if not isinstance(key, str) or key.count("|") < 1 or len(key) > 300:
            raise InvalidReportInput("report update without a valid appointmentKey")
        if kind == "appointment":
            return cls("appointment", key)
        if kind == "text":
            text_id, bucket = message.get("id"), message.get("bucket")
            if not isinstance(text_id, str) or not isinstance(bucket, str):
                raise InvalidReportInput("text update without id and bucket")
            return cls("text", key, text_id=text_id, bucket=bucket)
        if kind == "presence":
            return cls("presence", key, event=ParticipantEvent.from_doc(message.get("event") or {}))
        if kind == "quality":
            streams = message.get("streams")
            if not isinstance(streams, list) or not streams:
                raise InvalidReportInput("quality update without streams")
            return cls("quality", key, streams=tuple(StreamQuality.from_doc(s) for s in streams))
        raise InvalidReportInput("unknown report update type")


class Queues(Protocol):
    """:class:`lib.queues.QueueProducer`."""

    def send(self, queue: str, message: dict[str, Any], *, visibility_timeout: int | None = None) -> None: ...


class ReportFeed:
    """What producers call to tell the reports something changed: one queue message each, nothing else."""

    def __init__(self, queues: Queues) -> None:
        self._queues = queues

    def send(self, update: ReportUpdate) -> None:
        """Enqueue ``update``."""
        self._queues.send(REPORT_UPDATES_QUEUE, update.to_message())

    def appointment_changed(self, appointment_key: str) -> None:
        """An HL7 message changed the appointment (status, time, department...)."""
        self.send(ReportUpdate("appointment", appointment_key))

    def text_changed(self, appointment_key: str, text_id: str, bucket: str) -> None:
        """An outbox item changed state (sent, failed, delivery report...)."""
        self.send(ReportUpdate("text", appointment_key, text_id=text_id, bucket=bucket))

    def participant_event(self, appointment_key: str, event: ParticipantEvent) -> None:
        """The meeting roster changed (joined, left, entered the lobby)."""
        self.send(ReportUpdate("presence", appointment_key, event=event))

    def call_quality(self, appointment_key: str, streams: list[StreamQuality]) -> None:
        """The call record's media quality, a participant's streams at a time (queue messages are <= 64 KiB)."""
        for start in range(0, len(streams), 40):
            self.send(ReportUpdate("quality", appointment_key, streams=tuple(streams[start:start + 40])))


def message_size_ok(update: ReportUpdate) -> bool:
    """Whether the message fits a storage queue message (64 KiB, base64 adds a third)."""
    return len(json.dumps(update.to_message())) * 4 // 3 < 60_000
