"""SMART App Launch step 4, "Obtain authorization code" (STU 2.2, app-launch.html#step-4-obtain-
authorization-code; PKCE: app-launch.html#considerations-for-pkce-support and RFC 7636).

The request carries ``response_type=code``, ``client_id``, ``redirect_uri``, ``scope``, ``state``, ``aud``
(= the launch ``iss`` in an EHR launch), ``launch``, ``code_challenge`` + ``code_challenge_method=S256``, and
an OpenID Connect ``nonce``. It is sent as a form POST (an auto-submitting page,
:func:`lib.visits.launch_pages.authorize_post_page`) when the server lists the
``authorize-post`` capability (Epic recommends it: JWT launch tokens plus ``state`` can overflow a URL),
else as a 302 to the authorize endpoint with a query string.

PKCE challenge: ``authlib.oauth2.rfc7636.create_s256_code_challenge`` (BASE64URL(SHA256(verifier))).
"""

from __future__ import annotations

import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Literal

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from lib.smart.discovery import SmartConfiguration

LaunchKind = Literal["provider", "patient"]
CALLBACK_PATH = "/api/launch/callback"


@dataclass(frozen=True)
class Pkce:
    """A PKCE pair: ``verifier`` stays on our side (launch state), ``challenge`` goes to the authorize request."""

    verifier: str
    challenge: str
    method: str = "S256"


def new_pkce() -> Pkce:
    """A fresh PKCE pair: 64 random bytes -> an 86-character verifier (RFC 7636 §4.1: 43..128 characters)."""
    verifier = secrets.token_urlsafe(64)
    return Pkce(verifier=verifier, challenge=create_s256_code_challenge(verifier))


def new_state() -> str:
    """An unpredictable ``state`` value (256 bits, URL-safe): the launch state's document ID."""
    return secrets.token_urlsafe(32)


def new_nonce() -> str:
    """An OpenID Connect ``nonce`` (256 bits, URL-safe), echoed in the id_token."""
    return secrets.token_urlsafe(32)


def callback_url(public_base_url: str) -> str:
    """Our registered ``redirect_uri``: ``{PUBLIC_BASE_URL}/api/launch/callback``."""
    return public_base_url.rstrip("/") + CALLBACK_PATH


def scopes_for(kind: LaunchKind, config: SmartConfiguration) -> str:
    """The scopes of a launch (scopes-and-launch-context.html).

    ``launch openid fhirUser`` plus read access to the launch's Appointment: ``user/Appointment.read`` for a
    clinician, ``patient/Appointment.read`` for a patient; the v2 form ``.rs`` when the server offers only
    SMART v2 permissions (:attr:`SmartConfiguration.prefers_v2_scopes`).
    """
    suffix = "rs" if config.prefers_v2_scopes else "read"
    compartment = "user" if kind == "provider" else "patient"
    return f"launch openid fhirUser {compartment}/Appointment.{suffix}"


@dataclass(frozen=True)
class AuthorizeRequest:
    """The authorization request, ready to send through the browser.

    Attributes:
        endpoint: the authorize URL (from discovery, already checked to be on the iss origin).
        params: the request parameters.
        method: ``GET`` (302 with a query string) or ``POST`` (auto-submitting form).
    """

    endpoint: str
    params: dict[str, str]
    method: Literal["GET", "POST"]

    def redirect_url(self) -> str:
        """The URL of the GET form: ``endpoint`` plus the parameters as a query string."""
        sep = "&" if urllib.parse.urlsplit(self.endpoint).query else "?"
        return self.endpoint + sep + urllib.parse.urlencode(self.params)


def build_authorize_request(
    config: SmartConfiguration,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    launch: str,
    pkce: Pkce,
    nonce: str,
) -> AuthorizeRequest:
    """Build the authorization request of an EHR launch (``aud`` = ``config.fhir_base_url`` = the iss).

    The method is POST when ``config`` lists ``authorize-post``, else GET.
    """
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": config.fhir_base_url,
        "launch": launch,
        "code_challenge": pkce.challenge,
        "code_challenge_method": pkce.method,
        "nonce": nonce,
    }
    method: Literal["GET", "POST"] = "POST" if config.supports_authorize_post else "GET"
    return AuthorizeRequest(endpoint=config.authorization_endpoint, params=params, method=method)
