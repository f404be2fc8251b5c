"""Graph change notifications: check, decrypt, apply (``POST /api/notifications/graph`` and ``/lifecycle``).

Nothing in a notification is trusted until it passed, in this order: its ``clientState`` names one of our
subscription documents and carries that subscription's secret (:meth:`PresenceSubscriptions.check`); its
``encryptedContent`` was encrypted for our certificate and its ``dataSignature`` verifies
(:func:`lib.presence.encrypted_content.decrypt_resource`). Only the decrypted resource is used; the
notification's plain ``resource``/``resourceData`` fields are ignored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from lib.presence.encrypted_content import NotificationCertificate, NotificationRefused, decrypt_resource
from lib.presence.roster import InvalidCallEvent, RosterService
from lib.presence.subscriptions import PresenceSubscriptions

log = logging.getLogger(__name__)

LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
MAX_BODY = 1024 * 1024


@dataclass
class NotificationReport:
    """What one delivery did: ``applied`` notifications, participant ``events`` created, ``refused`` reasons
    (failed a check: not from Graph for us), ``ignored`` reasons (authentic but not a call event we use),
    ``lifecycle`` actions."""

    applied: int = 0
    events: int = 0
    refused: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    lifecycle: list[str] = field(default_factory=list)


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """The ``value`` array of a notification delivery.

    Raises:
        NotificationRefused: ``too_large``, ``not_json``, ``no_value``.
    """
    if len(body) > MAX_BODY:
        raise NotificationRefused("too_large")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NotificationRefused("not_json") from None
    value = doc.get("value") if isinstance(doc, dict) else None
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise NotificationRefused("no_value")
    return value


class NotificationService:
    """Handles deliveries of change and lifecycle notifications.

    Args:
        subscriptions: checks ``clientState`` and reacts to lifecycle events.
        roster: applies decrypted call events.
        certificates: our encryption certificates by ID (empty: every rich notification is refused).
    """

    def __init__(self, *, subscriptions: PresenceSubscriptions, roster: RosterService,
                 certificates: dict[str, NotificationCertificate]) -> None:
        self._subscriptions = subscriptions
        self._roster = roster
        self._certificates = certificates

    def changes(self, body: bytes, *, correlation_id: str | None = None) -> NotificationReport:
        """Apply a delivery of change notifications (each checked on its own).

        Raises:
            NotificationRefused: the body is not a notification delivery.
            StoreUnavailable: Cosmos DB is down (answer 5xx: Graph delivers again).
        """
        report = NotificationReport()
        for notification in parse_batch(body):
            try:
                sub = self._subscriptions.check(notification)
                call_event = decrypt_resource(notification.get("encryptedContent"), self._certificates)
                created = self._roster.apply(sub.appointment_key, call_event, correlation_id=correlation_id)
            except NotificationRefused as exc:
                log.warning("graph notification refused reason=%s correlation=%s", exc.reason, correlation_id)
                report.refused.append(exc.reason)
                continue
            except InvalidCallEvent as exc:
                log.warning("graph notification ignored reason=%s correlation=%s", exc.reason, correlation_id)
                report.ignored.append(exc.reason)
                continue
            report.applied += 1
            report.events += len(created)
        return report

    def lifecycle(self, body: bytes, *, correlation_id: str | None = None) -> NotificationReport:
        """Handle a delivery of lifecycle notifications (``reauthorizationRequired``, ``subscriptionRemoved``,
        ``missed``), each after the same ``clientState`` check.

        Raises:
            NotificationRefused: the body is not a notification delivery.
            StoreUnavailable: Cosmos DB is down.
        """
        report = NotificationReport()
        for notification in parse_batch(body):
            event = notification.get("lifecycleEvent")
            try:
                if event not in LIFECYCLE_EVENTS:
                    raise NotificationRefused("unknown_lifecycle_event")
                sub = self._subscriptions.check(notification)
            except NotificationRefused as exc:
                log.warning("graph lifecycle notification refused reason=%s correlation=%s", exc.reason,
                            correlation_id)
                report.refused.append(exc.reason)
                continue
            action = self._subscriptions.on_lifecycle(sub, str(event))
            log.info("graph lifecycle event=%s action=%s correlation=%s", event, action, correlation_id)
            report.lifecycle.append(action)
            report.applied += 1
        return report
