"""ACS SMS events from Event Grid: delivery reports and inbound texts (STOP / START / HELP).

Event Grid schema (``eventDeliverySchema: EventGridSchema``): a JSON array of events, each ``{"id", "topic",
"subject", "eventType", "eventTime", "data", "dataVersion"}``. Delivery is at least once and in no order
(Event Grid "delivery and retry"; ``reference/security.md`` §4.4): every effect here is idempotent, and
ordering is resolved by event time.

- ``Microsoft.Communication.SMSDeliveryReportReceived`` ``data``: ``messageId``, ``from``, ``to``,
  ``deliveryStatus`` (``Delivered``, ``Failed``...), ``deliveryStatusDetails``, ``deliveryAttempts``,
  ``receivedTimestamp``, ``tag`` (ACS docs "Azure Communication Services - SMS events"; ``protocols.md`` §4b).
- ``Microsoft.Communication.SMSReceived`` ``data``: ``messageId``, ``from`` (the patient), ``to`` (our number),
  ``message``, ``receivedTimestamp``.

Opt-out words (FCC 24-24 revocation words; CTIA Messaging Principles; ACS ``messaging-policy.md`` asks for
lowercase ``stop``, ``unsubscribe`` and ``cancel`` too): STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE,
OPTOUT (also written "OPT OUT"). Opt-in: START, UNSTOP. Help: HELP, INFO. A text counts when, ignoring case,
spaces and punctuation, it is the word alone or starts with it ("Stop please"): a revocation "by any reasonable
means" must be honoured, so when in doubt we stop. For toll-free numbers the carrier itself answers STOP and
START; we send no confirmation of our own. HELP is answered with the environment's ``help`` template at most
once a day per (sender, recipient).

Phone numbers and message texts are never logged and never stored in clear (``lib/store/opt_outs.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from lib.clock import Clock
from lib.models import EnvironmentConfig, OutboxItem
from lib.sms.configuration import is_e164
from lib.sms.sender import SendResult
from lib.sms.templates import render
from lib.store.environments import EnvironmentRepository
from lib.store.errors import ConcurrencyConflict
from lib.store.opt_outs import OptOutRepository
from lib.store.outbox import OutboxRepository
from lib.store.sms_messages import SmsMessageRepository

log = logging.getLogger(__name__)

DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"
SMS_RECEIVED = "Microsoft.Communication.SMSReceived"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"

OPT_OUT_WORDS: frozenset[str] = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS: frozenset[str] = frozenset({"START", "UNSTOP"})
HELP_WORDS: frozenset[str] = frozenset({"HELP", "INFO"})
_WORDS = re.compile(r"[A-Za-z]+")


def keyword(message: str | None) -> str | None:
    """The control word of an inbound text (``STOP``, ``START``, ``HELP``...), or ``None``.

    >>> keyword(" opt-out! "), keyword("Stop please"), keyword("see you then")
    ('OPTOUT', 'STOP', None)
    """
    words = [w.upper() for w in _WORDS.findall(message or "")]
    if not words:
        return None
    known = OPT_OUT_WORDS | OPT_IN_WORDS | HELP_WORDS
    if len(words) >= 2 and words[0] == "OPT" and words[1] == "OUT":
        return "OPTOUT"
    joined = "".join(words)
    if joined in known:
        return joined
    return words[0] if words[0] in known else None


class Sender(Protocol):
    """:class:`lib.sms.sender.AcsSmsSender`."""

    def send(self, *, sender: str, to: str, message: str, tag: str | None = None) -> SendResult: ...


@dataclass
class EventsReport:
    """Outcome words per event, in order (``delivery-recorded``, ``opted-out``, ``help-sent``, ...)."""

    outcomes: list[str] = field(default_factory=list)


class AcsEventHandler:
    """Applies ACS SMS events. Collaborators are injected (``functions/dependencies.py``)."""

    def __init__(
        self,
        *,
        outbox: OutboxRepository,
        messages: SmsMessageRepository,
        opt_outs: OptOutRepository,
        environments: EnvironmentRepository,
        sender: Sender,
        clock: Clock,
        reports: Any = None,
    ) -> None:
        self._reports = reports  # lib.reports.inputs.ReportFeed: told when a delivery report changed a text
        self._outbox = outbox
        self._messages = messages
        self._opt_outs = opt_outs
        self._environments = environments
        self._sender = sender
        self._clock = clock

    def handle(self, events: Iterable[dict[str, Any]]) -> EventsReport:
        """Apply each event; unknown event types are ignored (``ignored``).

        Raises:
            StoreUnavailable: the store is down (the webhook answers 503; Event Grid retries the batch,
                which is harmless because every effect is idempotent).
        """
        report = EventsReport()
        for event in events:
            event_type = event.get("eventType")
            data = event.get("data") or {}
            if event_type == DELIVERY_REPORT:
                outcome = self._delivery_report(data, _event_time(event))
            elif event_type == SMS_RECEIVED:
                outcome = self._received(data, _event_time(event))
            else:
                outcome = "ignored"
            log.info("acs event id=%s type=%s outcome=%s", event.get("id"), event_type, outcome)
            report.outcomes.append(outcome)
        return report

    # ---- delivery reports ------------------------------------------------------------------------
    def _delivery_report(self, data: dict[str, Any], event_time: datetime) -> str:
        message_id = str(data.get("messageId") or "")
        item: OutboxItem | None = None
        where = self._messages.get(message_id) if message_id else None
        if where is not None:
            item = self._outbox.get(*where)
        elif data.get("tag"):
            item = self._outbox.find(str(data["tag"]))  # a send whose outcome was unknown: no message ID kept
        if item is None:
            return "unknown-message"
        status = str(data.get("deliveryStatus") or "")
        detail = str(data.get("deliveryStatusDetails") or "")[:200] or None
        for _ in range(5):
            if item.delivery_event_utc is not None and item.delivery_event_utc >= event_time:
                return "delivery-stale"
            changes: dict[str, object] = {
                "delivery_status": status, "delivery_detail": detail, "delivery_event_utc": event_time,
            }
            if item.state in ("unknown", "sending"):
                # ACS has the text, so it was sent: the review question is answered.
                changes.update(
                    state="sent", message_id=message_id or item.message_id, reason="reconciled by a delivery report"
                )
            try:
                self._outbox.transition(item, **changes)
            except ConcurrencyConflict:
                item = self._outbox.get(item.id, item.bucket)
                if item is None:
                    return "unknown-message"
                continue
            if self._reports is not None:
                try:
                    self._reports.text_changed(item.appointment_key, item.id, item.bucket)
                except Exception as exc:  # the visit's next update refreshes the report
                    log.warning("report update not enqueued for a delivery report: %s", type(exc).__name__)
            return "delivery-recorded"
        return "delivery-conflict"

    # ---- inbound texts ---------------------------------------------------------------------------
    def _received(self, data: dict[str, Any], event_time: datetime) -> str:
        patient, ours = str(data.get("from") or ""), str(data.get("to") or "")
        word = keyword(data.get("message"))
        if word is None:
            return "no-keyword"
        if not (is_e164(patient) and is_e164(ours)):
            return "bad-number"
        if word in OPT_OUT_WORDS:
            changed = self._opt_outs.record(ours, patient, opted_out=True, event_time=event_time, keyword=word)
            return "opted-out" if changed else "opt-out-stale"
        if word in OPT_IN_WORDS:
            changed = self._opt_outs.record(ours, patient, opted_out=False, event_time=event_time, keyword=word)
            return "opted-in" if changed else "opt-in-stale"
        return self._help(ours, patient)

    def _help(self, ours: str, patient: str) -> str:
        environment = self._environment_for_sender(ours)
        if environment is None:
            return "help-unknown-sender"
        if self._opt_outs.is_opted_out(ours, patient):
            return "help-opted-out"
        now = self._clock.now()
        day = now.astimezone(ZoneInfo(environment.time_zone)).date().isoformat()
        if not self._opt_outs.claim_help_reply(ours, patient, day):
            return "help-already-answered"
        sms = environment.sms
        text = render(
            "help", language=sms.default_language, org=environment.display_name, start_utc=None,
            time_zone=environment.time_zone, link=None, overrides=sms.templates, default_language=sms.default_language,
        )
        result = self._sender.send(sender=ours, to=patient, message=text, tag=f"{environment.id}|help")
        return "help-sent" if result.status == "sent" else f"help-{result.status}"

    def _environment_for_sender(self, number: str) -> EnvironmentConfig | None:
        for environment in self._environments.all():
            if environment.sms.enabled and environment.sms.sender == number:
                return environment
        return None


def _event_time(event: dict[str, Any]) -> datetime:
    """The event's ``eventTime`` (Event Grid writes 7 fractional digits; Python reads 6)."""
    text = str(event.get("eventTime") or "1970-01-01T00:00:00Z").replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.fromisoformat(text)


class WebhookRejected(Exception):
    """The caller of the Event Grid webhook is not ours: ``status`` (401/403) and a ``reason`` safe to log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def check_caller(
    *, expected_key: str | None, given_key: str | None, expected_topic: str | None, events: list[dict[str, Any]]
) -> None:
    """Authenticate an Event Grid webhook call before any event is applied.

    Event Grid webhooks carry no signature; the documented options are a secret in the endpoint URL's query
    string or Entra authentication of the delivery (Event Grid docs "Secure webhook delivery"). We use the
    first: the subscription's endpoint is ``https://<app>/api/events/acs?code=<EVENTGRID_WEBHOOK_KEY>``, and
    the key is compared in constant time. Fails closed: without a configured key every call is refused.
    When ``ACS_RESOURCE_ID`` is set, every event other than the validation handshake must come from that
    ACS resource (its ``topic``), so a key leaked to another subscription cannot inject events.

    Raises:
        WebhookRejected: 401 without a key, 403 with a wrong key or a foreign topic.
    """
    import hmac

    if not expected_key:
        raise WebhookRejected(403, "EVENTGRID_WEBHOOK_KEY is not configured: the webhook refuses every call")
    if not given_key:
        raise WebhookRejected(401, "no webhook key in the request")
    if not hmac.compare_digest(given_key.encode(), expected_key.encode()):
        raise WebhookRejected(403, "wrong webhook key")
    if expected_topic:
        for event in events:
            if event.get("eventType") == SUBSCRIPTION_VALIDATION:
                continue
            if str(event.get("topic") or "").lower() != expected_topic.lower():
                raise WebhookRejected(403, "event from a topic other than ACS_RESOURCE_ID")
