"""The id_token of a launch: who signed in (SMART App Launch STU 2.2, app-launch.html#step-5-obtain-access-
token and scopes-and-launch-context.html#scopes-for-requesting-identity-data; OpenID Connect Core §3.1.3.7).

Checks, in order: the issuer is the one the EHR's discovery names (or, when it names none, on the FHIR base
URL's origin); the signature is RS256 with a key of the issuer's JWKS (``jwks_uri`` of the smart-configuration,
else of ``{issuer}/.well-known/openid-configuration``; a ``kid`` we do not know triggers one re-fetch for key
rotation); ``aud`` holds our client ID; ``exp`` is in the future and ``iat`` not in the future (60 s leeway);
``nonce`` equals the one we sent. ``fhirUser`` names the user's FHIR resource: ``Practitioner`` for a
clinician, ``Patient`` or ``RelatedPerson`` for MyChart.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from lib.smart.discovery import SmartConfiguration
from lib.smart.errors import LaunchError
from lib.smart.transport import HttpClient, TransportError, json_or_none, same_origin

ID_TOKEN_ALGORITHMS = ("RS256",)
LEEWAY_SECONDS = 60


@dataclass(frozen=True)
class Identity:
    """The signed-in user.

    Attributes:
        issuer: the id_token ``iss``.
        subject: the id_token ``sub``.
        fhir_user: the ``fhirUser`` claim as sent (absolute or relative reference), or ``None``.
        resource_type: ``Practitioner``, ``Patient``, ``RelatedPerson``... parsed from ``fhir_user``.
        resource_id: the FHIR logical ID parsed from ``fhir_user``.
    """

    issuer: str
    subject: str
    fhir_user: str | None
    resource_type: str | None
    resource_id: str | None

    @property
    def ehr_user_id(self) -> str:
        """The ID we keep for a clinician: the fhirUser resource ID, else ``sub``."""
        return self.resource_id or self.subject


def parse_fhir_user(value: str | None) -> tuple[str | None, str | None]:
    """``(resource type, id)`` of a ``fhirUser`` such as ``https://x/api/FHIR/R4/Practitioner/abc``."""
    if not value:
        return None, None
    parts = value.split("?")[0].rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-1]:
        return None, None
    return parts[-2], parts[-1]


def check_claims(
    claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str, now: datetime, leeway: int = LEEWAY_SECONDS
) -> Identity:
    """Check the claims of a signature-verified id_token (OIDC Core §3.1.3.7, steps 2, 3, 9, 10, 11).

    Raises:
        LaunchError: ``ID_TOKEN_INVALID`` naming the failed check (never the claim values).
    """
    def fail(what: str) -> LaunchError:
        return LaunchError("ID_TOKEN_INVALID", f"The id_token failed the {what} check.")

    if claims.get("iss") != issuer:
        raise fail("issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
    if client_id not in audiences:
        raise fail("audience")
    if len(audiences) > 1 and claims.get("azp") not in (None, client_id):
        raise fail("authorized party (azp)")
    at = int(now.timestamp())
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp + leeway <= at:
        raise fail("expiry")
    if isinstance(iat, int | float) and not isinstance(iat, bool) and iat - leeway > at:
        raise fail("issued-at")
    if not isinstance(claims.get("nonce"), str) or claims["nonce"] != nonce:
        raise fail("nonce")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise fail("subject")
    fhir_user = claims.get("fhirUser") if isinstance(claims.get("fhirUser"), str) else None
    resource_type, resource_id = parse_fhir_user(fhir_user)
    return Identity(issuer=issuer, subject=sub, fhir_user=fhir_user, resource_type=resource_type,
                    resource_id=resource_id)


def unverified_issuer(id_token: str) -> str | None:
    """The ``iss`` claim read *without* verification, only to find where the keys are."""
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    iss = claims.get("iss") if isinstance(claims, dict) else None
    return iss if isinstance(iss, str) else None


class IdTokenVerifier:
    """Verifies id_tokens, caching each issuer's JWKS.

    Args:
        http: outbound HTTP client.
        jwks_ttl_seconds: how long a fetched JWKS is trusted before it is fetched again.
        monotonic: clock for the cache (tests).
    """

    def __init__(
        self, http: HttpClient, *, jwks_ttl_seconds: float = 3600.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._http = http
        self._ttl = jwks_ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._jwks: dict[str, tuple[float, KeySet]] = {}
        self._jwks_uris: dict[str, str] = {}

    def verify(self, id_token: str, *, config: SmartConfiguration, client_id: str, nonce: str,
               now: datetime) -> Identity:
        """Verify ``id_token`` from the EHR of ``config``; returns who signed in.

        Raises:
            LaunchError: ``ID_TOKEN_INVALID`` (any failed check), ``EPIC_UNAVAILABLE`` (JWKS unreachable).
        """
        issuer = unverified_issuer(id_token)
        if not issuer:
            raise LaunchError("ID_TOKEN_INVALID", "The id_token is not a readable JWT.")
        if config.issuer and issuer != config.issuer:
            raise LaunchError("ID_TOKEN_INVALID", "The id_token issuer differs from the issuer the EHR advertises.")
        if not issuer.lower().startswith("https://") or not same_origin(issuer, config.fhir_base_url):
            raise LaunchError("ID_TOKEN_INVALID", "The id_token issuer is not on the FHIR base URL's host.")
        jwks_uri = config.jwks_uri or self._jwks_uri_of(issuer)
        token = self._decode(id_token, jwks_uri)
        return check_claims(dict(token.claims), issuer=issuer, client_id=client_id, nonce=nonce, now=now)

    def _decode(self, id_token: str, jwks_uri: str) -> Any:
        for refresh in (False, True):
            keys = self._keys(jwks_uri, refresh=refresh)
            try:
                return jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
            except InvalidKeyIdError as exc:  # a kid we do not know: the issuer may have rotated keys
                if refresh:
                    raise LaunchError("ID_TOKEN_INVALID", "No key of the issuer's JWKS matches the id_token.") \
                        from exc
            except JoseError as exc:
                raise LaunchError("ID_TOKEN_INVALID", f"The id_token signature check failed ({exc.error}).") from exc
        raise AssertionError("unreachable")

    def _jwks_uri_of(self, issuer: str) -> str:
        cached = self._jwks_uris.get(issuer)
        if cached:
            return cached
        doc = self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        uri = doc.get("jwks_uri") if isinstance(doc, dict) else None
        if not isinstance(uri, str) or not uri.lower().startswith("https://") or not same_origin(uri, issuer):
            raise LaunchError("ID_TOKEN_INVALID", "The issuer's openid-configuration has no usable jwks_uri.")
        self._jwks_uris[issuer] = uri
        return uri

    def _keys(self, jwks_uri: str, *, refresh: bool) -> KeySet:
        with self._lock:
            hit = self._jwks.get(jwks_uri)
            if hit and not refresh and hit[0] > self._monotonic():
                return hit[1]
        doc = self._get_json(jwks_uri)
        try:
            keys = KeySet.import_key_set(doc)
        except Exception as exc:  # joserfc raises several types for malformed sets
            raise LaunchError("ID_TOKEN_INVALID", "The issuer's JWKS is not a valid JWK Set.") from exc
        with self._lock:
            self._jwks[jwks_uri] = (self._monotonic() + self._ttl, keys)
        return keys

    def _get_json(self, url: str) -> Any:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except TransportError as exc:
            raise LaunchError("EPIC_UNAVAILABLE", f"The EHR's key endpoint is unreachable ({exc.kind}).") from exc
        body = json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict):
            raise LaunchError("EPIC_UNAVAILABLE", f"The EHR's key endpoint answered HTTP {response.status_code}.")
        return body
