"""The metrics an operator watches and alerts on (``infra/app/alerts.bicep`` queries these names).

- ``vv.hl7.messages`` (counter): dimensions ``trigger_event`` (S12...) and ``ack_code`` (AA/AE/AR, or
  ``http_<status>`` when no ACK was built);
- ``vv.hl7.control_id_reused`` (counter): ``environment``; a sender used one MSH-10 for two different
  messages (the second was refused with AR 205): its control IDs are not unique, so resends and new
  messages cannot be told apart;
- ``vv.hl7.stale`` (counter): ``environment``, ``trigger_event`` and ``visit_status`` (the stored visit's
  status); an accepted message older than what its visit applied, so it changed nothing (answered ``AA``:
  it was received). A stale S15/S17/S26 with ``visit_status`` ``booked`` is a cancel that did not take
  effect (alert "HL7 cancel ignored");
- ``vv.sms.messages`` (counter): ``kind`` (confirmation, reminder...) and ``outcome`` (sent, failed, pending
  = retry later, unknown, skipped);
- ``vv.launches`` (counter): ``kind`` (provider, patient, callback, join), ``outcome`` (ok, error) and
  ``error_code``;
- ``vv.writebacks`` (counter): ``outcome`` (written, retry = transient failure, will retry later, failed,
  unknown = a worker died mid-call, superseded, error = the trigger raised) and ``reason`` (the failure code
  without its detail: ``epic_http_403``, ``poisoned``, ``retry_horizon_exceeded``...);
- ``vv.queue.depth`` (gauge): ``queue`` (sms-outbox, visit-events and their ``-poison`` queues);
- ``vv.reminder.lag`` (histogram, seconds): ``kind``; from an SMS's due time to its sending;
- ``vv.queue.malformed`` (counter): ``queue``; messages that are not what the trigger reads (valid base64,
  wrong JSON or fields): they go on to the host's poison queue;
- ``vv.sms.delivery`` (counter): ``status`` of ACS delivery reports (Delivered, Failed...), and ``missing``
  for sent texts whose report has not come within the expected time;
- ``vv.clock.skew`` (histogram, seconds): ``source`` (hl7_jws, eventgrid); how far a signed timestamp we
  received is from our clock (absolute value);
- ``vv.certificate.days_left`` (gauge, days): ``environment``; recorded by each readiness probe for an
  environment whose HL7 signing certificate ends within 30 days (negative once it has ended).

Every call also adds to an in-process tally (:func:`snapshot`) that tests read. With telemetry on
(:func:`use_opentelemetry`, called by :mod:`lib.observability.logging_setup`), calls also go to the
OpenTelemetry meter, which Azure Monitor exports to Application Insights ``customMetrics``. Dimension
values are bounded tokens (letters, digits, ``_-.^``, at most 40 characters; anything else is ``other``),
so no PHI and no unbounded cardinality can reach a metric.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CERTIFICATE_DAYS_LEFT",
    "CLOCK_SKEW",
    "HL7_CONTROL_ID_REUSED",
    "HL7_MESSAGES",
    "HL7_STALE",
    "LAUNCHES",
    "QUEUE_DEPTH",
    "QUEUE_MALFORMED",
    "REMINDER_LAG",
    "SMS_DELIVERY",
    "SMS_MESSAGES",
    "WRITEBACKS",
    "bounded_token",
    "certificate_days_left",
    "clock_skew",
    "hl7_control_id_reused",
    "hl7_message",
    "hl7_outcome_from_ack",
    "hl7_stale",
    "launch",
    "queue_depth",
    "queue_malformed",
    "reminder_lag",
    "reset",
    "sms_delivery",
    "sms_message",
    "snapshot",
    "use_opentelemetry",
    "writeback",
]

HL7_MESSAGES = "vv.hl7.messages"
HL7_CONTROL_ID_REUSED = "vv.hl7.control_id_reused"
HL7_STALE = "vv.hl7.stale"
SMS_MESSAGES = "vv.sms.messages"
LAUNCHES = "vv.launches"
WRITEBACKS = "vv.writebacks"
QUEUE_DEPTH = "vv.queue.depth"
REMINDER_LAG = "vv.reminder.lag"
QUEUE_MALFORMED = "vv.queue.malformed"
SMS_DELIVERY = "vv.sms.delivery"
CLOCK_SKEW = "vv.clock.skew"
CERTIFICATE_DAYS_LEFT = "vv.certificate.days_left"

_lock = threading.Lock()
_tally: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_instruments: dict[str, Any] | None = None


def bounded_token(value: object) -> str:
    """``value`` as a bounded token (letters, digits, ``_-.^``, at most 40 characters), else ``other``:
    what a metric dimension or a log field may carry when the value comes from outside."""
    return _token(value)


def _token(value: object) -> str:
    text = "none" if value is None else str(value)
    if 0 < len(text) <= 40 and all(c.isascii() and (c.isalnum() or c in "_-.^") for c in text):
        return text
    return "other"


def _record(name: str, value: float, attributes: Mapping[str, object], *, mode: str) -> None:
    attrs = {k: _token(v) for k, v in attributes.items()}
    key = (name, tuple(sorted(attrs.items())))
    with _lock:
        if mode == "set":
            _tally[key] = value
        else:
            _tally[key] = _tally.get(key, 0.0) + value
    instruments = _instruments
    if instruments is None:
        return
    try:
        instrument = instruments[name]
        if mode == "add":
            instrument.add(value, attrs)
        elif mode == "set":
            instrument.set(value, attrs)
        else:
            instrument.record(value, attrs)
    except Exception:  # telemetry never fails the work
        return


def use_opentelemetry(meter_provider: Any | None = None) -> None:
    """Send every later call to OpenTelemetry instruments too (the global meter provider by default)."""
    global _instruments
    from opentelemetry import metrics

    meter = (meter_provider or metrics.get_meter_provider()).get_meter("virtualvisits")
    _instruments = {
        HL7_MESSAGES: meter.create_counter(HL7_MESSAGES, unit="1", description="HL7 messages by event and ACK code"),
        HL7_CONTROL_ID_REUSED: meter.create_counter(
            HL7_CONTROL_ID_REUSED, unit="1", description="MSH-10 reused by a sender for a different message"
        ),
        HL7_STALE: meter.create_counter(
            HL7_STALE, unit="1", description="HL7 messages older than what their visit applied (not applied)"
        ),
        SMS_MESSAGES: meter.create_counter(SMS_MESSAGES, unit="1", description="SMS by kind and outcome"),
        LAUNCHES: meter.create_counter(LAUNCHES, unit="1", description="Launches and joins by outcome and error code"),
        WRITEBACKS: meter.create_counter(WRITEBACKS, unit="1", description="EHR write-backs by outcome"),
        QUEUE_DEPTH: meter.create_gauge(QUEUE_DEPTH, unit="1", description="Approximate messages in a queue"),
        REMINDER_LAG: meter.create_histogram(REMINDER_LAG, unit="s", description="SMS due time to send time"),
        QUEUE_MALFORMED: meter.create_counter(QUEUE_MALFORMED, unit="1", description="Malformed queue messages"),
        SMS_DELIVERY: meter.create_counter(SMS_DELIVERY, unit="1", description="SMS delivery reports by status"),
        CLOCK_SKEW: meter.create_histogram(CLOCK_SKEW, unit="s", description="Signed timestamps vs our clock"),
        CERTIFICATE_DAYS_LEFT: meter.create_gauge(CERTIFICATE_DAYS_LEFT, unit="d",
                                                  description="Days until an HL7 signing certificate ends"),
    }


def stop_opentelemetry() -> None:
    """Stop sending to OpenTelemetry (tests and the benchmark)."""
    global _instruments
    _instruments = None


def hl7_message(trigger_event: str | None, ack_code: str | None) -> None:
    """One HL7 request answered: its trigger event (``S12``...) and MSA-1 (``AA``/``AE``/``AR``)."""
    _record(HL7_MESSAGES, 1, {"trigger_event": trigger_event, "ack_code": ack_code}, mode="add")


def hl7_control_id_reused(environment_id: str) -> None:
    """A sender reused an MSH-10 for a different message in environment ``environment_id``."""
    _record(HL7_CONTROL_ID_REUSED, 1, {"environment": environment_id}, mode="add")


def hl7_stale(environment_id: str, trigger_event: str | None, visit_status: str | None) -> None:
    """An accepted message was older than what its visit applied (``visit_status``: the stored status)."""
    _record(HL7_STALE, 1, {"environment": environment_id, "trigger_event": trigger_event,
                           "visit_status": visit_status}, mode="add")


def hl7_outcome_from_ack(body: bytes, status: int) -> tuple[str | None, str]:
    """``(trigger event, ACK code)`` read from an ACK we built (``MSH-9.2`` and ``MSA-1``).

    A body that is not an ACK (a problem document) gives ``(None, "http_<status>")``.
    """
    if not body.startswith(b"MSH"):
        return None, f"http_{status}"
    text = body[:2048].decode("latin-1")
    field_sep = text[3:4] or "|"
    component_sep = text[4:5] or "^"
    event: str | None = None
    code = f"http_{status}"
    for segment in text.replace("\n", "\r").split("\r"):
        fields = segment.split(field_sep)
        if segment.startswith("MSH") and len(fields) > 8:
            parts = fields[8].split(component_sep)
            event = parts[1] if len(parts) > 1 and parts[1] else None
        elif segment.startswith("MSA") and len(fields) > 1:
            code = fields[1] or code
    return event, code


def sms_message(kind: str | None, outcome: str, *, count: int = 1) -> None:
    """``count`` outbox items handled: their kind and the dispatcher's outcome word."""
    if count > 0:
        _record(SMS_MESSAGES, count, {"kind": kind, "outcome": outcome}, mode="add")


def launch(kind: str, outcome: str, error_code: str | None = None) -> None:
    """One launch, callback or join page answered (``outcome`` ``ok`` or ``error`` with its code)."""
    _record(LAUNCHES, 1, {"kind": kind, "outcome": outcome, "error_code": error_code}, mode="add")


def writeback(outcome: str, reason: str | None = None) -> None:
    """One write-back attempt and its outcome (``reason``: the failure code; text after ``:`` is dropped)."""
    _record(WRITEBACKS, 1, {"outcome": outcome, "reason": reason.split(":", 1)[0] if reason else None},
            mode="add")


def queue_depth(queue: str, count: int) -> None:
    """The approximate number of messages in ``queue`` now (a gauge)."""
    _record(QUEUE_DEPTH, float(count), {"queue": queue}, mode="set")


def certificate_days_left(environment_id: str, days: int) -> None:
    """Days until ``environment_id``'s HL7 signing certificate ends (only reported within 30 days; a gauge)."""
    _record(CERTIFICATE_DAYS_LEFT, float(days), {"environment": environment_id}, mode="set")


def reminder_lag(kind: str | None, seconds: float) -> None:
    """Seconds between an SMS's due time and its sending (negative values are recorded as 0)."""
    _record(REMINDER_LAG, max(0.0, float(seconds)), {"kind": kind}, mode="record")


def queue_malformed(queue: str) -> None:
    """One message on ``queue`` that its trigger cannot read (it is sent on to the poison queue)."""
    _record(QUEUE_MALFORMED, 1, {"queue": queue}, mode="add")


def sms_delivery(status: str | None, *, count: int = 1) -> None:
    """ACS delivery reports by ``deliveryStatus`` (``missing``: a sent text whose report never came)."""
    if count:
        _record(SMS_DELIVERY, count, {"status": status}, mode="add")


def clock_skew(source: str, seconds: float) -> None:
    """How far (absolute seconds) a signed timestamp from ``source`` is from our clock."""
    _record(CLOCK_SKEW, abs(float(seconds)), {"source": source}, mode="record")


def snapshot() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The in-process tally: ``{metric: {sorted dimension pairs: total (counters, histograms) or last
    value (gauges)}}``."""
    result: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    with _lock:
        for (name, attrs), value in _tally.items():
            result.setdefault(name, {})[attrs] = value
    return result


def total(name: str, **dimensions: str) -> float:
    """The tally of ``name`` summed over the entries matching every given dimension (tests)."""
    wanted = {k: _token(v) for k, v in dimensions.items()}
    return sum(
        value
        for attrs, value in snapshot().get(name, {}).items()
        if all(dict(attrs).get(k) == v for k, v in wanted.items())
    )


def reset() -> None:
    """Forget the in-process tally (tests)."""
    with _lock:
        _tally.clear()
