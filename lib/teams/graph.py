"""Microsoft Graph: one Teams meeting per visit, created with ``onlineMeetings/createOrGet``.

App-only: MSAL ``ConfidentialClientApplication`` with a certificate credential (``GRAPH_CLIENT_CERT_FILE``:
private key + certificate in one PEM) gets a token for ``https://graph.microsoft.com/.default``; MSAL caches
it in memory until shortly before expiry. Graph's ``createOrGet`` is idempotent per (tenant, organizer,
``externalId``): 201 the first time, 200 with the same meeting afterwards (GRAPH
``api-reference/v1.0/api/onlinemeeting-createorget.md``). App-only calls also need an application access
policy granted to the organizer (GRAPH ``cloud-communication-online-meeting-application-access-policy.md``).

``externalId`` (:func:`meeting_external_id`): ``vv1-`` + the first 40 hex digits of
SHA-256(``"{environmentId}|{appointmentId}"``): stable for a visit, opaque (the CSN is not readable from it),
and distinct across environments. Never change the derivation for existing visits: a new ID means a second
meeting.

The organizer is chosen by an :class:`OrganizerResolver`: the app uses
:class:`lib.teams.organizers.DirectoryOrganizerResolver` (the clinician's Entra object ID from the one-time
Microsoft 365 sign-in, else the department's or the environment's fallback organizer).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import requests

from lib.models import Appointment, EnvironmentConfig, Meeting
from lib.smart.errors import LaunchError
from lib.smart.transport import HttpClient, TransportError, json_or_none, retry_after_seconds

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
PUBLIC_CLOUD_AUTHORITY_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
})
#: Errors of MSAL's HTTP calls (``requests`` errors are ``OSError`` subclasses: not a missing certificate file).
_REQUEST_ERRORS = (requests.RequestException,)
#: Subject of every meeting: no patient name, no visit type (Teams shows it to all participants).
MEETING_SUBJECT = "Video visit"
#: Graph answers evolvable enum members (lobby scope ``organizationExcludingGuests``) only to callers that say
#: they know them; without it such a scope is refused.
PREFER_ENUMS = "include-unknown-enum-members"


def lobby_bypass(scope: str) -> dict[str, Any]:
    """Graph ``lobbyBypassSettings``: who skips the lobby (by default ``organization``: a second clinician, the
    staff interpreter, the tenant's Entra guests); anonymous guests (the patient, family joining from the link)
    and dial-in callers always wait until someone admits them."""
    return {"scope": scope, "isDialInBypassEnabled": False}


def _lobby_scope(doc: Any) -> str | None:
    settings = doc.get("lobbyBypassSettings") if isinstance(doc, dict) else None
    scope = settings.get("scope") if isinstance(settings, dict) else None
    return scope if isinstance(scope, str) else None


def meeting_external_id(environment_id: str, appointment_id: str) -> str:
    """The Graph ``externalId`` of a visit: ``vv1-`` + 40 hex digits of SHA-256(``env|appointment``)."""
    digest = hashlib.sha256(f"{environment_id}|{appointment_id}".encode()).hexdigest()
    return "vv1-" + digest[:40]


class GraphTokenSource(Protocol):
    """Something that returns a valid app-only Graph access token."""

    def token(self) -> str:
        """An access token for :data:`GRAPH_SCOPE`.

        Raises:
            LaunchError: ``GRAPH_AUTH_FAILED`` / ``GRAPH_CONSENT_MISSING`` / ``GRAPH_UNAVAILABLE``.
        """
        ...


def _verifying_session(verify: bool | str) -> Any:
    """A ``requests.Session`` that sends ``verify`` with every request.

    ``requests`` lets an exported ``REQUESTS_CA_BUNDLE`` override ``Session.verify`` when a call passes no
    ``verify`` of its own (as MSAL's calls do), which would make MSAL ignore the CA we were configured with.
    """
    import requests

    class Session(requests.Session):
        def request(self, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs.setdefault("verify", verify)
            return super().request(method, url, **kwargs)

    session = Session()
    session.verify = verify
    return session


class MsalCertificateTokenSource:
    """App-only tokens from Entra ID with MSAL and a certificate credential (built on first use).

    Args:
        authority_host: e.g. ``https://login.microsoftonline.com`` (or the local stand-in).
        tenant_id, client_id: the app registration.
        cert_file: PEM with the private key and the certificate (locally), or
        cert_pem: the same PEM as bytes (``GRAPH_CLIENT_CERT`` from Key Vault in Azure); wins when given.
        verify: ``Settings.tls_verify`` for MSAL's HTTP session.
    """

    def __init__(self, *, authority_host: str, tenant_id: str, client_id: str, cert_file: Path | None = None,
                 cert_pem: bytes | None = None, verify: bool | str = True) -> None:
        if cert_file is None and cert_pem is None:
            raise ValueError("give cert_file or cert_pem")
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._client_id = client_id
        self._cert_file = cert_file
        self._cert_pem = cert_pem
        self._verify = verify
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        import msal
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        pem = self._cert_pem if self._cert_pem is not None else self._cert_file.read_bytes()  # type: ignore[union-attr]
        start = pem.find(b"-----BEGIN CERTIFICATE-----")
        if start < 0:
            raise LaunchError("GRAPH_NOT_CONFIGURED", "GRAPH_CLIENT_CERT(_FILE) holds no certificate.")
        cert = x509.load_pem_x509_certificate(pem[start:])
        session = _verifying_session(self._verify)
        host = urllib.parse.urlsplit(self._authority).hostname or ""
        return msal.ConfidentialClientApplication(
            self._client_id,
            authority=self._authority,
            client_credential={
                "private_key": pem.decode(),
                "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - x5t is SHA-1 by definition
            },
            http_client=session,
            instance_discovery=host in PUBLIC_CLOUD_AUTHORITY_HOSTS,
        )

    def application(self) -> Any:
        """The MSAL ``ConfidentialClientApplication`` (built on first use; shared with the clinician sign-in).

        Raises:
            LaunchError: ``GRAPH_NOT_CONFIGURED`` / ``GRAPH_UNAVAILABLE``.
        """
        with self._lock:
            if self._app is None:
                self._app = self._build_classified()
            return self._app

    def new_application(self) -> Any:
        """A separate MSAL application with its own token cache and client assertion (one clinician sign-in:
        its delegated tokens never share a cache with the app-only token).

        Raises:
            LaunchError: ``GRAPH_NOT_CONFIGURED`` / ``GRAPH_UNAVAILABLE``.
        """
        return self._build_classified()

    def _build_classified(self) -> Any:
        """:meth:`_build` with its failures turned into the admin-facing ``LaunchError`` codes."""
        try:
            return self._build()
        except LaunchError:
            raise
        except _REQUEST_ERRORS as exc:  # an OSError too: classify before the file errors
            raise LaunchError("GRAPH_UNAVAILABLE", f"Entra ID is unreachable ({type(exc).__name__}).") from exc
        except (OSError, ValueError) as exc:
            raise LaunchError("GRAPH_NOT_CONFIGURED", "GRAPH_CLIENT_CERT(_FILE) cannot be read.") from exc
        except Exception as exc:  # MSAL fetches the authority's metadata while building
            raise LaunchError("GRAPH_UNAVAILABLE", f"Entra ID discovery failed ({type(exc).__name__}).") from exc

    def token(self) -> str:
        """An app-only token (from MSAL's in-memory cache while valid)."""
        with self._lock:
            if self._app is None:
                self._app = self._build_classified()
            app = self._app
        try:
            result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except Exception as exc:  # requests errors surface from MSAL unchanged
            raise LaunchError("GRAPH_UNAVAILABLE", f"Entra ID is unreachable ({type(exc).__name__}).") from exc
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error") or "unknown")
        codes = result.get("error_codes") or []
        if 65001 in codes or error == "consent_required":
            raise LaunchError("GRAPH_CONSENT_MISSING")
        raise LaunchError("GRAPH_AUTH_FAILED", f"Entra ID refused the certificate credential ('{error}', "
                                               f"AADSTS codes {codes}). Check the certificate uploaded to "
                                               "the app registration and the tenant ID.")


class GraphCaller:
    """What every Graph client of this app holds: the base URL, the app-only token source and the HTTP client.

    Args:
        base_url: ``Settings.graph_base_url`` (v1.0), or the beta base where a client says so.
        tokens: app-only token source.
        http: outbound HTTP client.
    """

    def __init__(self, *, base_url: str, tokens: GraphTokenSource, http: HttpClient) -> None:
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._http = http


class GraphClient(GraphCaller):
    """The Graph calls of this app.

    Args:
        base_url: ``Settings.graph_base_url`` (with ``/v1.0``).
        tokens: app-only token source.
        http: outbound HTTP client.
    """


    def create_or_get_meeting(
        self,
        organizer_id: str,
        external_id: str,
        subject: str = MEETING_SUBJECT,
        start: datetime | None = None,
        end: datetime | None = None,
        lobby_scope: str = "organization",
    ) -> Meeting:
        """Create the organizer's meeting with ``external_id``, or get it when it exists (unchanged: the
        returned meeting's ``lobby_scope`` is the one it has, which may differ from ``lobby_scope``).

        Patients wait in the lobby (:func:`lobby_bypass`). ``start``/``end`` (aware)
        are sent only together (Graph rejects an end without a start); without them Graph uses now + 1 h.

        Raises:
            LaunchError: ``GRAPH_THROTTLED`` (429, ``retry_after`` set), ``GRAPH_ACCESS_POLICY_MISSING``
                (403), ``GRAPH_CONSENT_MISSING`` (401), ``GRAPH_ORGANIZER_NOT_FOUND`` (404),
                ``GRAPH_UNAVAILABLE`` (5xx, no answer, unusable body), ``GRAPH_AUTH_FAILED``.
        """
        body: dict[str, Any] = {
            "externalId": external_id,
            "subject": subject,
            "lobbyBypassSettings": lobby_bypass(lobby_scope),
        }
        if start is not None and end is not None and end > start:
            body["startDateTime"] = _graph_time(start)
            body["endDateTime"] = _graph_time(end)
        url = f"{self._base}/users/{urllib.parse.quote(organizer_id, safe='')}/onlineMeetings/createOrGet"
        headers = {"Authorization": f"Bearer {self._tokens.token()}", "Content-Type": "application/json",
                   "Accept": "application/json", "Prefer": PREFER_ENUMS}
        try:
            response = self._http.post(url, json=body, headers=headers)
        except TransportError as exc:
            raise LaunchError("GRAPH_UNAVAILABLE", f"Microsoft Graph is unreachable ({exc.kind}).") from exc
        status = response.status_code
        if status in (200, 201):
            doc = json_or_none(response)
            join_url = doc.get("joinWebUrl") if isinstance(doc, dict) else None
            meeting_id = doc.get("id") if isinstance(doc, dict) else None
            if not isinstance(join_url, str) or not join_url.startswith("https://") or not meeting_id:
                raise LaunchError("GRAPH_UNAVAILABLE", "Microsoft Graph returned a meeting without an https "
                                                       "joinWebUrl.")
            log.info("graph createOrGet outcome=%s", "created" if status == 201 else "existing")
            return Meeting(id=str(meeting_id), join_url=join_url, organizer_id=organizer_id, external_id=external_id,
                           lobby_scope=_lobby_scope(doc))
        raise graph_error(status, response.headers.get("Retry-After"))

    def update_lobby(self, organizer_id: str, meeting_id: str, scope: str) -> str:
        """Set who skips the meeting's lobby (``PATCH /users/{organizer}/onlineMeetings/{id}`` with
        ``lobbyBypassSettings``; the same value twice changes nothing). Returns the scope the meeting now has.

        Raises:
            LaunchError: ``GRAPH_THROTTLED`` (``retry_after``), ``GRAPH_UNAVAILABLE``, ``GRAPH_*`` refusals.
        """
        url = (f"{self._base}/users/{urllib.parse.quote(organizer_id, safe='')}/onlineMeetings/"
               f"{urllib.parse.quote(meeting_id, safe='')}")
        headers = {"Authorization": f"Bearer {self._tokens.token()}", "Content-Type": "application/json",
                   "Accept": "application/json", "Prefer": PREFER_ENUMS}
        try:
            response = self._http.request("PATCH", url, json={"lobbyBypassSettings": lobby_bypass(scope)},
                                          headers=headers)
        except TransportError as exc:
            raise LaunchError("GRAPH_UNAVAILABLE", f"Microsoft Graph is unreachable ({exc.kind}).") from exc
        if response.status_code == 204:
            return scope
        if response.status_code == 200:
            return _lobby_scope(json_or_none(response)) or scope
        raise graph_error(response.status_code, response.headers.get("Retry-After"))


def graph_error(status: int, retry_after: str | None = None) -> LaunchError:
    """The :class:`LaunchError` for a failed Graph call with HTTP ``status``."""
    if status == 429:
        return LaunchError("GRAPH_THROTTLED", retry_after=retry_after_seconds(retry_after))
    if status == 401:
        return LaunchError("GRAPH_CONSENT_MISSING")
    if status == 403:
        return LaunchError("GRAPH_ACCESS_POLICY_MISSING")
    if status == 404:
        return LaunchError("GRAPH_ORGANIZER_NOT_FOUND")
    return LaunchError("GRAPH_UNAVAILABLE", f"Microsoft Graph answered HTTP {status}.")


def _graph_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OrganizerResolver(Protocol):
    """Chooses the Entra object ID that organizes the meeting of a visit (the seam for provider sign-in)."""

    def organizer_for(self, environment: EnvironmentConfig, appointment: Appointment,
                      ehr_user_id: str | None = None, department: str | None = None) -> str:
        """The organizer's Entra object ID (``department``: the launch URL's ``departmentId`` hint).

        Raises:
            LaunchError: ``ORGANIZER_MISSING`` when nobody can organize it.
        """
        ...


@dataclass
class FallbackOrganizerResolver:
    """Every meeting is organized by the department's or the environment's fallback organizer (no sign-in)."""

    def organizer_for(self, environment: EnvironmentConfig, appointment: Appointment,
                      ehr_user_id: str | None = None, department: str | None = None) -> str:
        """``environment.department_organizers[department]``, else ``environment.fallback_organizer_id``.

        Raises:
            LaunchError: ``ORGANIZER_MISSING`` when it is not configured.
        """
        from lib.teams.organizers import fallback_organizer

        return fallback_organizer(environment, appointment.department or department)
