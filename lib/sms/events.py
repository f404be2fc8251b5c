"""ACS SMS events from Event Grid: delivery reports and inbound texts (STOP / START / HELP).

Event Grid schema (``eventDeliverySchema: EventGridSchema``): a JSON array of events, each ``{"id", "topic",
"subject", "eventType", "eventTime", "data", "dataVersion"}``. Delivery is at least once and in no order
(Event Grid "delivery and retry"; ``security.md`` §4.4): every effect here is idempotent, and
ordering is resolved by event time.

- ``Microsoft.Communication.SMSDeliveryReportReceived`` ``data``: ``messageId``, ``from``, ``to``,
  ``deliveryStatus`` (``Delivered``, ``Failed``...), ``deliveryStatusDetails``, ``deliveryAttempts``,
  ``receivedTimestamp``, ``tag`` (ACS docs "Azure Communication Services - SMS events"; ``protocols.md`` §4b).
- ``Microsoft.Communication.SMSReceived`` ``data``: ``messageId``, ``from`` (the patient), ``to`` (our number),
  ``message``, ``receivedTimestamp``.

What a text asks for (carrier keywords, free-text opt-out intent, full-width and look-alike letters) is read
by :mod:`lib.sms.keywords`. For toll-free numbers the carrier itself answers STOP and START; we send no
confirmation of our own. HELP is answered with the environment's ``help`` template (programme name, message
frequency, contact) at most once a day per (sender, recipient).

A "Failed" delivery report stops further texts from that sender to that number (``mark_undeliverable``); one
whose detail says the sender is blocked also records an opt-out (keyword ``ACS-BLOCKED``).

Phone numbers and message texts are never logged and never stored in clear (``lib/store/opt_outs.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from lib.clock import Clock, SystemClock
from lib.models import EnvironmentConfig, OutboxItem
from lib.observability import metrics
from lib.sms.configuration import is_e164
from lib.sms.event_schema import SUBSCRIPTION_VALIDATION, DeliveryReportData, MalformedEvent, ReceivedData, SmsEvent
from lib.sms.keywords import HELP_LANGUAGES, OPT_IN_WORDS, is_opt_out, keyword
from lib.sms.sender import SendResult
from lib.sms.templates import help_contact, render, texts_per_visit
from lib.store.environments import EnvironmentRepository
from lib.store.errors import ConcurrencyConflict
from lib.store.opt_outs import OptOutRepository
from lib.store.outbox import OutboxRepository
from lib.store.sms_messages import SmsMessageRepository

log = logging.getLogger(__name__)


#: ACS's per-recipient refusal and delivery-report detail of a number that sent STOP to a toll-free sender
#: (ACS ``sms-faq.md``: "Sender blocked for given recipient").
BLOCKED_MARKERS = ("blocked", "opted out", "opt-out", "optout")


class Sender(Protocol):
    """:class:`lib.sms.sender.AcsSmsSender`."""

    def send(self, *, sender: str, to: str, message: str, tag: str | None = None) -> SendResult: ...


@dataclass
class EventsReport:
    """Outcome words per valid event, in order (``delivery-recorded``, ``opted-out``, ``help-sent``, ...), and
    the malformed events that were skipped."""

    outcomes: list[str] = field(default_factory=list)
    malformed: list[MalformedEvent] = field(default_factory=list)


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
        public_base_url: str = "",
        reports: Any = None,
    ) -> None:
        self._public_base_url = public_base_url
        self._reports = reports  # lib.reports.inputs.ReportFeed: told when a delivery report changed a text
        self._outbox = outbox
        self._messages = messages
        self._opt_outs = opt_outs
        self._environments = environments
        self._sender = sender
        self._clock = clock

    def handle(self, events: Iterable[SmsEvent], malformed: Iterable[MalformedEvent] = ()) -> EventsReport:
        """Apply each valid event (:func:`lib.sms.event_schema.parse_batch`); unknown event types are ignored
        (``ignored``). ``malformed`` events are counted (``vv.sms.events_malformed``) and logged by position,
        type and failed fields only (never a value: they are phone numbers and texts), so they never hold back
        the valid events of their batch.

        Raises:
            StoreUnavailable: the store is down (the webhook answers 503; Event Grid retries the batch,
                which is harmless because every effect is idempotent).
        """
        report = EventsReport()
        for bad in malformed:
            metrics.sms_event_malformed(bad.event_type)
            log.warning("acs event skipped, malformed: %s", bad.describe())
            report.malformed.append(bad)
        wall_now = SystemClock().now()
        for event in events:
            # Event Grid retries deliver old events, so only a time ahead of ours shows a skewed clock.
            metrics.clock_skew("eventgrid", max(0.0, (event.event_time - wall_now).total_seconds()))
            if isinstance(event.data, DeliveryReportData):
                outcome = self._delivery_report(event.data, event.event_time)
            elif isinstance(event.data, ReceivedData):
                outcome = self._received(event.data, event.event_time)
            else:
                outcome = "ignored"
            log.info("acs event id=%s type=%s outcome=%s", event.id, event.event_type, outcome)
            report.outcomes.append(outcome)
        return report

    # ---- delivery reports ------------------------------------------------------------------------
    def _delivery_report(self, data: DeliveryReportData, event_time: datetime) -> str:
        message_id = data.message_id or ""
        item: OutboxItem | None = None
        outbox_id = self._messages.get(message_id) if message_id else None
        if outbox_id is not None:
            item = self._outbox.get(outbox_id)
        elif data.tag:
            item = self._outbox.get(data.tag)  # a send whose outcome was unknown: no message ID kept
        if item is None:
            return "unknown-message"
        status = data.delivery_status
        detail = (data.delivery_status_details or "")[:200] or None
        if status.lower() == "failed":
            self._stop_texting(data.sender, data.recipient, detail, event_time)
        for _ in range(5):
            if item.delivery_event_utc is not None and item.delivery_event_utc >= event_time:
                return "delivery-stale"
            changes: dict[str, object] = {
                "delivery_status": status, "delivery_detail": detail, "delivery_event_utc": event_time,
            }
            if item.state in ("unknown", "sending") or (item.state == "pending" and item.maybe_accepted):
                # ACS has the text, so it was sent: the review question (or the pending repeat) is answered.
                changes.update(
                    state="sent", message_id=message_id or item.message_id, reason="reconciled by a delivery report"
                )
            try:
                self._outbox.transition(item, **changes)
            except ConcurrencyConflict:
                item = self._outbox.get(item.id)
                if item is None:
                    return "unknown-message"
                continue
            metrics.sms_delivery(status)  # "Failed" feeds the SMS failure-rate and not-delivered alerts
            if self._reports is not None:
                try:
                    self._reports.text_changed(item.appointment_key, item.id, item.bucket)
                except Exception as exc:  # the visit's next update refreshes the report
                    log.warning("report update not enqueued for a delivery report: %s", type(exc).__name__)
            return "delivery-recorded"
        return "delivery-conflict"

    def _stop_texting(self, ours: str, patient: str, detail: str | None, event_time: datetime) -> None:
        """A "Failed" report: no more texts to this number from this sender; "blocked" is an opt-out too."""
        if not (is_e164(ours) and is_e164(patient)):
            return
        reason = detail or "delivery failed"
        self._opt_outs.mark_undeliverable(ours, patient, event_time=event_time, reason=reason)
        if any(marker in reason.lower() for marker in BLOCKED_MARKERS):
            self._opt_outs.record(ours, patient, opted_out=True, event_time=event_time, keyword="ACS-BLOCKED")

    # ---- inbound texts ---------------------------------------------------------------------------
    def _received(self, data: ReceivedData, event_time: datetime) -> str:
        patient, ours = data.sender, data.recipient
        word = keyword(data.message)
        if word is None:
            return "no-keyword"
        if not (is_e164(patient) and is_e164(ours)):
            return "bad-number"
        if is_opt_out(word):
            changed = self._opt_outs.record(ours, patient, opted_out=True, event_time=event_time, keyword=word)
            return "opted-out" if changed else "opt-out-stale"
        if word in OPT_IN_WORDS:
            changed = self._opt_outs.record(ours, patient, opted_out=False, event_time=event_time, keyword=word)
            return "opted-in" if changed else "opt-in-stale"
        return self._help(ours, patient, word)

    def _help(self, ours: str, patient: str, word: str) -> str:
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
        language = HELP_LANGUAGES.get(word, sms.default_language)  # AYUDA is answered in Spanish
        text = render(
            "help", language=language, org=environment.display_name, start_utc=None,
            time_zone=environment.time_zone, link=None, overrides=sms.templates, default_language=sms.default_language,
            contact=help_contact(sms, self._public_base_url), frequency=texts_per_visit(sms, language),
        )
        result = self._sender.send(sender=ours, to=patient, message=text, tag=f"{environment.id}|help")
        return "help-sent" if result.status == "sent" else f"help-{result.status}"

    def _environment_for_sender(self, number: str) -> EnvironmentConfig | None:
        for environment in self._environments.all():
            if environment.sms.enabled and environment.sms.sender == number:
                return environment
        return None


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
