"""Subscriptions to a visit's meeting call events: created when the meeting is, renewed before they expire,
re-created when Graph removes them, deleted after the visit (timer ``presence_subscriptions``).

The ``clientState`` we give Graph is ``{document id}.{secret}``: notifications find their document with one
point read and prove themselves with the secret (compared in constant time).

Which source tells presence is the environment's ``presence_source`` (kept on the document as ``source``):
``notifications`` and ``auto`` subscribe; when Graph refuses that as not permitted (403) the document becomes
``not_allowed`` and the visit's call record is read after the meeting (``auto``: and where that is refused too,
its attendance report); ``attendance_report`` subscribes to nothing (``not_used``) and reads the attendance
report after the meeting (lib/presence/after_meeting.py).

At-least-once: the timer can run twice at once and a ``launch-followup`` redelivery can race it, so a run first
claims the document (ETag-guarded ``claimed_utc``) and only the claimer calls ``POST /subscriptions``; a
subscription made by a run whose claim was overtaken (it outlived :data:`CREATE_LEASE`) is deleted again.

After the meeting the call record is read (queue ``call-records``) whenever the roster may have missed the call's
end: on a ``missed`` lifecycle notification, and when the visit is over and the roster never showed everyone
gone (:meth:`PresenceSubscriptions.run_due`). Reading it again is harmless: it only adds what is missing.
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
from lib.store.presence import Presence, PresenceRepository
from lib.teams.subscriptions import MEETING_EVENTS_MAX_MINUTES, GraphSubscriptionsClient, SubscriptionError

log = logging.getLogger(__name__)

#: Asked lifetime: a little under Graph's 3-day maximum.
LIFETIME = timedelta(minutes=MEETING_EVENTS_MAX_MINUTES - 10)
#: Renew when less than this is left.
RENEW_BEFORE = timedelta(hours=24)
#: How long after the visit's scheduled end the subscription is kept (overruns, late leaves).
KEEP_AFTER_END = timedelta(hours=2)
#: A run that claimed a document to create its Graph subscription holds it this long (the POST, with Graph's
#: validation requests, takes seconds); after that another run may claim it again.
CREATE_LEASE = timedelta(minutes=2)
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
        queues: the ``call-records`` queue producer (the read after the meeting).
        presence: the visits' rosters (did the roster show the call's end?); ``None``: the call record is read
            after every visit.
    """

    def __init__(self, *, repo: GraphSubscriptionRepository, graph: GraphSubscriptionsClient | None,
                 certificate: NotificationCertificate | None, public_base_url: str, clock: Clock,
                 queues: Any = None, presence: PresenceRepository | None = None) -> None:
        self._repo = repo
        self._presence = presence
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
        except ConcurrencyConflict:  # another run (the timer, a redelivery) is creating it
            return self._repo.get(doc.id)
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
        if sub.claimed_utc is not None and now - sub.claimed_utc < CREATE_LEASE:
            raise ConcurrencyConflict("another run is creating this subscription")
        claimed = self._repo.update(sub, claimed_utc=now)  # ConcurrencyConflict: another run claimed it first
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
                return self._read_after_meeting(claimed, "not_allowed", AfterMeetingWork(sub.appointment_key,
                                                                                         "call_record", then),
                                                exc.reason)
            # (an active one being subscribed again with a new certificate keeps its subscription meanwhile)
            return self._repo.update(claimed, last_error=exc.reason, claimed_utc=None)
        return self._record_created(claimed, graph_id, granted)

    def _record_created(self, claimed: GraphSubscription, graph_id: str, granted: datetime) -> GraphSubscription:
        """Keep the new Graph subscription on the document we claimed (deleting the one it replaces, after a
        certificate rotation). If the document changed meanwhile, keep ours only when no other run recorded one;
        else delete ours (one subscription per visit)."""
        assert self._certificate is not None
        current = claimed
        for _ in range(3):
            if current.graph_id not in (None, graph_id, claimed.graph_id) or current.state not in ("pending",
                                                                                                 "active"):
                log.warning("presence subscription made twice: the later one is deleted")
                self._delete_quietly(graph_id)
                return current
            try:
                updated = self._repo.update(current, state="active", graph_id=graph_id, expires_utc=granted,
                                            last_error=None, claimed_utc=None,
                                            certificate_id=self._certificate.certificate_id)
                log.info("presence subscription active")
                if current.graph_id and current.graph_id != graph_id:  # the one made with the old certificate
                    self._delete_quietly(current.graph_id)
                return updated
            except ConcurrencyConflict:  # a reschedule or another run wrote it: look again
                current = self._repo.get(claimed.id) or claimed
        self._delete_quietly(graph_id)
        raise ConcurrencyConflict("subscription document kept changing")

    def _delete_quietly(self, graph_id: str) -> None:
        assert self._graph is not None
        try:
            self._graph.delete(graph_id)
        except SubscriptionError as exc:  # it expires by itself; its notifications are refused meanwhile
            log.warning("surplus presence subscription not deleted reason=%s", exc.reason)

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
            return self._repo.update(sub, state="pending", last_error="after_meeting_not_queued", claimed_utc=None)
        log.info("presence source state=%s read=%s then=%s", state, work.read, work.then)
        return self._repo.update(sub, state=state, last_error=reason, claimed_utc=None)

    # ---- timer ----------------------------------------------------------------------------------
    def run_due(self) -> dict[str, int]:
        """End the documents of visits that are over (whatever their state: a ``pending`` one is never created
        late), create pending subscriptions, renew those expiring within :data:`RENEW_BEFORE`. Returns counts
        per action (``failed``: tried and not done, the next run tries again).

        Raises:
            StoreUnavailable: Cosmos DB is down (the next run tries again).
        """
        now = self._clock.now()
        counts = {"created": 0, "renewed": 0, "ended": 0, "failed": 0}
        for sub in self._repo.due(now, now + RENEW_BEFORE):
            try:
                if sub.end_after_utc is not None and sub.end_after_utc < now:
                    counts["ended" if self._end(sub) else "failed"] += 1
                elif sub.state == "pending":
                    done = self._activate(sub)
                    counts["created" if done.state == "active" else "failed"] += 1
                else:
                    counts["renewed" if self._renew(sub) else "failed"] += 1
            except ConcurrencyConflict:
                continue  # another run or a notification changed it meanwhile: next run
        return counts

    def _renew(self, sub: GraphSubscription) -> bool:
        assert self._graph is not None and sub.graph_id is not None
        if self._certificate is not None and sub.certificate_id != self._certificate.certificate_id:
            # Made with a certificate being rotated out (or before we kept which): a renewal would keep Graph
            # encrypting for it, so subscribe again with the current one and delete the old subscription.
            return self._activate(sub).certificate_id == self._certificate.certificate_id
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

    def _end(self, sub: GraphSubscription) -> bool:
        """The visit is over: delete its Graph subscription (a ``pending`` one was never made: no Graph call),
        queue the call record's read if the roster may have missed the call's end, then mark it ``ended``.
        Returns ``False`` when it must be tried again (Graph busy while the subscription still lives; queue
        down). A refused delete (403...) or one whose subscription has expired anyway ends it all the same."""
        now = self._clock.now()
        error = sub.last_error
        if self._graph is not None and sub.graph_id:
            try:
                self._graph.delete(sub.graph_id)
            except SubscriptionError as exc:
                if exc.transient and (sub.expires_utc is None or sub.expires_utc > now):
                    self._repo.update(sub, last_error=exc.reason)
                    return False
                log.warning("presence subscription not deleted reason=%s: ended all the same", exc.reason)
                error = exc.reason
        if self._needs_call_record(sub):
            work = AfterMeetingWork(sub.appointment_key, "call_record",
                                    "attendance_report" if sub.source == "auto" else None)
            try:
                if self._queues is None:
                    raise RuntimeError("no queue producer")
                schedule(self._queues, work, visible_at=now, now=now)
            except Exception as exc:
                log.warning("after-meeting read not queued (%s); the timer retries", type(exc).__name__)
                self._repo.update(sub, last_error="after_meeting_not_queued")
                return False
            log.info("presence subscription ended: the call record is read (call end not seen)")
        self._repo.update(sub, state="ended", last_error=error, claimed_utc=None)
        return True

    def _needs_call_record(self, sub: GraphSubscription) -> bool:
        """Whether the roster may have missed the end of a call: nothing seen at all, no ``callEnded``,
        someone still in the last roster, or a ``missed`` lifecycle notification. (A ``callEnded`` the roster
        saw queued the read already.)"""
        if self._presence is None or sub.missed_utc is not None:
            return True
        presence: Presence | None = self._presence.get(sub.appointment_key)
        return (presence is None or presence.call_ended_utc is None or not presence.snapshots
                or bool(presence.snapshots[-1].entries))

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
        try:
            if event == "subscriptionRemoved":
                fresh = self._repo.update(sub, state="pending", graph_id=None)
                return "recreated" if self._activate(fresh).state == "active" else "recreate_pending"
            if event == "missed":
                return self._on_missed(sub)
        except ConcurrencyConflict:  # another run or notification changed it: the timer converges
            return "busy"
        return "ignored"

    def _on_missed(self, sub: GraphSubscription) -> str:
        """Graph could not deliver some notifications (the call's end among them, perhaps): record it and, the
        first time, queue the call record's read (the ``call-records`` trigger waits for the visit's scheduled
        end + a few minutes when the roster showed no end of the call). The visit's end queues it again if this
        one was lost."""
        now = self._clock.now()
        first = sub.missed_utc is None
        self._repo.update(sub, missed_utc=now)
        if first and self._queues is not None:
            work = AfterMeetingWork(sub.appointment_key, "call_record",
                                    "attendance_report" if sub.source == "auto" else None)
            try:
                schedule(self._queues, work, visible_at=now, now=now)
            except Exception as exc:  # the visit's end queues it (missed_utc is set)
                log.warning("after-meeting read not queued on missed (%s)", type(exc).__name__)
        return "missed_recorded"
