"""JWT helpers shared by the Epic and Entra stand-ins (PyJWT + cryptography).

- :class:`SigningKey`: the stand-in's own RS256 key (id_tokens, Entra access tokens) and its JWKS.
- :class:`JwksCache`: fetches a client's JWK Set URL (``Accept: application/json``, trusting the local CA),
  caches it briefly and re-fetches on an unknown ``kid`` or a failed signature (SMART
  ``client-confidential-asymmetric`` "Signature Verification"; Epic re-fetches on failure too).
- :class:`JtiRegistry`: ``jti`` replay protection within the assertion's lifetime.
- :func:`verify_client_assertion`: the SMART ``private_key_jwt`` checks (RFC 7523 §3, SMART App Launch
  v2 ``client-confidential-asymmetric``): header ``alg`` in an allow-list and ``kid``; optional ``jku`` equal to
  the registered JWKS URL; ``iss`` = ``sub`` = client_id; ``aud`` = token URL; ``exp`` in the future and at
  most 5 minutes ahead; ``jti`` unseen.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "ClientAuthError",
    "JtiRegistry",
    "JwksCache",
    "SigningKey",
    "b64url",
    "check_assertion_claims",
    "unverified_parts",
    "verify_client_assertion",
    "verify_jwt_signature",
]

CLOCK_SKEW = 5  # seconds tolerated on exp/nbf/iat comparisons
MAX_ASSERTION_LIFETIME = 300  # SMART: exp no more than five minutes in the future


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class ClientAuthError(Exception):
    """A client assertion failed a check; ``str(exc)`` is a safe ``error_description``."""


class SigningKey:
    """An RSA 2048 signing key generated at start-up.

    ``kid`` is the base64url SHA-256 of the DER SubjectPublicKeyInfo (Epic documents its id_token ``kid`` as
    the base64 SHA-256 of the key).
    """

    def __init__(self, key: rsa.RSAPrivateKey | None = None) -> None:
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = b64url(hashlib.sha256(der).digest())

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK (``kty`` RSA, ``use`` sig, ``alg`` RS256, ``kid``)."""
        numbers = self.key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": b64url(n), "e": b64url(e)}

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [public_jwk]}``."""
        return {"keys": [self.public_jwk()]}

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """A compact RS256 JWS over ``claims`` with this ``kid`` (``typ`` JWT)."""
        hdrs = {"kid": self.kid, "typ": "JWT"}
        hdrs.update(headers or {})
        return jwt.encode(claims, self.key, algorithm="RS256", headers=hdrs)

    def decode(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """Verify one of our own RS256 tokens; PyJWT exceptions propagate."""
        return jwt.decode(token, self.key.public_key(), algorithms=["RS256"], **kwargs)


class JwksCache:
    """Fetch and cache JWK Sets by URL.

    Args:
        verify: ``requests`` ``verify`` value: a CA bundle path (the local CA + public roots) or True.
        ttl: seconds a fetched set is trusted before re-fetching (short: this is a test tool).
        fetch: injectable ``fetch(url) -> dict`` for unit tests.
    """

    def __init__(self, verify: str | bool = True, ttl: float = 30.0,
                 fetch: Callable[[str], dict[str, Any]] | None = None) -> None:
        self._verify = verify
        self._ttl = ttl
        self._fetch = fetch or self._http_fetch
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def _http_fetch(self, url: str) -> dict[str, Any]:
        resp = requests.get(url, headers={"Accept": "application/json"}, timeout=5, verify=self._verify)
        resp.raise_for_status()
        data = resp.json()
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("not a JWK Set")
        return data

    def keys(self, url: str, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The keys at ``url`` (cached unless ``refresh`` or expired). Raises ClientAuthError on fetch failure."""
        with self._lock:
            cached = self._sets.get(url)
        if cached and not refresh and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        try:
            data = self._fetch(url)
        except (requests.RequestException, ValueError) as exc:
            raise ClientAuthError(f"could not fetch the client's JWK Set: {type(exc).__name__}") from exc
        keys = [k for k in data["keys"] if isinstance(k, dict)]
        with self._lock:
            self._sets[url] = (time.monotonic(), keys)
        return keys

    def find(self, url: str, kid: str) -> dict[str, Any] | None:
        """The JWK with ``kid`` at ``url``; re-fetches once when the cached set lacks it."""
        for refresh in (False, True):
            for jwk in self.keys(url, refresh=refresh):
                if jwk.get("kid") == kid:
                    return jwk
        return None


class JtiRegistry:
    """Remembers ``(client_id, jti)`` until the assertion's ``exp`` (plus skew) has passed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}

    def use(self, client_id: str, jti: str, exp: float) -> bool:
        """Record the jti; False when it was already used (a replay)."""
        now = time.time()
        with self._lock:
            for key in [k for k, until in self._seen.items() if until < now]:
                del self._seen[key]
            if (client_id, jti) in self._seen:
                return False
            self._seen[(client_id, jti)] = exp + CLOCK_SKEW
            return True

    def clear(self) -> None:
        """Forget every jti."""
        with self._lock:
            self._seen.clear()


def verify_jwt_signature(token: str, key: Any, alg: str) -> None:
    """Check only the signature of ``token`` with ``key`` (a cryptography public key); ClientAuthError if bad."""
    try:
        jwt.decode(token, key, algorithms=[alg], options={
            "verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
            "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False,
        })
    except jwt.InvalidSignatureError as exc:
        raise ClientAuthError("client assertion signature is invalid") from exc
    except jwt.PyJWTError as exc:
        raise ClientAuthError(f"client assertion is malformed: {exc}") from exc


def check_assertion_claims(claims: dict[str, Any], *, client_id: str, audience: str,
                           jtis: JtiRegistry, max_lifetime: int = MAX_ASSERTION_LIFETIME) -> None:
    """The claim checks of RFC 7523 §3 / SMART (signature already verified). ClientAuthError on failure."""
    now = time.time()
    for name in ("iss", "sub", "aud", "exp", "jti"):
        if name not in claims:
            raise ClientAuthError(f"client assertion lacks the {name} claim")
    if claims["iss"] != client_id or claims["sub"] != client_id:
        raise ClientAuthError("client assertion iss and sub must both equal the client_id")
    aud = claims["aud"]
    auds = aud if isinstance(aud, list) else [aud]
    if audience not in auds:
        raise ClientAuthError(f"client assertion aud must be the token endpoint URL {audience}")
    exp = claims["exp"]
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise ClientAuthError("client assertion exp must be a number")
    if exp <= now - CLOCK_SKEW:
        raise ClientAuthError("client assertion has expired")
    if exp > now + max_lifetime + CLOCK_SKEW:
        raise ClientAuthError("client assertion exp is more than five minutes in the future")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and nbf > now + CLOCK_SKEW:
        raise ClientAuthError("client assertion is not yet valid (nbf)")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 151:
        raise ClientAuthError("client assertion jti must be a non-empty string of at most 151 characters")
    if not jtis.use(client_id, jti, float(exp)):
        raise ClientAuthError("client assertion jti has already been used")


def unverified_parts(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) without verification; ClientAuthError when not a compact JWS."""
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ClientAuthError("client_assertion is not a valid JWT") from exc
    if not isinstance(claims, dict):
        raise ClientAuthError("client_assertion payload is not a JSON object")
    return header, claims


def verify_client_assertion(assertion: str, *, client_id: str, audience: str, jwks_url: str,
                            cache: JwksCache, jtis: JtiRegistry,
                            algorithms: Iterable[str] = ("RS384", "RS256", "ES384")) -> dict[str, Any]:
    """Verify a SMART ``private_key_jwt`` client assertion against the client's JWK Set URL.

    Returns the verified claims. Raises ClientAuthError (message safe to return as
    ``error_description``) on any failure; a replayed ``jti`` is recorded only after the signature checks.
    """
    header, claims = unverified_parts(assertion)
    alg = header.get("alg")
    allowed = tuple(algorithms)
    if alg not in allowed:
        raise ClientAuthError(f"client assertion alg must be one of {', '.join(allowed)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ClientAuthError("client assertion header lacks kid")
    jku = header.get("jku")
    if jku is not None and jku != jwks_url:
        raise ClientAuthError("client assertion jku does not match the registered JWK Set URL")
    jwk = cache.find(jwks_url, kid)
    if jwk is None:
        raise ClientAuthError(f"no key with kid {kid!r} in the client's JWK Set")
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except jwt.PyJWTError as exc:
        raise ClientAuthError(f"JWK {kid!r} cannot verify {alg}") from exc
    try:
        verify_jwt_signature(assertion, key, alg)
    except ClientAuthError:
        # Key rotated under the same kid? Re-fetch once, as Epic does after a failed signature.
        fresh = next((k for k in cache.keys(jwks_url, refresh=True) if k.get("kid") == kid), None)
        if fresh is None or fresh == jwk:
            raise
        verify_jwt_signature(assertion, jwt.PyJWK(fresh, algorithm=alg).key, alg)
    check_assertion_claims(claims, client_id=client_id, audience=audience, jtis=jtis)
    return claims
