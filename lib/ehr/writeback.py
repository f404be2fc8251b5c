"""Epic write-back: ``SetExternalConnectionStatus`` (Telehealth / Context Linking web service, 2018 version).

``GET {interconnect}/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus`` with the query
parameters ``ConferenceID`` (the CSN), ``ExternalID`` (the participant: the clinician's EHR user ID, or the
literal ``patient``), ``ExternalIDType``, ``VendorName`` (``EnvironmentConfig.writeback_vendor_name``) and
``ConnectionStatus``; headers ``Epic-Client-ID`` (required since Feb 2019) and a bearer token from a SMART
Backend Services ``client_credentials`` grant signed with the same ``private_key_jwt`` keys as the launch
(backend-services.html). The token is cached until 60 s before it expires.

**Assumptions (the value lists are not public, see protocols.md "Open questions" 3 and 4):** ``ConnectionStatus``
defaults ``1`` = connected and ``2`` = disconnected; device-test results as ``3`` = device test passed and
``4`` = device test failed (no public Epic API for device tests was found; a customer's Epic TS may map them to
a flowsheet instead); ``ExternalIDType`` ``2`` (the value of the one public sample). The codes come from the
environment's configuration (``EnvironmentConfig.writeback_status_codes`` over
:data:`lib.models.DEFAULT_WRITEBACK_STATUS_CODES`), so a customer's Epic TS corrects them per environment.
The Interconnect base is the FHIR base URL without its ``/api/FHIR/...`` suffix (Epic serves both from the
same Interconnect).

Errors are classified for the queue: :class:`TransientWritebackError` (no answer, 408/429/5xx, OAuth server
down) makes the message retry; :class:`PermanentWritebackError` (other 4xx, refused credentials,
``Success: false``) will not get better by retrying. Both carry Epic's own reason when it sent one
(``detail``: its ``Message``/``Error``/OperationOutcome text, at most 200 characters, stored for the operator
and never logged); a transient error carries ``retry_after`` (seconds) from Epic's ``Retry-After``, and
``ambiguous`` when the request may have reached Epic (a read time-out, not a connect time-out): the caller
decides what to do with such an outcome (``lib/visits/writeback.py``: never resent blindly).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from lib.clock import Clock
from lib.models import DEFAULT_WRITEBACK_STATUS_CODES, EnvironmentConfig
from lib.smart.discovery import SmartDiscovery
from lib.smart.errors import LaunchError
from lib.smart.keys import SmartKeys
from lib.smart.token import request_backend_token
from lib.smart.transport import HttpClient, TransportError, json_or_none

log = logging.getLogger(__name__)

WRITEBACK_PATH = "/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus"
#: Default ConnectionStatus codes per event type (the event types that are written back).
CONNECTION_STATUS: dict[str, str] = DEFAULT_WRITEBACK_STATUS_CODES
#: ExternalIDType sent with every call (assumption: the public sample's value).
EXTERNAL_ID_TYPE = "2"
BACKEND_SCOPE = "system/Appointment.read"
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_LAUNCH_CODES = frozenset({"EPIC_UNAVAILABLE", "DISCOVERY_FAILED"})
_FHIR_SUFFIX = re.compile(r"/api/FHIR/[^/]+/?$", re.IGNORECASE)


class WritebackError(Exception):
    """Write-back failed. ``reason`` is a short code safe to store and log (no PHI, no token)."""

    transient = False

    def __init__(self, reason: str, *, detail: str | None = None, retry_after: float | None = None,
                 ambiguous: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class TransientWritebackError(WritebackError):
    """May succeed later: let the queue retry."""

    transient = True


class PermanentWritebackError(WritebackError):
    """Will not succeed by retrying: record the failure."""


def interconnect_base(fhir_base_url: str) -> str:
    """The Interconnect base of a FHIR base URL: ``https://h/ic/api/FHIR/R4`` -> ``https://h/ic``."""
    base = _FHIR_SUFFIX.sub("", fhir_base_url.rstrip("/"))
    return base.rstrip("/")


class EpicWritebackClient:
    """Calls ``SetExternalConnectionStatus`` with a cached backend token.

    Args:
        http: outbound HTTP client.
        discovery: SMART discovery (gives the token endpoint of the environment's FHIR base URL).
        keys: our ``private_key_jwt`` keys of an environment kind (``keys("production")``).
        clock: real time for the client assertion (Epic checks ``iat``/``exp`` against its own clock).
        monotonic: token cache clock (tests).
    """

    def __init__(self, *, http: HttpClient, discovery: SmartDiscovery, keys: Callable[[str], SmartKeys], clock: Clock,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._discovery = discovery
        self._keys = keys
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], tuple[float, str]] = {}

    def set_connection_status(self, environment: EnvironmentConfig, *, conference_id: str, external_id: str,
                              status: str, fhir_base_url: str | None = None) -> None:
        """Tell Epic that participant ``external_id`` of visit ``conference_id`` is ``status``.

        Args:
            environment: the environment (client ID, vendor name, FHIR base URLs).
            conference_id: the CSN.
            external_id: the clinician's EHR user ID, or ``patient``.
            status: a key of :data:`CONNECTION_STATUS` (``connected``, ``disconnected``, ``device_test_*``).
            fhir_base_url: which approved FHIR base URL to use (default: the environment's first).

        Raises:
            TransientWritebackError, PermanentWritebackError.
        """
        code = environment.status_code(status)
        if code is None:
            raise PermanentWritebackError("unsupported_status")
        if not environment.fhir_base_urls:
            raise PermanentWritebackError("no_fhir_base_url")
        fhir_base = fhir_base_url or environment.fhir_base_urls[0]
        params = {
            "ConferenceID": conference_id,
            "ExternalID": external_id,
            "ExternalIDType": EXTERNAL_ID_TYPE,
            "VendorName": environment.writeback_vendor_name,
            "ConnectionStatus": code,
        }
        url = interconnect_base(fhir_base) + WRITEBACK_PATH
        for attempt in (1, 2):
            token = self._token(environment, fhir_base, fresh=attempt == 2)
            headers = {"Epic-Client-ID": environment.epic_client_id, "Authorization": f"Bearer {token}",
                       "Accept": "application/json"}
            try:
                response = self._http.get(url, params=params, headers=headers)
            except TransportError as exc:
                # A read time-out may have reached Epic (it may even land later than a newer call): the
                # caller must not resend it blindly. A connect time-out never left: safe to retry.
                import requests

                ambiguous = exc.kind == "timeout" and not isinstance(exc.__cause__, requests.exceptions.ConnectTimeout)
                raise TransientWritebackError(f"epic_{exc.kind}", ambiguous=ambiguous) from exc
            if response.status_code == 401 and attempt == 1:
                continue  # the cached token may have been revoked: one more try with a fresh one
            _check(response)
            return

    def _token(self, environment: EnvironmentConfig, fhir_base: str, *, fresh: bool) -> str:
        key = (fhir_base, environment.epic_client_id)
        with self._lock:
            hit = self._tokens.get(key)
            if hit and not fresh and hit[0] > self._monotonic():
                return hit[1]
        try:
            config = self._discovery.discover(fhir_base, environment.epic_client_id)
            response = request_backend_token(
                self._http, token_endpoint=config.token_endpoint, client_id=environment.epic_client_id,
                scope=BACKEND_SCOPE, keys=self._keys(environment.kind), now=self._clock.now(),
                alg=environment.client_assertion_alg,
            )
        except LaunchError as exc:
            error = TransientWritebackError if exc.code in _TRANSIENT_LAUNCH_CODES else PermanentWritebackError
            raise error(exc.code.lower()) from exc
        lifetime = max(0, (response.expires_in or 300) - 60)
        with self._lock:
            self._tokens[key] = (self._monotonic() + lifetime, response.access_token)
        return response.access_token


def _check(response: Any) -> None:
    status = response.status_code
    body = json_or_none(response)
    if status in _TRANSIENT_STATUS:
        raise TransientWritebackError(f"epic_http_{status}", detail=epic_reason(body),
                                      retry_after=retry_after_seconds(response.headers.get("Retry-After")))
    if status >= 400:
        raise PermanentWritebackError(f"epic_http_{status}", detail=epic_reason(body))
    if status >= 300:
        raise PermanentWritebackError(f"epic_redirect_{status}")
    if isinstance(body, dict) and body.get("Success") is False:
        raise PermanentWritebackError("epic_success_false", detail=epic_reason(body))


def epic_reason(body: Any) -> str | None:
    """Epic's own words for a refusal: ``Message``/``Error``/``ExceptionMessage`` of a web-service answer or
    the first OperationOutcome issue's text, at most 200 characters; ``None`` when it sent none."""
    if not isinstance(body, dict):
        return None
    for name in ("Message", "Error", "ExceptionMessage", "message", "error"):
        value = body.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    issues = body.get("issue")
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        text = issues[0].get("diagnostics") or (issues[0].get("details") or {}).get("text")
        if isinstance(text, str) and text.strip():
            return text.strip()[:200]
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date, RFC 9110 §10.2.3); ``None`` when absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    from email.utils import parsedate_to_datetime

    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        return None
    from datetime import UTC, datetime

    return max(0.0, (at - datetime.now(UTC)).total_seconds())
