"""SMART App Launch step 5, "Obtain access token" (STU 2.2, app-launch.html#step-5-obtain-access-token),
launch context (scopes-and-launch-context.html#launch-context-arrives-with-your-access_token), and the
SMART Backend Services client_credentials grant (backend-services.html#obtain-access-token).

Both grants authenticate with ``private_key_jwt`` (:mod:`lib.smart.client_assertion`). Responses are parsed
loosely: Epic sends ``need_patient_banner`` as the string ``"false"``, ``expires_in`` may be a string, and
the appointment can arrive as Epic's top-level ``appointment`` or as a v2 ``fhirContext`` entry.
Tokens are opaque to us (Epic may issue JWTs; we never parse them) and never logged (``repr=False``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lib.smart.client_assertion import client_assertion_params
from lib.smart.errors import LaunchError
from lib.smart.keys import SmartKeys
from lib.smart.transport import HttpClient, TransportError, json_or_none, retry_after_seconds

log = logging.getLogger(__name__)

_CONTEXT_STRINGS = ("patient", "encounter", "appointment", "smart_style_url", "tenant", "intent",
                    "location", "loginDepartment")


@dataclass(frozen=True)
class LaunchContext:
    """Launch context of a token response (all optional; FHIR logical IDs unless said otherwise).

    Attributes:
        patient, encounter, appointment: FHIR IDs (``appointment`` is Epic's top-level field).
        fhir_context: SMART v2 ``fhirContext`` entries (``{reference|canonical|identifier, type, role}``).
        need_patient_banner: parsed loosely (``"false"`` -> ``False``); ``None`` when absent or unreadable.
        extra: other string context fields kept as sent (``smart_style_url``, ``tenant``, ``intent``,
            ``location``, ``loginDepartment``).
    """

    patient: str | None = None
    encounter: str | None = None
    appointment: str | None = None
    fhir_context: tuple[dict[str, Any], ...] = ()
    need_patient_banner: bool | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def appointment_id(self) -> str | None:
        """The FHIR Appointment ID of the launch: ``fhirContext`` first (standard), then ``appointment``.

        References are normalised to logical IDs whichever form they come in (``456``, ``Appointment/456``,
        ``{iss}/Appointment/456``, ``Appointment/456/_history/2``); one naming another type is ignored.
        """
        for entry in self.fhir_context:
            ref = entry.get("reference")
            if not isinstance(ref, str):
                continue
            plain_allowed = entry.get("type") == "Appointment"
            found = logical_id(ref, "Appointment", plain_allowed=plain_allowed)
            if found:
                return found
        return logical_id(self.appointment, "Appointment") if self.appointment else None

    def patient_id(self) -> str | None:
        """The FHIR Patient ID of the launch context (``patient``, normalised like :meth:`appointment_id`)."""
        return logical_id(self.patient, "Patient") if self.patient else None


_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def logical_id(reference: str, resource_type: str, *, plain_allowed: bool = True) -> str | None:
    """The logical ID in a FHIR reference to a ``resource_type``, or ``None``.

    Accepts a bare ID (when ``plain_allowed``: the field already says the type), a relative reference
    (``Appointment/456``), an absolute one (``https://ehr/api/FHIR/R4/Appointment/456``) and a version-specific
    one (``.../Appointment/456/_history/2``); the query or fragment is dropped. A reference to another
    resource type, or an ID outside FHIR's ``[A-Za-z0-9-.]{1,64}``, gives ``None``.
    """
    raw = reference.strip().split("?")[0].split("#")[0]
    parts = raw.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) == 1:
        candidate = parts[0] if plain_allowed and "/" not in raw else ""
    elif parts[-2] == resource_type:
        candidate = parts[-1]
    else:
        return None
    return candidate if _FHIR_ID.fullmatch(candidate) else None


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response.

    Attributes:
        access_token: bearer token (opaque, never logged).
        token_type: ``bearer`` (case-insensitive per RFC 6749).
        expires_in: lifetime in seconds, or ``None``.
        scope: granted scopes as sent.
        id_token: the OpenID Connect id_token, when ``openid`` was granted.
        context: the launch context.
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    scope: str
    id_token: str | None = field(default=None, repr=False)
    context: LaunchContext = field(default_factory=LaunchContext)


def loose_bool(value: Any) -> bool | None:
    """``True``/``False`` from a JSON boolean, ``"true"``/``"false"`` (any case), ``1``/``0``; else ``None``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {1: True, 0: False}.get(value)
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower())
    return None


def _loose_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_token_response(doc: Any) -> TokenResponse:
    """Parse a token endpoint's JSON body.

    Raises:
        LaunchError: ``EPIC_OAUTH_ERROR`` when ``access_token`` is missing or ``token_type`` is not bearer.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str) or not doc["access_token"]:
        raise LaunchError("EPIC_OAUTH_ERROR", "The token response has no access_token.")
    token_type = str(doc.get("token_type") or "bearer")
    if token_type.lower() != "bearer":
        raise LaunchError("EPIC_OAUTH_ERROR", "The token response's token_type is not bearer.")
    raw_context = doc.get("fhirContext")
    fhir_context = tuple(e for e in raw_context if isinstance(e, dict)) if isinstance(raw_context, list) else ()
    strings = {k: doc[k] for k in _CONTEXT_STRINGS if isinstance(doc.get(k), str) and doc[k]}
    context = LaunchContext(
        patient=strings.pop("patient", None),
        encounter=strings.pop("encounter", None),
        appointment=strings.pop("appointment", None),
        fhir_context=fhir_context,
        need_patient_banner=loose_bool(doc.get("need_patient_banner")),
        extra=strings,
    )
    id_token = doc.get("id_token")
    return TokenResponse(
        access_token=doc["access_token"],
        token_type=token_type,
        expires_in=_loose_int(doc.get("expires_in")),
        scope=str(doc.get("scope") or ""),
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        context=context,
    )


def _post_token(http: HttpClient, token_endpoint: str, form: dict[str, str]) -> TokenResponse:
    """POST a token request and classify the answer.

    Raises:
        LaunchError: ``EPIC_UNAVAILABLE`` (no answer, 5xx), ``EPIC_THROTTLED`` (429), ``EPIC_OAUTH_ERROR`` (4xx
            or unusable body). A 429/5xx error carries the ``Retry-After`` wait (:func:`busy_error`).
    """
    try:
        response = http.post(token_endpoint, data=form, headers={"Accept": "application/json"})
    except TransportError as exc:
        raise LaunchError("EPIC_UNAVAILABLE", f"The token endpoint is unreachable ({exc.kind}).") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise busy_error(response, "The token endpoint")
    body = json_or_none(response)
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        error_code = error if isinstance(error, str) and error.replace("_", "").isalnum() else "unknown"
        raise token_error(response.status_code, error_code)
    return parse_token_response(body)


#: What a busy-page says when the EHR gave no ``Retry-After``: try again in half a minute.
DEFAULT_RETRY_SECONDS = 30


def busy_error(response: Any, what: str) -> LaunchError:
    """The error of a ``429`` (``EPIC_THROTTLED``) or ``5xx`` (``EPIC_UNAVAILABLE``) answer from the EHR, with
    the wait its ``Retry-After`` asks for (``DEFAULT_RETRY_SECONDS`` when it gives none or an unreadable one).
    """
    status = response.status_code
    wait = retry_after_seconds(response.headers.get("Retry-After"))
    code = "EPIC_THROTTLED" if status == 429 else "EPIC_UNAVAILABLE"
    hint = f"{what} answered HTTP {status}" + (f" with Retry-After {wait} s." if wait is not None else ".")
    return LaunchError(code, hint, retry_after=DEFAULT_RETRY_SECONDS if wait is None else wait)


#: RFC 6749 §5.2 token-endpoint ``error`` values -> the error page that says what to fix.
TOKEN_ERROR_CODES: dict[str, str] = {
    "invalid_client": "EPIC_KEYS_NOT_REGISTERED",
    "unauthorized_client": "EPIC_CLIENT_NOT_MAPPED",
    "invalid_grant": "LAUNCH_EXPIRED",
    "invalid_scope": "EPIC_SCOPE_NOT_GRANTED",
}


def token_error(status: int, error_code: str) -> LaunchError:
    """The :class:`LaunchError` for a refused token request (``error_code``: the sanitized OAuth ``error``).

    ``invalid_client`` -> ``EPIC_KEYS_NOT_REGISTERED`` (keys or client ID unknown to Epic),
    ``unauthorized_client`` -> ``EPIC_CLIENT_NOT_MAPPED``, ``invalid_grant`` -> ``LAUNCH_EXPIRED`` (code expired,
    reused, or PKCE / redirect URI mismatch), ``invalid_scope`` -> ``EPIC_SCOPE_NOT_GRANTED``; anything else
    ``EPIC_OAUTH_ERROR`` naming the error.
    """
    code = TOKEN_ERROR_CODES.get(error_code)
    if code:
        return LaunchError(code)
    return LaunchError(
        "EPIC_OAUTH_ERROR",
        f"The token endpoint answered HTTP {status} with OAuth error '{error_code}'. Check the JWKS URL and client "
        "ID registered in Epic.",
    )


def exchange_code(
    http: HttpClient,
    *,
    token_endpoint: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    client_id: str,
    keys: SmartKeys,
    now: datetime,
    alg: str | None = None,
) -> TokenResponse:
    """Exchange an authorization code for tokens (``grant_type=authorization_code`` + PKCE verifier +
    ``private_key_jwt``).

    Raises:
        LaunchError: ``EPIC_UNAVAILABLE``, ``EPIC_THROTTLED`` or ``EPIC_OAUTH_ERROR``.
    """
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
        "client_id": client_id,
        **client_assertion_params(keys, client_id=client_id, token_endpoint=token_endpoint, now=now, alg=alg),
    }
    return _post_token(http, token_endpoint, form)


def request_backend_token(
    http: HttpClient,
    *,
    token_endpoint: str,
    client_id: str,
    scope: str,
    keys: SmartKeys,
    now: datetime,
    alg: str | None = None,
) -> TokenResponse:
    """Obtain a SMART Backend Services access token (``grant_type=client_credentials`` + ``private_key_jwt``).

    Epic issues it only once the client ID is mapped to an Epic user by the customer's Client Systems
    Administrator (EPIC-OAUTH, "SMART Backend Services").

    Raises:
        LaunchError: ``EPIC_UNAVAILABLE``, ``EPIC_THROTTLED`` or ``EPIC_OAUTH_ERROR``.
    """
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        **client_assertion_params(keys, client_id=client_id, token_endpoint=token_endpoint, now=now, alg=alg),
    }
    return _post_token(http, token_endpoint, form)
