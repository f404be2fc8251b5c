"""Graph change notifications: check, decrypt, apply (``POST /api/notifications/graph`` and ``/lifecycle``).

Nothing in a delivery is trusted until it passed, in this order: every JWT of its ``validationTokens`` was
issued by the Microsoft identity platform to Microsoft Graph change tracking for our app
(:mod:`lib.presence.validation_tokens`; a delivery that fails is refused whole, before any notification is
looked at); each notification's ``tenantId`` is a tenant a token vouches for (its ``tid``); its
``clientState`` names one of our subscription documents and carries that subscription's secret
(:meth:`PresenceSubscriptions.check`); its ``encryptedContent`` was encrypted for our certificate and its
``dataSignature`` verifies (:func:`lib.presence.encrypted_content.decrypt_resource`). Only the decrypted
resource is used; the notification's plain ``resource``/``resourceData`` fields are ignored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from lib.presence.encrypted_content import NotificationCertificate, NotificationRefused, decrypt_resource
from lib.presence.roster import InvalidCallEvent, RosterService
from lib.presence.subscriptions import PresenceSubscriptions
from lib.presence.validation_tokens import ValidationTokenVerifier

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


@dataclass(frozen=True)
class Delivery:
    """One POST from Graph: its ``value`` notifications and its ``validationTokens`` (``None`` when absent)."""

    notifications: list[dict[str, Any]]
    validation_tokens: Any


def parse_delivery(body: bytes) -> Delivery:
    """A notification delivery (``changeNotificationCollection``).

    Raises:
        NotificationRefused: ``too_large``, ``not_json``, ``no_value``.
    """
    if len(body) > MAX_BODY:
        raise NotificationRefused("too_large")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested thousands deep
        raise NotificationRefused("not_json") from None
    value = doc.get("value") if isinstance(doc, dict) else None
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise NotificationRefused("no_value")
    return Delivery(notifications=value, validation_tokens=doc.get("validationTokens"))


class NotificationService:
    """Handles deliveries of change and lifecycle notifications.

    Args:
        subscriptions: checks ``clientState`` and reacts to lifecycle events.
        roster: applies decrypted call events.
        certificates: our encryption certificates by ID (empty: every rich notification is refused).
        validation_tokens: checks the deliveries' ``validationTokens`` (``None`` when Graph is not configured:
            every delivery that needs them is refused).
    """

    def __init__(self, *, subscriptions: PresenceSubscriptions, roster: RosterService,
                 certificates: dict[str, NotificationCertificate],
                 validation_tokens: ValidationTokenVerifier | None) -> None:
        self._subscriptions = subscriptions
        self._roster = roster
        self._certificates = certificates
        self._validation_tokens = validation_tokens

    def _vouched_tenants(self, delivery: Delivery, *, required: bool, correlation_id: str | None) -> frozenset[str]:
        """The tenants (``tid``) the delivery's validation tokens vouch for, after every token passed.

        Raises:
            NotificationRefused: a token failed, or none came where ``required`` (logged here, without tokens).
            SigningKeysUnavailable: the identity platform's keys cannot be read now.
        """
        try:
            if self._validation_tokens is None:
                if required or delivery.validation_tokens:
                    raise NotificationRefused("validation_tokens_unverifiable")
                return frozenset()
            claims = self._validation_tokens.check_delivery(delivery.validation_tokens, required=required)
        except NotificationRefused as exc:
            log.warning("graph notification delivery refused reason=%s notifications=%d correlation=%s",
                        exc.reason, len(delivery.notifications), correlation_id)
            raise
        return frozenset(str(c["tid"]) for c in claims if isinstance(c.get("tid"), str))

    def changes(self, body: bytes, *, correlation_id: str | None = None) -> NotificationReport:
        """Apply a delivery of change notifications (each checked on its own).

        Every delivery to this endpoint carries resource data (our subscriptions ask for it), so its
        ``validationTokens`` are required; when they fail, nothing of the delivery is applied.

        Raises:
            NotificationRefused: the body is not a notification delivery.
            SigningKeysUnavailable: the identity platform's keys cannot be read (answer 5xx: Graph delivers
                again).
            StoreUnavailable: Cosmos DB is down (answer 5xx: Graph delivers again).
        """
        report = NotificationReport()
        delivery = parse_delivery(body)
        try:
            tenants = self._vouched_tenants(delivery, required=True, correlation_id=correlation_id)
        except NotificationRefused as exc:
            report.refused.append(exc.reason)
            return report
        for notification in delivery.notifications:
            try:
                # Graph sends a token for each (app, tenant) of the delivery's notifications.
                if notification.get("tenantId") not in tenants:
                    raise NotificationRefused("validation_token_tenant_mismatch")
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
        ``missed``), each after the same ``clientState`` check. Lifecycle notifications carry no resource data,
        so ``validationTokens`` are not required; any that come are checked like those of a change delivery.

        Raises:
            NotificationRefused: the body is not a notification delivery.
            SigningKeysUnavailable: the identity platform's keys cannot be read.
            StoreUnavailable: Cosmos DB is down.
        """
        report = NotificationReport()
        delivery = parse_delivery(body)
        try:
            self._vouched_tenants(delivery, required=False, correlation_id=correlation_id)
        except NotificationRefused as exc:
            report.refused.append(exc.reason)
            return report
        for notification in delivery.notifications:
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
