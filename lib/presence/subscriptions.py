"""Subscriptions to a visit's meeting call events: created when the meeting is, renewed before they expire,
re-created when Graph removes them, deleted after the visit (timer ``presence_subscriptions``).

The ``clientState`` we give Graph is ``{document id}.{secret}``: notifications find their document with one
point read and prove themselves with the secret (compared in constant time).

Which source tells presence is the environment's ``presence_source`` (kept on the document as ``source``):
``notifications`` and ``auto`` subscribe; when Graph refuses that as not permitted (403) the document becomes
``not_allowed`` and the visit's call record is read after the meeting (``auto``: and where that is refused too,
its attendance report); ``attendance_report`` subscribes to nothing (``not_used``) and reads the attendance
report after the meeting (lib/presence/after_meeting.py).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lib.clock import Clock
from lib.models import Appointment
from lib.presence.after_meeting import LOOK_AFTER_END, AfterMeetingWork, schedule
from lib.presence.encrypted_content import NotificationCertificate, NotificationRefused
from lib.store.errors import ConcurrencyConflict
from lib.store.graph_subscriptions import GraphSubscription, GraphSubscriptionRepository, subscription_doc_id
from lib.teams.subscriptions import MEETING_EVENTS_MAX_MINUTES, GraphSubscriptionsClient, SubscriptionError

log = logging.getLogger(__name__)

#: Asked lifetime: a little under Graph's 3-day maximum.
LIFETIME = timedelta(minutes=MEETING_EVENTS_MAX_MINUTES - 10)
#: Renew when less than this is left.
RENEW_BEFORE = timedelta(hours=24)
#: How long after the visit's scheduled end the subscription is kept (overruns, late leaves).
KEEP_AFTER_END = timedelta(hours=2)
NOTIFICATIONS_PATH = "/api/notifications/graph"
LIFECYCLE_PATH = "/api/notifications/graph/lifecycle"


def meeting_events_resource(join_url: str) -> str:
    """``/communications/onlineMeetings(joinWebUrl='{URL-encoded}')/meetingCallEvents``."""
    return f"/communications/onlineMeetings(joinWebUrl='{urllib.parse.quote(join_url, safe='')}')/meetingCallEvents"


def visit_over_after(appointment: Appointment, now: datetime) -> datetime:
    """When a visit's subscription can go: the scheduled end (or start + 1 h, or now + 4 h) + :data:`KEEP_AFTER_END`."""
    end = appointment.end_utc or (appointment.start_utc + timedelta(hours=1) if appointment.start_utc else None)
    return max(end or now + timedelta(hours=4), now) + KEEP_AFTER_END


@dataclass(frozen=True)
class CheckedSubscription:
    """A notification's subscription after the ``clientState`` check."""

    subscription: GraphSubscription


class PresenceSubscriptions:
    """Keeps one live call-events subscription per visit with a meeting.

    Args:
        repo: subscription documents.
        graph: the subscriptions client (``None`` when Graph is not configured: nothing is subscribed).
        certificate: our notification encryption certificate.
        public_base_url: where Graph reaches us (``PUBLIC_BASE_URL``).
        clock: the app's clock.
        queues: the ``call-records`` queue producer (the look after the meeting when nothing is subscribed).
    """

    def __init__(self, *, repo: GraphSubscriptionRepository, graph: GraphSubscriptionsClient | None,
                 certificate: NotificationCertificate | None, public_base_url: str, clock: Clock,
                 queues: Any = None) -> None:
        self._repo = repo
        self._graph = graph
        self._certificate = certificate
        self._base = public_base_url.rstrip("/")
        self._clock = clock
        self._queues = queues

    # ---- when the meeting is created ------------------------------------------------------------
    def watch(self, appointment: Appointment, *, source: str = "auto") -> GraphSubscription | None:
        """Subscribe to the call events of ``appointment``'s meeting (once per visit), or, for ``source``
        ``attendance_report``, schedule the attendance report's read after the meeting. A failure leaves the
        document ``pending`` for the timer; it never fails the caller (a launch must go on).
        """
        if appointment.meeting is None:
            return None
        now = self._clock.now()
        doc = GraphSubscription(id=subscription_doc_id(appointment.key), appointment_key=appointment.key,
                                resource=meeting_events_resource(appointment.meeting.join_url),
                                secret=secrets.token_urlsafe(32), end_after_utc=visit_over_after(appointment, now),
                                source=source)
        try:
            stored, created = self._repo.create_once(doc)
            if created or stored.state == "pending":
                return self._activate(stored)
            return stored
        except Exception as exc:  # the timer creates it
            log.warning("presence subscription not created now (%s); the timer retries", type(exc).__name__)
            return None

    def reschedule(self, appointment: Appointment) -> None:
        """The visit moved: keep its subscription until the new end (renewed by the timer)."""
        sub = self._repo.get(subscription_doc_id(appointment.key))
        if sub is not None and sub.state in ("pending", "active"):
            try:
                self._repo.update(sub, end_after_utc=visit_over_after(appointment, self._clock.now()))
            except ConcurrencyConflict:
                pass  # the timer or a notification changed it; the next reschedule or renewal converges

    def _activate(self, sub: GraphSubscription) -> GraphSubscription:
        if sub.source == "attendance_report":
            return self._read_after_meeting(sub, "not_used", AfterMeetingWork(sub.appointment_key,
                                                                              "attendance_report"),
                                            "presence_source_attendance_report")
        if self._graph is None or self._certificate is None:
            return self._repo.update(sub, last_error="graph_not_configured")
        now = self._clock.now()
        expires = min(now + LIFETIME, (sub.end_after_utc or now + LIFETIME) + timedelta(minutes=30))
        try:
            graph_id, granted = self._graph.create(
                resource=sub.resource, notification_url=self._base + NOTIFICATIONS_PATH,
                lifecycle_url=self._base + LIFECYCLE_PATH, client_state=f"{sub.id}.{sub.secret}",
                expires=max(expires, now + timedelta(minutes=45)), certificate_b64=self._certificate.certificate_b64,
                certificate_id=self._certificate.certificate_id)
        except SubscriptionError as exc:
            log.warning("presence subscription create failed reason=%s", exc.reason)
            if exc.not_permitted:  # this tenant does not allow it: read what Graph keeps after the meeting
                then = "attendance_report" if sub.source == "auto" else None
                return self._read_after_meeting(sub, "not_allowed", AfterMeetingWork(sub.appointment_key,
                                                                                     "call_record", then), exc.reason)
            return self._repo.update(sub, state="pending", last_error=exc.reason)
        fresh = self._repo.get(sub.id) or sub
        updated = self._repo.update(fresh, state="active", graph_id=graph_id, expires_utc=granted, last_error=None)
        log.info("presence subscription active")
        return updated

    def _read_after_meeting(self, sub: GraphSubscription, state: str, work: AfterMeetingWork,
                            reason: str) -> GraphSubscription:
        """Queue ``work`` for the visit's scheduled end + a few minutes, then mark the document ``state``; if
        the queue fails the document stays ``pending`` and the timer tries again (a second message is
        harmless: every read is idempotent)."""
        now = self._clock.now()
        end = sub.end_after_utc - KEEP_AFTER_END if sub.end_after_utc else now
        try:
            if self._queues is None:
                raise RuntimeError("no queue producer")
            schedule(self._queues, work, visible_at=end + LOOK_AFTER_END, now=now)
        except Exception as exc:
            log.warning("after-meeting read not queued (%s); the timer retries", type(exc).__name__)
            return self._repo.update(sub, state="pending", last_error="after_meeting_not_queued")
        log.info("presence source state=%s read=%s then=%s", state, work.read, work.then)
        return self._repo.update(sub, state=state, last_error=reason)

    # ---- timer ----------------------------------------------------------------------------------
    def run_due(self) -> dict[str, int]:
        """Create pending subscriptions, renew those expiring within :data:`RENEW_BEFORE`, delete those of
        visits that are over. Returns counts per action.

        Raises:
            StoreUnavailable: Cosmos DB is down (the next run tries again).
        """
        now = self._clock.now()
        counts = {"created": 0, "renewed": 0, "ended": 0, "failed": 0}
        for sub in self._repo.due(now, now + RENEW_BEFORE):
            try:
                if sub.state == "pending":
                    done = self._activate(sub)
                    counts["created" if done.state == "active" else "failed"] += 1
                elif sub.end_after_utc is not None and sub.end_after_utc < now:
                    self._end(sub)
                    counts["ended"] += 1
                else:
                    counts["renewed" if self._renew(sub) else "failed"] += 1
            except ConcurrencyConflict:
                continue  # a notification changed it meanwhile: next run
        return counts

    def _renew(self, sub: GraphSubscription) -> bool:
        assert self._graph is not None and sub.graph_id is not None
        now = self._clock.now()
        expires = min(now + LIFETIME, (sub.end_after_utc or now + LIFETIME) + timedelta(minutes=30))
        try:
            granted = self._graph.renew(sub.graph_id, max(expires, now + timedelta(minutes=45)))
        except SubscriptionError as exc:
            if exc.gone:  # expired or removed: subscribe again
                return self._activate(self._repo.update(sub, state="pending", graph_id=None)).state == "active"
            self._repo.update(sub, last_error=exc.reason)
            return False
        self._repo.update(sub, expires_utc=granted, last_error=None)
        return True

    def _end(self, sub: GraphSubscription) -> None:
        if self._graph is not None and sub.graph_id:
            try:
                self._graph.delete(sub.graph_id)
            except SubscriptionError as exc:
                self._repo.update(sub, last_error=exc.reason)
                return
        self._repo.update(sub, state="ended")

    # ---- notifications -------------------------------------------------------------------------
    def check(self, notification: dict[str, Any]) -> GraphSubscription:
        """The subscription a notification claims to come from, after checking its ``clientState`` secret
        and its ``subscriptionId``.

        Raises:
            NotificationRefused: ``client_state_missing``, ``unknown_subscription``, ``bad_client_state``,
                ``subscription_mismatch``.
        """
        state = notification.get("clientState")
        if not isinstance(state, str) or "." not in state or len(state) > 128:
            raise NotificationRefused("client_state_missing")
        doc_id, _, secret = state.partition(".")
        sub = self._repo.get(doc_id) if doc_id.startswith("mce-") and len(doc_id) == 36 else None
        if sub is None:
            raise NotificationRefused("unknown_subscription")
        if not hmac.compare_digest(sub.secret.encode(), secret.encode()):
            raise NotificationRefused("bad_client_state")
        graph_id = notification.get("subscriptionId")
        if sub.graph_id is not None and graph_id != sub.graph_id:
            raise NotificationRefused("subscription_mismatch")
        return sub

    def on_lifecycle(self, sub: GraphSubscription, event: str) -> str:
        """React to a lifecycle notification: ``reauthorizationRequired`` renews now, ``subscriptionRemoved``
        subscribes again, ``missed`` is recorded (the call record settles what was lost). Returns what was done.
        """
        if sub.state == "ended":
            return "ignored"
        if event == "reauthorizationRequired":
            return "renewed" if sub.graph_id and self._renew(sub) else "renew_failed"
        if event == "subscriptionRemoved":
            fresh = self._repo.update(sub, state="pending", graph_id=None)
            return "recreated" if self._activate(fresh).state == "active" else "recreate_pending"
        if event == "missed":
            self._repo.update(sub, missed_utc=self._clock.now())
            return "missed_recorded"
        return "ignored"
