"""Reading one Event Grid batch of ACS SMS events, event by event (pydantic).

Event Grid retries a whole batch for up to 24 hours when the webhook fails, so one malformed event must not
hold back the valid ones beside it (a STOP among them). Each event is validated on its own: a valid one is
handed down typed, a malformed one becomes a :class:`MalformedEvent` that names only its position in the
batch, its event type (when that is one of ours) and the fields that failed: never a value, since values are
phone numbers and message texts.

Schemas (Event Grid schema; ``protocols.md`` §4b; ACS docs "Azure Communication Services - SMS events"):

- envelope: ``id``, ``eventType``, ``eventTime`` (ISO 8601 with a zone; Event Grid writes 7 fractional
  digits), ``topic``, ``data``;
- ``Microsoft.Communication.SMSDeliveryReportReceived`` ``data``: ``messageId``, ``from``, ``to``,
  ``deliveryStatus``, ``deliveryStatusDetails``, ``tag`` (others, e.g. ``deliveryAttempts``, are not read);
- ``Microsoft.Communication.SMSReceived`` ``data``: ``from`` (the patient), ``to`` (our number), ``message``;
- ``Microsoft.EventGrid.SubscriptionValidationEvent`` ``data``: ``validationCode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"
SMS_RECEIVED = "Microsoft.Communication.SMSReceived"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
#: The event types whose ``data`` we read (others are acknowledged and ignored).
KNOWN_TYPES = frozenset({DELIVERY_REPORT, SMS_RECEIVED, SUBSCRIPTION_VALIDATION})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class DeliveryReportData(_Model):
    """``data`` of a delivery report."""

    message_id: str | None = Field(default=None, alias="messageId", max_length=200)
    sender: str = Field(alias="from", max_length=40)
    recipient: str = Field(alias="to", max_length=40)
    delivery_status: str = Field(alias="deliveryStatus", max_length=100)
    delivery_status_details: str | None = Field(default=None, alias="deliveryStatusDetails")
    tag: str | None = Field(default=None, max_length=400)


class ReceivedData(_Model):
    """``data`` of an inbound text: ``sender`` is the patient, ``recipient`` our number."""

    sender: str = Field(alias="from", max_length=40)
    recipient: str = Field(alias="to", max_length=40)
    message: str = Field(max_length=10_000)


class ValidationData(_Model):
    """``data`` of the subscription validation handshake."""

    validation_code: str = Field(alias="validationCode", max_length=1000)


class _Envelope(_Model):
    id: str = Field(max_length=200)
    event_type: str = Field(alias="eventType", max_length=200)
    event_time: AwareDatetime = Field(alias="eventTime")


_DATA: dict[str, type[_Model]] = {
    DELIVERY_REPORT: DeliveryReportData, SMS_RECEIVED: ReceivedData, SUBSCRIPTION_VALIDATION: ValidationData,
}


@dataclass(frozen=True)
class SmsEvent:
    """One valid event: ``data`` is typed for the known types (``None`` for the types we ignore)."""

    id: str
    event_type: str
    event_time: datetime
    data: DeliveryReportData | ReceivedData | ValidationData | None


@dataclass(frozen=True)
class MalformedEvent:
    """An event that cannot be applied: its ``index`` in the batch, its ``event_type`` when it is one we know,
    and the ``fields`` that failed (``data.message``, ``eventTime``...). Holds no value from the event."""

    index: int
    event_type: str | None
    fields: tuple[str, ...]

    def describe(self) -> str:
        """``event 1 (Microsoft.Communication.SMSReceived): data.message`` (safe to log and to answer)."""
        kind = f" ({self.event_type})" if self.event_type else ""
        return f"event {self.index}{kind}: {', '.join(self.fields) or 'not an object'}"


def _failed_fields(error: ValidationError, prefix: str = "") -> tuple[str, ...]:
    names = []
    for problem in error.errors(include_input=False, include_url=False):
        path = ".".join(str(part) for part in problem["loc"])
        names.append(prefix + path if path else prefix.rstrip(".") or "event")
    return tuple(dict.fromkeys(names))


def parse_event(index: int, raw: object) -> SmsEvent | MalformedEvent:
    """Validate the ``index``-th event of a batch."""
    if not isinstance(raw, dict):
        return MalformedEvent(index, None, ())
    claimed = raw.get("eventType")
    known = claimed if isinstance(claimed, str) and claimed in KNOWN_TYPES else None
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as exc:
        return MalformedEvent(index, known, _failed_fields(exc))
    model = _DATA.get(envelope.event_type)
    if model is None:
        return SmsEvent(envelope.id, envelope.event_type, envelope.event_time, None)
    try:
        data = model.model_validate(raw.get("data"))
    except ValidationError as exc:
        return MalformedEvent(index, known, _failed_fields(exc, "data."))
    return SmsEvent(envelope.id, envelope.event_type, envelope.event_time, data)  # type: ignore[arg-type]


def parse_batch(raw_events: list[object]) -> tuple[list[SmsEvent], list[MalformedEvent]]:
    """Each event of a batch, validated on its own: the valid ones in order, and the malformed ones."""
    valid: list[SmsEvent] = []
    malformed: list[MalformedEvent] = []
    for index, raw in enumerate(raw_events):
        parsed = parse_event(index, raw)
        if isinstance(parsed, MalformedEvent):
            malformed.append(parsed)
        else:
            valid.append(parsed)
    return valid, malformed
