"""The outbox dispatcher: sends due texts exactly once.

State machine of an outbox item (every move is an ETag-guarded replace, so only one worker wins):

    pending --claim--> sending --> sent | failed | pending (retry later) | unknown (operator review)
    pending --> skipped   (superseded revision, appointment cancelled or started, no number, SMS off)

A worker that loses the claim race does nothing. A send whose outcome is unknown (timeout after the
request left) is never resent automatically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from lib.clock import Clock
from lib.models import Appointment, EnvironmentConfig, OutboxItem, hour_bucket, iso
from lib.sms.links import JoinLinks
from lib.sms.sender import SendResult
from lib.sms.templates import render, template_language
from lib.store.appointments import AppointmentRepository
from lib.store.contacts import ContactRepository
from lib.store.environments import EnvironmentRepository
from lib.store.errors import ConcurrencyConflict
from lib.store.outbox import OutboxRepository

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
LINK_GRACE = timedelta(hours=2)
CURSOR_ID = "reminder-buckets"
MAX_LOOKBACK = timedelta(days=2)


class Sender(Protocol):
    """What the dispatcher needs from an SMS client (:class:`lib.sms.sender.AcsSmsSender`)."""

    def send(self, *, sender: str, to: str, message: str, tag: str | None = None) -> SendResult: ...


@dataclass
class RunReport:
    """What one dispatcher run did: outcome counts, queries made and documents read (for the bench)."""

    outcomes: dict[str, int] = field(default_factory=dict)
    buckets_read: int = 0
    documents_read: int = 0

    def count(self, outcome: str) -> None:
        """Add one outcome."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Dispatcher:
    """Sends outbox items. Collaborators are injected (see ``functions/dependencies.py``)."""

    def __init__(
        self,
        *,
        outbox: OutboxRepository,
        appointments: AppointmentRepository,
        contacts: ContactRepository,
        environments: EnvironmentRepository,
        timer_state: object,
        sender: Sender,
        links: JoinLinks,
        public_base_url: str,
        clock: Clock,
    ) -> None:
        self._outbox = outbox
        self._appointments = appointments
        self._contacts = contacts
        self._environments = environments
        self._timer_state = timer_state
        self._sender = sender
        self._links = links
        self._public_base_url = public_base_url
        self._clock = clock

    def join_link(self, environment: EnvironmentConfig, appointment: Appointment) -> str | None:
        """The patient's join link for ``appointment`` (expires two hours after its end)."""
        if not appointment.link_id or not appointment.end_utc:
            return None
        base = (environment.sms.join_link_base_url or self._public_base_url).rstrip("/")
        token = self._links.token(appointment.link_id, appointment.end_utc + LINK_GRACE)
        return f"{base}/api/join/{token}"

    def send_one(self, item_id: str, bucket: str) -> str:
        """Send one outbox item if it is still pending and due; returns the outcome word.

        Outcomes: ``sent``, ``skipped``, ``retry``, ``failed``, ``unknown``, ``not-due``, ``done-already``,
        ``lost-race``, ``missing``.

        Raises:
            StoreUnavailable: the store is down (the queue message comes back later).
        """
        item = self._outbox.get(item_id, bucket)
        if item is None:
            return "missing"
        return self._send(item)

    def _send(self, item: OutboxItem) -> str:
        now = self._clock.now()
        if item.state != "pending":
            return "done-already"
        if item.due_utc > now:
            return "not-due"
        appointment = self._appointments.get(item.appointment_key)
        environment = self._environments.get(item.environment_id)
        skip_reason = _skip_reason(item, appointment, environment, now)
        phone = None
        if skip_reason is None:
            phone = self._contacts.phone(item.appointment_key, now=now)
            if phone is None:
                skip_reason = "no SMS number on file"
        if skip_reason is not None:
            return self._finish(item, "skipped", reason=skip_reason)
        assert appointment is not None and environment is not None and phone is not None
        try:
            claimed = self._outbox.transition(item, state="sending", attempts=item.attempts + 1)
        except ConcurrencyConflict:
            return "lost-race"
        language = template_language(appointment.language, environment.sms.default_language)
        text = render(
            item.kind,
            language=language,
            org=environment.display_name,
            start_utc=appointment.start_utc,  # type: ignore[arg-type]
            time_zone=environment.time_zone,
            link=self.join_link(environment, appointment),
        )
        result = self._sender.send(sender=environment.sms.sender or "", to=phone, message=text, tag=item.id)
        log.info("sms %s kind=%s outcome=%s", item.id.split("|")[1], item.kind, result.status)
        if result.status == "sent":
            return self._finish(claimed, "sent", message_id=result.message_id, sent_utc=now)
        if result.status == "retry" and claimed.attempts < MAX_ATTEMPTS:
            delay = timedelta(seconds=result.retry_after or 30 * 2 ** (claimed.attempts - 1))
            self._finish(claimed, "pending", due_utc=now + delay, reason=result.reason)
            return "retry"
        if result.status == "unknown":
            return self._finish(claimed, "unknown", reason=result.reason)
        return self._finish(claimed, "failed", reason=result.reason)

    def _finish(self, item: OutboxItem, state: str, **changes: object) -> str:
        try:
            self._outbox.transition(item, state=state, **changes)
        except ConcurrencyConflict:
            return "lost-race"
        return state

    def run_due(self) -> RunReport:
        """Send every pending item due now, reading only the hour buckets from the cursor to now.

        The cursor (container ``timer_state``) advances past a bucket once it is in the past and has no
        pending item, so the cost grows with the texts due, not with all the texts stored.
        """
        now = self._clock.now()
        report = RunReport()
        current = hour_bucket(now)
        cursor = self._timer_state.get(CURSOR_ID)  # type: ignore[attr-defined]
        # Never before the lookback window, never after now (a cursor ahead of a skewed clock is ignored).
        start = min(max(cursor or "", hour_bucket(now - MAX_LOOKBACK)), current)
        bucket_time = datetime.fromisoformat(start + ":00:00+00:00")
        advanced_to = start
        can_advance = True
        while (bucket := hour_bucket(bucket_time)) <= current:
            items = self._outbox.due(bucket, now)
            report.buckets_read += 1
            report.documents_read += len(items)
            for item in items:
                report.count(self._send(item))
            if bucket < current and can_advance and self._outbox.count_pending(bucket) == 0:
                advanced_to = hour_bucket(bucket_time + timedelta(hours=1))
            else:
                can_advance = False
            bucket_time += timedelta(hours=1)
        if advanced_to != cursor:
            self._timer_state.put(CURSOR_ID, advanced_to, now=iso(now))  # type: ignore[attr-defined]
        return report


def _skip_reason(
    item: OutboxItem, appointment: Appointment | None, environment: EnvironmentConfig | None, now: datetime
) -> str | None:
    if environment is None or not environment.sms.enabled or not environment.sms.sender:
        return "SMS is not enabled for this environment"
    if appointment is None:
        return "appointment no longer exists"
    if appointment.start_utc is None or appointment.start_utc <= now:
        return "appointment has already started"
    if item.kind in ("booked", "changed", "reminder"):
        if appointment.status != "booked":
            return f"appointment is {appointment.status}"
        if item.revision != appointment.schedule_revision:
            return "superseded by a newer schedule"
    return None
