"""Graph stand-in, presence part: subscriptions to meeting call events with rich (encrypted) notifications,
lifecycle notifications, and a control API that scripts a meeting's roster.

Real contract (Graph beta, GRAPH ``concepts/changenotifications-for-onlinemeeting.md``,
``concepts/change-notifications-with-resource-data.md``, ``api/subscription-post-subscriptions.md``):

- ``POST /beta/subscriptions``: ``resource``
  ``/communications/onlineMeetings(joinWebUrl='{URL-encoded}')/meetingCallEvents``
  of a known meeting (404 otherwise; on ``/v1.0`` the resource is refused, 400), ``changeType``,
  ``notificationUrl`` and ``lifecycleNotificationUrl`` (https, or http on loopback for the dev runner),
  ``includeResourceData: true`` with ``encryptionCertificate`` (base64 DER, RSA) and
  ``encryptionCertificateId``, ``clientState`` (at most 128 characters), ``expirationDateTime`` in the future
  and at most 4320 minutes ahead. Before answering 201, both URLs get the validation request
  (``POST ?validationToken=...``, ``text/plain``) and must echo the token with 200 within 10 s, else 400
  ``ValidationError``.
- ``PATCH /beta/subscriptions/{id}`` (``expirationDateTime``; 404 once expired or removed),
  ``DELETE /beta/subscriptions/{id}`` (204; 404 when unknown).
- Notifications: ``{"value": [{"subscriptionId", "subscriptionExpirationDateTime", "changeType", "clientState",
  "resource", "resourceData", "tenantId", "encryptedContent": {"data", "dataSignature", "dataKey",
  "encryptionCertificateId", "encryptionCertificateThumbprint"}}], "validationTokens": [...]}``. ``data`` is the
  ``callEvent`` JSON, AES-256-CBC (PKCS#7, IV = first 16 key bytes) under a random key; ``dataKey`` that key
  RSA-OAEP(SHA-1) encrypted for the certificate; ``dataSignature`` HMAC-SHA256(key, data).
  ``validationTokens``: one JWT signed with the stand-in's published Entra key (``iss``
  ``https://sts.windows.net/{tenant}/``, ``aud`` the subscribing app, ``appid`` Graph change tracking).

Control API (JSON), documented in ``local/standins/README.md``:

- ``POST /_standin/call-events`` ``{"joinWebUrl", "steps": [{"action": "start"|"join"|"admit"|"leave"|"end",
  "participant": {"user": oid} | {"acs": id} | {"guest": id}, "lobby": bool, "at": ISO}], "delivery":
  "normal"|"duplicate"|"hold"|"drop"}``: each step changes the stand-in's roster of that meeting and makes one
  notification (``callStarted``, ``rosterUpdated`` with the whole roster, ``callEnded``), delivered to every live
  subscription of the meeting (``hold`` keeps them for ``/release``; ``drop`` loses them, as a missed
  notification). Answers the HTTP status of each delivery.
- ``POST /_standin/call-events/release`` ``{"order": "reverse"|"forward"}``: deliver held notifications.
- ``POST /_standin/notifications/raw`` ``{"url", "body"}``: post an arbitrary body (forgery tests).
- ``POST /_standin/validation-tokens`` ``{"aud"?, "claims"?, "remove"?, "signer"?}``: a validation token with
  claims overridden or removed, or signed by an unpublished key (``signer`` ``unpublished`` /
  ``unpublished_same_kid``), to swap into a sealed envelope. Key rotation: ``POST /_standin/keys/rotate``.
- ``GET /_standin/subscriptions``; ``POST /_standin/subscriptions/{id}/lifecycle`` ``{"event":
  "reauthorizationRequired"|"subscriptionRemoved"|"missed"}`` (``subscriptionRemoved`` also removes it);
  ``POST /_standin/subscriptions/{id}/expire``.
- Faults: the common ``/_standin/faults`` with ``path_prefix`` ``/beta/subscriptions`` (429, 5xx).

Attendance reports (v1.0, GRAPH ``api/meetingattendancereport-list.md``, ``api/attendancerecord-list.md``):

- ``GET /v1.0/users/{organizerId}/onlineMeetings/{meetingId}/attendanceReports`` and
  ``.../attendanceReports/{reportId}/attendanceRecords``: app token with ``OnlineMeetingArtifact.Read.All``
  (403 without), the organizer under an application access policy (403) and owning the meeting (404). A
  report is made when a scripted meeting ends (``end`` step): one record per participant (``identity`` with
  ``id``, ``displayName``; ACS users typed ``azureCommunicationServicesUserIdentity``), ``emailAddress``,
  ``role``, ``attendanceIntervals``. Until it is ready the list answers 404. Pages of ``page_size`` items with
  ``@odata.nextLink`` (``$skiptoken``).
- ``POST /_standin/attendance-reports`` ``{"hold": bool, "page_size": int}``: new reports are held (not ready)
  / page size; ``POST /_standin/attendance-reports/release`` makes every held report ready;
  ``GET /_standin/attendance-reports`` lists them.

Tenant permissions: ``POST /_standin/permissions`` ``{"revoked": ["meetingCallEvents",
"CallRecords.Read.All", "OnlineMeetingArtifact.Read.All"]}`` makes the stand-in answer as Graph does for a
tenant that did not grant them (403 on subscription create, on call records, on attendance reports), whatever
roles the cached token carries; ``GET`` shows them; reset grants all again.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from local.standins.jose import SigningKey
from local.standins.server import HttpError, Request, Response, StandinApp, json_response

MEETING_EVENTS_MAX_MINUTES = 4320
#: "Microsoft Graph Change Tracking", the app the identity platform issues validation tokens to.
GRAPH_CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
#: Lifetime of a validation token (the docs' example: about eight hours).
VALIDATION_TOKEN_TTL = 8 * 3600
_MEETING_RESOURCE = re.compile(r"^/?communications/onlineMeetings\(joinWebUrl='([^']+)'\)/meetingCallEvents$")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Subscription:
    """One subscription as Graph keeps it."""

    id: str
    resource: str
    join_url: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: dt.datetime
    certificate: RSAPublicKey
    certificate_id: str
    thumbprint: str
    client_id: str
    removed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "resource": self.resource, "changeType": self.change_type,
                "notificationUrl": self.notification_url, "lifecycleNotificationUrl": self.lifecycle_url,
                "expirationDateTime": _time(self.expires), "encryptionCertificateId": self.certificate_id,
                "includeResourceData": True, "removed": self.removed, "clientId": self.client_id}


@dataclass
class PresenceState:
    """Subscriptions, rosters per meeting join URL, held notifications, deliveries."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    rosters: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    held: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    #: join URL -> participant key -> {"who", "intervals": [[join, leave | None, [[segment start, quality]]]]}
    attendance: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    call_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: join URL -> its attendance reports (``{"report", "records", "ready"}``), oldest first
    attendance_reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hold_reports: bool = False
    page_size: int = 100
    revoked: set[str] = field(default_factory=set)

    def reset(self) -> None:
        with self.lock:
            self.subscriptions.clear()
            self.rosters.clear()
            self.held.clear()
            self.deliveries.clear()
            self.attendance.clear()
            self.call_records.clear()
            self.attendance_reports.clear()
            self.hold_reports = False
            self.page_size = 100
            self.revoked.clear()


def _time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _error(status: int, code: str, message: str) -> HttpError:
    from local.standins.graph import _graph_error

    return HttpError(_graph_error(status, code, message))


def _check_url(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _error(400, "InvalidRequest", f"{name} is required.")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return value
    raise _error(400, "InvalidRequest", f"{name} must be an https URL.")


def encrypt_for(subscription: Subscription, resource: dict[str, Any]) -> dict[str, Any]:
    """``encryptedContent`` of ``resource`` for the subscription's certificate (as Graph builds it)."""
    key = os.urandom(32)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(resource).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    data = encryptor.update(plain) + encryptor.finalize()
    wrapped = subscription.certificate.encrypt(
        key, asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))  # noqa: S303
    return {"data": base64.b64encode(data).decode(),
            "dataSignature": base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode(),
            "dataKey": base64.b64encode(wrapped).decode(),
            "encryptionCertificateId": subscription.certificate_id,
            "encryptionCertificateThumbprint": subscription.thumbprint}


def _post(url: str, body: Any, verify: Any) -> int:
    try:
        response = requests.post(url, json=body, timeout=15, verify=verify)
    except requests.RequestException:
        return 0
    return response.status_code


DEFAULT_QUALITY = {"audio": {"averageJitter": "PT0.012S", "averagePacketLossRate": 0.004,
                             "averageRoundTripTime": "PT0.045S"},
                   "video": {"averageJitter": "PT0.020S", "averagePacketLossRate": 0.011,
                             "averageRoundTripTime": "PT0.050S", "averageVideoFrameRate": 29.5}}


def _instant(value: str | None) -> dt.datetime:
    if not value:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _attend(attendance: dict[str, dict[str, Any]], key: str, who: dict[str, Any], at: str, quality: Any) -> None:
    """A participant joins (one session of the record): its first segment has ``quality`` (else the quality of
    the participant's previous segment, else :data:`DEFAULT_QUALITY`)."""
    entry = attendance.setdefault(key, {"who": who, "intervals": []})
    if not entry["intervals"] or entry["intervals"][-1][1] is not None:
        entry["intervals"].append([at, None, [[at, quality or _last_quality(entry)]]])


def _reconnect(attendance: dict[str, dict[str, Any]], key: str, at: str, quality: Any) -> None:
    """The participant's media reconnects within its session: a new segment (with ``quality``) from ``at``."""
    entry = attendance.get(key)
    if entry and entry["intervals"] and entry["intervals"][-1][1] is None:
        entry["intervals"][-1][2].append([at, quality or _last_quality(entry)])


def _last_quality(entry: dict[str, Any]) -> dict[str, Any]:
    return entry["intervals"][-1][2][-1][1] if entry["intervals"] else DEFAULT_QUALITY


def _leave(attendance: dict[str, dict[str, Any]], key: str, at: str) -> None:
    entry = attendance.get(key)
    if entry and entry["intervals"] and entry["intervals"][-1][1] is None:
        entry["intervals"][-1][1] = at


def _identity(who: dict[str, Any], tenant: str) -> dict[str, Any]:
    if "user" in who:
        return {"user": {"id": who["user"], "displayName": "Dr Stand-in Clinician", "tenantId": tenant}}
    if "acs" in who:
        return {"acsUser": {"id": who["acs"], "displayName": "Pat Stand-in"}}
    return {"guest": {"id": who.get("guest") or "guest", "displayName": "Guest Stand-in"}}


def _call_record(join_url: str, attendance: dict[str, dict[str, Any]], tenant: str) -> dict[str, Any]:
    """A ``callRecords.callRecord`` of a finished meeting: one session per participant interval, the
    participant as caller, the conference as callee, one segment per media connection of the interval (a
    ``reconnect`` step starts another), each with its own audio and video streams."""
    sessions = []
    starts, ends, participants = [], [], []
    for entry in attendance.values():
        identity = _identity(entry["who"], tenant)
        participants.append({"id": next(iter(identity.values()))["id"]})
        for joined, left, parts in entry["intervals"]:
            starts.append(joined)
            ends.append(left or joined)
            endpoint = {"@odata.type": "#microsoft.graph.callRecords.participantEndpoint", "identity": identity}
            conference = {"@odata.type": "#microsoft.graph.callRecords.serviceEndpoint",
                          "userAgent": {"role": "conferencingServer"}}
            segments = []
            for n, (begun, quality) in enumerate(parts):
                finished = parts[n + 1][0] if n + 1 < len(parts) else (left or joined)
                media = [{"label": f"main-{kind}", "streams": [dict(quality.get(kind) or {},
                                                                    streamId=str(uuid.uuid4()),
                                                                    streamDirection="callerToCallee")]}
                         for kind in ("audio", "video") if quality.get(kind)]
                segments.append({"id": str(uuid.uuid4()), "startDateTime": begun, "endDateTime": finished,
                                 "caller": endpoint, "callee": conference, "media": media})
            sessions.append({"id": str(uuid.uuid4()), "modalities": ["audio", "video"], "startDateTime": joined,
                             "endDateTime": left or joined, "caller": endpoint, "callee": conference,
                             "segments": segments})
    return {"@odata.type": "#microsoft.graph.callRecords.callRecord", "version": 1, "type": "groupCall",
            "modalities": ["audio", "video"], "joinWebUrl": join_url,
            "startDateTime": min(starts) if starts else None, "endDateTime": max(ends) if ends else None,
            "lastModifiedDateTime": _time(dt.datetime.now(dt.UTC)), "participants_v2": participants,
            "sessions": sessions}


def _seconds(joined: str, left: str | None) -> int:
    return int((_instant(left) - _instant(joined)).total_seconds()) if left else 0


def _attendance_report(attendance: dict[str, dict[str, Any]], tenant: str, organizer: str | None) -> dict[str, Any]:
    """A ``meetingAttendanceReport`` of one finished session and its ``attendanceRecord`` objects, with the
    names and e-mail addresses Graph includes (the app must not keep them)."""
    records, joins, leaves = [], [], []
    for key, entry in attendance.items():
        who = entry["who"]
        if "user" in who:
            identity: dict[str, Any] = {"id": who["user"], "displayName": "Dr Stand-in Clinician",
                                        "tenantId": tenant}
            email: str | None = f"clinician.{who['user'][:8]}@stand-in.example"
            role = "Organizer" if who["user"] == organizer else "Presenter"
        elif "acs" in who:
            identity = {"@odata.type": "#microsoft.graph.azureCommunicationServicesUserIdentity", "id": who["acs"],
                        "displayName": "Pat Stand-in", "azureCommunicationServicesResourceId": str(uuid.uuid5(
                            uuid.NAMESPACE_URL, tenant))}
            email, role = None, "Attendee"
        else:
            identity = {"id": who.get("guest") or key, "displayName": "Guest Stand-in", "tenantId": None}
            email, role = None, "Attendee"
        intervals = [{"joinDateTime": joined, "leaveDateTime": left, "durationInSeconds": _seconds(joined, left)}
                     for joined, left, _segments in entry["intervals"]]
        joins.extend(i["joinDateTime"] for i in intervals)
        leaves.extend(i["leaveDateTime"] for i in intervals if i["leaveDateTime"])
        records.append({"id": hashlib.sha256(key.encode()).hexdigest()[:36], "emailAddress": email, "role": role,
                        "totalAttendanceInSeconds": sum(i["durationInSeconds"] for i in intervals),
                        "identity": identity, "attendanceIntervals": intervals})
    report = {"id": str(uuid.uuid4()), "totalParticipantCount": len(records),
              "meetingStartDateTime": min(joins, key=_instant) if joins else None,
              "meetingEndDateTime": max(leaves, key=_instant) if leaves else None}
    return {"report": report, "records": records}


def install(app: StandinApp, graph_state: Any, bearer: Any, ca_verify: Any = True) -> PresenceState:
    """Add the presence routes to the Graph stand-in ``app`` (``bearer(req)`` checks the token)."""
    ps = PresenceState()
    app.on_reset(ps.reset)
    app.presence = ps  # type: ignore[attr-defined]

    def known_meeting(join_url: str) -> bool:
        with graph_state.lock:
            return any(m["joinWebUrl"] == join_url for m in graph_state.meetings.values())

    def validate(url: str) -> None:
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        try:
            answer = requests.post(f"{url}{'&' if '?' in url else '?'}validationToken={urllib.parse.quote(token)}",
                                   data=b"", headers={"Content-Type": "text/plain; charset=utf-8"}, timeout=10,
                                   verify=ca_verify)
        except requests.RequestException as exc:
            raise _error(400, "ValidationError",
                         f"Subscription validation request failed ({type(exc).__name__}).") from None
        if answer.status_code != 200 or answer.text != token:
            raise _error(400, "ValidationError", "Subscription validation request failed. Response must exactly "
                                                 "match validationToken query parameter.")

    def create(req: Request, version: str) -> Response:
        claims = bearer(req)
        roles = set(claims.get("roles") or [])
        with ps.lock:
            revoked = "meetingCallEvents" in ps.revoked
        if revoked or not roles & {"OnlineMeetings.Read.All", "OnlineMeetings.ReadWrite.All"}:
            raise _error(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; Reason: "
                                                "The application does not have permission to subscribe to "
                                                "meetingCallEvents.]")
        body = req.json()
        if not isinstance(body, dict):
            raise _error(400, "InvalidRequest", "A JSON object body is required.")
        resource = body.get("resource")
        match = _MEETING_RESOURCE.match(resource) if isinstance(resource, str) else None
        if match is None:
            raise _error(400, "InvalidRequest", "Resource not supported by this stand-in.")
        if version != "beta":
            raise _error(400, "InvalidRequest", "meetingCallEvents subscriptions are supported on beta only.")
        join_url = urllib.parse.unquote(match.group(1))
        if not known_meeting(join_url):
            raise _error(404, "NotFound", "The online meeting was not found.")
        if not str(body.get("changeType") or ""):
            raise _error(400, "InvalidRequest", "changeType is required.")
        notification_url = _check_url(body.get("notificationUrl"), "notificationUrl")
        lifecycle_url = _check_url(body.get("lifecycleNotificationUrl"), "lifecycleNotificationUrl")
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise _error(400, "InvalidRequest", "clientState must be at most 128 characters.")
        if body.get("includeResourceData") is not True:
            raise _error(400, "InvalidRequest", "includeResourceData must be true for meetingCallEvents.")
        cert_id = body.get("encryptionCertificateId")
        try:
            der = base64.b64decode(str(body.get("encryptionCertificate") or ""), validate=True)
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise _error(400, "InvalidRequest", "encryptionCertificate must be a base64 DER certificate.") from None
        public = cert.public_key()
        if not isinstance(public, RSAPublicKey) or not isinstance(cert_id, str) or not cert_id:
            raise _error(400, "InvalidRequest", "An RSA encryptionCertificate and an encryptionCertificateId are "
                                                "required.")
        try:
            expires = dt.datetime.fromisoformat(str(body.get("expirationDateTime")).replace("Z", "+00:00"))
        except ValueError:
            raise _error(400, "InvalidRequest", "expirationDateTime is not a date-time.") from None
        now = dt.datetime.now(dt.UTC)
        if expires <= now:
            raise _error(400, "InvalidRequest", "Subscription expiration must be in the future.")
        if expires > now + dt.timedelta(minutes=MEETING_EVENTS_MAX_MINUTES):
            raise _error(400, "InvalidRequest", f"Subscription expiration can only be "
                                                f"{MEETING_EVENTS_MAX_MINUTES} minutes in the future.")
        validate(notification_url)
        validate(lifecycle_url)
        sub = Subscription(id=str(uuid.uuid4()), resource=resource, join_url=join_url,  # type: ignore[arg-type]
                           change_type=str(body["changeType"]), notification_url=notification_url,
                           lifecycle_url=lifecycle_url, client_state=client_state, expires=expires,
                           certificate=public, certificate_id=cert_id,
                           thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
                           client_id=str(claims.get("appid") or claims.get("azp") or ""))
        with ps.lock:
            ps.subscriptions[sub.id] = sub
        return json_response({"@odata.context": f"{app.base_url}/{version}/$metadata#subscriptions/$entity",
                              **sub.to_json()}, 201)

    def live(sub_id: str) -> Subscription:
        with ps.lock:
            sub = ps.subscriptions.get(sub_id)
        if sub is None or sub.removed or sub.expires <= dt.datetime.now(dt.UTC):
            raise _error(404, "ResourceNotFound", f"The object was not found. Subscription '{sub_id}'.")
        return sub

    @app.route("POST", r"/(beta|v1\.0)/subscriptions")
    def _create(req: Request, m: re.Match[str]) -> Response:
        return create(req, m.group(1))

    @app.route(("PATCH", "DELETE"), r"/(beta|v1\.0)/subscriptions/([^/]+)")
    def _one(req: Request, m: re.Match[str]) -> Response:
        bearer(req)
        sub = live(m.group(2))
        if req.method == "DELETE":
            with ps.lock:
                ps.subscriptions.pop(sub.id, None)
            return Response(204)
        body = req.json()
        try:
            expires = dt.datetime.fromisoformat(str((body or {}).get("expirationDateTime")).replace("Z", "+00:00"))
        except ValueError:
            raise _error(400, "InvalidRequest", "expirationDateTime is not a date-time.") from None
        now = dt.datetime.now(dt.UTC)
        if not now < expires <= now + dt.timedelta(minutes=MEETING_EVENTS_MAX_MINUTES):
            raise _error(400, "InvalidRequest", "Subscription expiration is out of range.")
        with ps.lock:
            sub.expires = expires
        return json_response(sub.to_json())

    # ---- notifications --------------------------------------------------------------------------
    def validation_token(audience: str, *, claims: dict[str, Any] | None = None, remove: Any = (),
                         signer: str = "published") -> str:
        """A validation token as the identity platform issues it to Graph change tracking for ``audience``
        (claims as in the docs' example), with ``claims`` overriding and ``remove`` dropping some; ``signer``
        ``unpublished`` signs with a key nobody publishes (a forgery), ``unpublished_same_kid`` does too but
        claims the published key's ``kid``."""
        now = int(dt.datetime.now(dt.UTC).timestamp())
        issuer = f"https://sts.windows.net/{graph_state.tenant}/"
        body: dict[str, Any] = {
            "aud": audience, "iss": issuer, "iat": now, "nbf": now, "exp": now + VALIDATION_TOKEN_TTL,
            "aio": base64.b64encode(os.urandom(24)).decode(), "appid": GRAPH_CHANGE_TRACKING_APP_ID,
            "appidacr": "2", "idp": issuer, "tid": graph_state.tenant,
            "uti": base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="), "ver": "1.0"}
        body.update(claims or {})
        for name in remove or ():
            body.pop(name, None)
        if signer == "published":
            return graph_state.key.sign(body)
        forger = SigningKey()
        return forger.sign(body, {"kid": graph_state.key.kid} if signer == "unpublished_same_kid" else None)

    @app.route("POST", r"/_standin/validation-tokens")
    def _validation_tokens(req: Request, m: re.Match[str]) -> Response:
        """``{"aud"?, "claims"?, "remove"?, "signer"?}`` -> ``{"token"}`` (see :func:`validation_token`); ``aud``
        defaults to the one registered app."""
        body = req.json() or {}
        audience = body.get("aud")
        if audience is None:
            with graph_state.lock:
                apps = list(graph_state.apps)
            if len(apps) != 1:
                return json_response({"error": "aud is required unless exactly one app is registered"}, 400)
            audience = apps[0]
        if body.get("signer", "published") not in ("published", "unpublished", "unpublished_same_kid"):
            return json_response({"error": "signer must be published, unpublished or unpublished_same_kid"}, 400)
        return json_response({"token": validation_token(str(audience), claims=body.get("claims"),
                                                        remove=body.get("remove") or (),
                                                        signer=body.get("signer", "published"))})

    def envelope(sub: Subscription, call_event: dict[str, Any]) -> dict[str, Any]:
        resource = f"communications/onlineMeetings('{uuid.uuid4()}')/meetingCallEvents('{call_event['id']}')"
        return {"value": [{
            "subscriptionId": sub.id, "subscriptionExpirationDateTime": _time(sub.expires),
            "changeType": "created", "clientState": sub.client_state, "resource": resource,
            "resourceData": {"@odata.type": "#microsoft.graph.callEvent", "@odata.id": resource,
                             "id": call_event["id"]},
            "tenantId": graph_state.tenant,
            "encryptedContent": encrypt_for(sub, call_event)}],
            "validationTokens": [validation_token(sub.client_id)]}

    def deliver(sub: Subscription, call_event: dict[str, Any]) -> int:
        status = _post(sub.notification_url, envelope(sub, call_event), ca_verify)
        with ps.lock:
            ps.deliveries.append({"subscriptionId": sub.id, "callEventType": call_event["callEventType"],
                                  "status": status})
        return status

    def participant_json(key: str, who: dict[str, Any], lobby: bool) -> dict[str, Any]:
        identity: dict[str, Any]
        if "user" in who:
            identity = {"user": {"id": who["user"], "displayName": "Dr Stand-in Clinician",
                                 "tenantId": graph_state.tenant, "identityProvider": "AAD"}}
        elif "acs" in who:
            identity = {"azureCommunicationServicesUser": {"id": who["acs"], "displayName": "Pat Stand-in"}}
        else:
            identity = {"guest": {"id": who.get("guest") or key, "displayName": "Guest Stand-in"}}
        return {"@odata.type": "#microsoft.graph.participant", "id": hashlib.sha256(key.encode()).hexdigest()[:36],
                "isInLobby": lobby, "isMuted": False, "info": {"identity": identity}}

    @app.route("POST", r"/_standin/call-events")
    def _call_events(req: Request, m: re.Match[str]) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("joinWebUrl"), str):
            return json_response({"error": "joinWebUrl and steps are required"}, 400)
        join_url = body["joinWebUrl"]
        delivery = body.get("delivery", "normal")
        results = []
        for step in body.get("steps") or []:
            action = step.get("action")
            who = step.get("participant") or {}
            key = json.dumps(who, sort_keys=True)
            at = step.get("at") or _time(dt.datetime.now(dt.UTC))
            with ps.lock:
                roster = ps.rosters.setdefault(join_url, {})
                attendance = ps.attendance.setdefault(join_url, {})
                if action == "join":
                    roster[key] = {"who": who, "lobby": bool(step.get("lobby"))}
                    if not step.get("lobby"):
                        _attend(attendance, key, who, at, step.get("quality"))
                elif action == "admit" and key in roster:
                    roster[key]["lobby"] = False
                    _attend(attendance, key, who, at, step.get("quality"))
                elif action == "reconnect":
                    _reconnect(attendance, key, at, step.get("quality"))
                elif action == "leave":
                    roster.pop(key, None)
                    _leave(attendance, key, at)
                elif action == "end":
                    roster.clear()
                    for k in list(attendance):
                        _leave(attendance, k, at)
                    ps.call_records[str(uuid.uuid4())] = _call_record(join_url, attendance, graph_state.tenant)
                    if attendance:
                        made = _attendance_report(attendance, graph_state.tenant, organizer_of(join_url))
                        ps.attendance_reports.setdefault(join_url, []).append(dict(made, ready=not ps.hold_reports))
                    ps.attendance.pop(join_url, None)
                elif action != "start":
                    return json_response({"error": f"unknown action {action!r}"}, 400)
                kind = {"start": "callStarted", "end": "callEnded"}.get(action, "rosterUpdated")
                call_event = {"@odata.type": "#microsoft.graph.callEvent", "id": str(uuid.uuid4()),
                              "callEventType": kind, "eventDateTime": at,
                              "participants": [participant_json(k, v["who"], v["lobby"]) for k, v in roster.items()]}
                targets = [s for s in ps.subscriptions.values() if s.join_url == join_url and not s.removed]
            for sub in targets:
                if delivery == "hold":
                    with ps.lock:
                        ps.held.append((sub.id, call_event))
                    results.append({"held": call_event["id"]})
                elif delivery == "drop":
                    results.append({"dropped": call_event["id"]})
                else:
                    results.append({"status": deliver(sub, call_event)})
                    if delivery == "duplicate":
                        results.append({"status": deliver(sub, call_event)})
        return json_response({"deliveries": results, "subscriptions": len({r.get("status") for r in results})})

    # ---- call records (v1.0, CallRecords.Read.All) ---------------------------------------------------
    def records_reader(req: Request) -> None:
        claims = bearer(req)
        with ps.lock:
            revoked = "CallRecords.Read.All" in ps.revoked
        if claims.get("idtyp") != "app" or "CallRecords.Read.All" not in claims.get("roles", []) or revoked:
            raise _error(403, "Forbidden", "CallRecords.Read.All application permission is required.")

    # ---- attendance reports (v1.0, OnlineMeetingArtifact.Read.All + application access policy) ----------
    def organizer_of(join_url: str) -> str | None:
        with graph_state.lock:
            meeting = next((mt for mt in graph_state.meetings.values() if mt["joinWebUrl"] == join_url), None)
            return graph_state.meeting_owner.get(meeting["id"]) if meeting else None

    def artifacts_reader(req: Request, user_ref: str, meeting_id: str) -> str:
        """The meeting's join URL once the caller may read its artifacts."""
        claims = bearer(req)
        with ps.lock:
            revoked = "OnlineMeetingArtifact.Read.All" in ps.revoked
        if claims.get("idtyp") != "app" or "OnlineMeetingArtifact.Read.All" not in claims.get("roles", []) \
                or revoked:
            raise _error(403, "Forbidden", "OnlineMeetingArtifact.Read.All application permission is required.")
        with graph_state.lock:
            user = graph_state.users.get(user_ref)
            meeting = graph_state.meetings.get(meeting_id)
            owner = graph_state.meeting_owner.get(meeting_id)
        if user is None:
            raise _error(404, "NotFound", f"User '{user_ref}' was not found.")
        if not user.policy:
            raise _error(403, "Forbidden", f"Application is not allowed to perform operations on the user "
                                           f"'{user.id}' , neither is allowed access through RSC permission "
                                           "evaluation.")
        if meeting is None or owner != user.id:
            raise _error(404, "NotFound", "The meeting was not found.")
        return str(meeting["joinWebUrl"])

    def page(req: Request, items: list[dict[str, Any]], context: str) -> Response:
        try:
            offset = int(req.arg("$skiptoken") or 0)
        except ValueError:
            raise _error(400, "BadRequest", "Invalid $skiptoken.") from None
        with ps.lock:
            size = ps.page_size
        body: dict[str, Any] = {"@odata.context": f"{app.base_url}/v1.0/$metadata#{context}",
                                "value": items[offset:offset + size]}
        if offset + size < len(items):
            body["@odata.nextLink"] = f"{app.base_url}{req.path}?$skiptoken={offset + size}"
        return json_response(body)

    @app.route("GET", r"/v1\.0/users/([^/]+)/onlineMeetings/([^/]+)/attendanceReports")
    def _attendance_reports(req: Request, m: re.Match[str]) -> Response:
        join_url = artifacts_reader(req, urllib.parse.unquote(m.group(1)), urllib.parse.unquote(m.group(2)))
        with ps.lock:
            ready = [dict(r["report"]) for r in ps.attendance_reports.get(join_url, []) if r["ready"]]
        if not ready:
            raise _error(404, "NotFound", "The attendance report is not available yet.")
        return page(req, ready[-50:], "attendanceReports")

    @app.route("GET", r"/v1\.0/users/([^/]+)/onlineMeetings/([^/]+)/attendanceReports/([^/]+)/attendanceRecords")
    def _attendance_records(req: Request, m: re.Match[str]) -> Response:
        join_url = artifacts_reader(req, urllib.parse.unquote(m.group(1)), urllib.parse.unquote(m.group(2)))
        with ps.lock:
            found = next((r for r in ps.attendance_reports.get(join_url, [])
                          if r["ready"] and r["report"]["id"] == m.group(3)), None)
        if found is None:
            raise _error(404, "NotFound", "The attendance report was not found.")
        return page(req, [dict(r) for r in found["records"]], "attendanceRecords")

    @app.route(("GET", "POST"), r"/_standin/attendance-reports")
    def _reports_control(req: Request, m: re.Match[str]) -> Response:
        if req.method == "POST":
            body = req.json() or {}
            with ps.lock:
                if "hold" in body:
                    ps.hold_reports = bool(body["hold"])
                if "page_size" in body:
                    ps.page_size = max(1, int(body["page_size"]))
        with ps.lock:
            return json_response({"hold": ps.hold_reports, "page_size": ps.page_size,
                                  "reports": {url: [dict(r["report"], ready=r["ready"]) for r in reports]
                                              for url, reports in ps.attendance_reports.items()}})

    @app.route("POST", r"/_standin/attendance-reports/release")
    def _reports_release(req: Request, m: re.Match[str]) -> Response:
        with ps.lock:
            released = 0
            for reports in ps.attendance_reports.values():
                for report in reports:
                    released += not report["ready"]
                    report["ready"] = True
        return json_response({"released": released})

    @app.route(("GET", "POST"), r"/_standin/permissions")
    def _permissions(req: Request, m: re.Match[str]) -> Response:
        if req.method == "POST":
            revoked = (req.json() or {}).get("revoked") or []
            known = {"meetingCallEvents", "CallRecords.Read.All", "OnlineMeetingArtifact.Read.All"}
            if not isinstance(revoked, list) or not set(revoked) <= known:
                return json_response({"error": f"revoked must be a list of {sorted(known)}"}, 400)
            with ps.lock:
                ps.revoked = set(revoked)
        with ps.lock:
            return json_response({"revoked": sorted(ps.revoked)})

    @app.route("GET", r"/v1\.0/communications/callRecords")
    def _list_records(req: Request, m: re.Match[str]) -> Response:
        records_reader(req)
        text = req.arg("$filter") or ""
        participant = re.search(r"participants_v2/any\(p:p/id eq '([^']+)'\)", text)
        since = re.search(r"startDateTime ge ([0-9T:.\-]+Z?)", text)
        until = re.search(r"startDateTime le ([0-9T:.\-]+Z?)", text)
        leftover = re.sub(r"participants_v2/any\(p:p/id eq '[^']+'\)|startDateTime (ge|le|lt|gt) [0-9T:.\-]+Z?|"
                          r"\band\b|\s", "", text)
        if leftover:
            raise _error(400, "BadRequest", "Only startDateTime and participants_v2/id filters are supported.")
        with ps.lock:
            found = [dict({k: v for k, v in r.items() if k not in ("sessions", "participants_v2")}, id=rid)
                     for rid, r in ps.call_records.items()
                     if (not participant or any(p["id"] == participant.group(1) for p in r["participants_v2"]))
                     and (not since or _instant(r["startDateTime"]) >= _instant(since.group(1)))
                     and (not until or _instant(r["startDateTime"]) <= _instant(until.group(1)))]
        return json_response({"@odata.context": f"{app.base_url}/v1.0/$metadata#communications/callRecords",
                              "value": found})

    @app.route("GET", r"/v1\.0/communications/callRecords/([^/?]+)")
    def _get_record(req: Request, m: re.Match[str]) -> Response:
        records_reader(req)
        with ps.lock:
            record = ps.call_records.get(m.group(1))
        if record is None:
            raise _error(404, "NotFound", "The call record was not found.")
        body = dict(record, id=m.group(1))
        if "sessions" not in (req.arg("$expand") or ""):
            body.pop("sessions")
        body.pop("participants_v2")
        return json_response(body)

    @app.route("POST", r"/_standin/call-events/release")
    def _release(req: Request, m: re.Match[str]) -> Response:
        body = req.json() or {}
        with ps.lock:
            held, ps.held = list(ps.held), []
        if body.get("order") == "reverse":
            held.reverse()
        statuses = []
        for sub_id, call_event in held:
            with ps.lock:
                sub = ps.subscriptions.get(sub_id)
            if sub is not None:
                statuses.append(deliver(sub, call_event))
        return json_response({"statuses": statuses})

    @app.route("POST", r"/_standin/notifications/raw")
    def _raw(req: Request, m: re.Match[str]) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return json_response({"error": "url and body are required"}, 400)
        return json_response({"status": _post(body["url"], body.get("body"), ca_verify)})

    @app.route("POST", r"/_standin/notifications/sealed")
    def _sealed(req: Request, m: re.Match[str]) -> Response:
        """Encrypt ``callEvent`` for subscription ``subscriptionId`` and return the envelope (not delivered),
        so a test can tamper with it before posting it through ``/raw``."""
        body = req.json() or {}
        with ps.lock:
            sub = ps.subscriptions.get(str(body.get("subscriptionId")))
        if sub is None:
            return json_response({"error": "unknown subscription"}, 404)
        return json_response(envelope(sub, body.get("callEvent") or {}))

    @app.route("GET", r"/_standin/subscriptions")
    def _list(req: Request, m: re.Match[str]) -> Response:
        with ps.lock:
            return json_response([s.to_json() for s in ps.subscriptions.values()])

    @app.route("POST", r"/_standin/subscriptions/([^/]+)/(lifecycle|expire)")
    def _lifecycle(req: Request, m: re.Match[str]) -> Response:
        with ps.lock:
            sub = ps.subscriptions.get(m.group(1))
        if sub is None:
            return json_response({"error": "unknown subscription"}, 404)
        if m.group(2) == "expire":
            with ps.lock:
                sub.expires = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            return json_response(sub.to_json())
        event = (req.json() or {}).get("event")
        if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
            return json_response({"error": "event must be reauthorizationRequired, subscriptionRemoved or missed"},
                                 400)
        if event == "subscriptionRemoved":
            with ps.lock:
                sub.removed = True
        body = {"value": [{"lifecycleEvent": event, "subscriptionId": sub.id, "clientState": sub.client_state,
                           "subscriptionExpirationDateTime": _time(sub.expires), "tenantId": graph_state.tenant,
                           "resource": sub.resource, "organizationId": graph_state.tenant}]}
        return json_response({"status": _post(sub.lifecycle_url or sub.notification_url, body, ca_verify)})

    return ps
