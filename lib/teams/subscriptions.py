"""Graph change-notification subscriptions (``POST/PATCH/DELETE /subscriptions``, GRAPH
``api-reference/v1.0/api/subscription-post-subscriptions.md``).

Meeting call events (``/communications/onlineMeetings(joinWebUrl='...')/meetingCallEvents``) are served on the
beta endpoint only (reference/protocols.md "Live participant join and leave"), so this client talks to
``{GRAPH_BASE_URL without /v1.0}/beta``. Graph checks ``notificationUrl`` and ``lifecycleNotificationUrl``
with a validation request before it answers the ``POST`` (functions/notifications.py answers it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from lib.ehr.writeback import retry_after_seconds
from lib.smart.transport import TransportError, json_or_none
from lib.teams.graph import GraphCaller

#: Longest lifetime Graph grants a meeting call-events subscription (3 days).
MEETING_EVENTS_MAX_MINUTES = 4320


class SubscriptionError(Exception):
    """A subscription call failed. ``transient`` (429, 5xx, no answer: try again later, after ``retry_after``
    seconds when Graph said), ``gone`` (404: the subscription no longer exists), ``not_permitted`` (403: the
    tenant did not grant the permission or the access policy); ``reason`` is safe to log."""

    def __init__(self, reason: str, *, transient: bool = False, gone: bool = False,
                 retry_after: float | None = None, not_permitted: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.gone = gone
        self.retry_after = retry_after
        self.not_permitted = not_permitted


def beta_base(graph_base_url: str) -> str:
    """``https://graph.microsoft.com/v1.0`` -> ``https://graph.microsoft.com/beta``."""
    return re.sub(r"/v1\.0/?$", "", graph_base_url.rstrip("/")) + "/beta"


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class GraphSubscriptionsClient(GraphCaller):
    """Create, renew and delete subscriptions with the app-only token.

    Args:
        base_url: the beta base (:func:`beta_base`).
        tokens: app-only token source.
        http: outbound HTTP client.
    """


    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self._tokens.token()}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(method, self._base + path, json=body, headers=headers)
        except TransportError as exc:
            raise SubscriptionError(f"graph_{exc.kind}", transient=True) from exc
        status = response.status_code
        if status in (200, 201, 204):
            return json_or_none(response) if status != 204 else None
        if status == 404:
            raise SubscriptionError("graph_http_404", gone=True)
        if status == 429 or status >= 500:
            raise SubscriptionError(f"graph_http_{status}", transient=True,
                                    retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        doc = json_or_none(response)
        code = (doc.get("error") or {}).get("code") if isinstance(doc, dict) else None
        raise SubscriptionError(f"graph_http_{status}" + (f"_{code}" if isinstance(code, str) else ""),
                                not_permitted=status == 403)

    def create(self, *, resource: str, notification_url: str, lifecycle_url: str, client_state: str,
               expires: datetime, certificate_b64: str, certificate_id: str) -> tuple[str, datetime]:
        """Subscribe to ``resource`` with rich (encrypted) notifications; returns ``(id, expiration)``.

        Raises:
            SubscriptionError.
        """
        doc = self._call("POST", "/subscriptions", {
            "changeType": "created,updated",
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": resource,
            "includeResourceData": True,
            "encryptionCertificate": certificate_b64,
            "encryptionCertificateId": certificate_id,
            "expirationDateTime": _time(expires),
            "clientState": client_state,
        })
        return _id_and_expiry(doc)

    def renew(self, graph_id: str, expires: datetime) -> datetime:
        """Extend a subscription (also the answer to ``reauthorizationRequired``); returns the new expiry.

        Raises:
            SubscriptionError (``gone`` when it no longer exists).
        """
        doc = self._call("PATCH", f"/subscriptions/{graph_id}", {"expirationDateTime": _time(expires)})
        return _id_and_expiry(doc)[1]

    def delete(self, graph_id: str) -> None:
        """Remove a subscription; one already gone counts as removed.

        Raises:
            SubscriptionError (transient ones only).
        """
        try:
            self._call("DELETE", f"/subscriptions/{graph_id}")
        except SubscriptionError as exc:
            if not exc.gone:
                raise


def _id_and_expiry(doc: Any) -> tuple[str, datetime]:
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise SubscriptionError("graph_bad_answer", transient=True)
    try:
        expires = datetime.fromisoformat(str(doc["expirationDateTime"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise SubscriptionError("graph_bad_answer", transient=True) from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return doc["id"], expires
