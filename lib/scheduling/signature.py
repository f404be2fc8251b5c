"""HL7 intake request authentication: a JWS signed by the hospital, verified with its uploaded certificate.

The scheme (``docs/hl7-intake.md`` is the sender-facing description):

- Header ``X-HL7-Signature: <compact JWS>`` (or ``Authorization: HL7-JWS <compact JWS>``).
- JWS protected header: ``alg`` one of RS256, PS256, ES256 (RSA >= 2048 bits, EC P-256); optional
  ``x5t#S256`` = base64url SHA-256 of the signing certificate's DER (selects the certificate while two
  are configured during a rotation).
- JWS payload (JSON): ``sha256`` = base64url (no padding) SHA-256 of the exact request body bytes,
  ``env`` = the environment ID of the URL, ``iat`` and ``exp`` (NumericDate seconds) with
  ``0 < exp - iat <= 300``, ``jti`` = a unique ID (8..128 printable ASCII characters).
- Accepted while ``iat - 60 <= now <= exp + 60`` (60 s clock skew), once per ``jti`` per environment.
- The certificate (``EnvironmentConfig.hl7_certificates``: PEM or base64 DER) must be inside its
  validity window now.

Times are read from the wall clock given to the verifier (never the local demo clock), because the
sender signs with its real clock. Security references: docs/architecture.md "Security" (HL7 intake), the
security guide §4.5 and HIPAA 164.312(c)/(d) (integrity, entity authentication).

Every refusal is a :class:`lib.scheduling.intake.Problem` carrying one reason code (``code``):

=============================  ======  ======================================================
code                           status  meaning
=============================  ======  ======================================================
``signature_missing``          401     no ``X-HL7-Signature`` / ``Authorization: HL7-JWS``
``signature_malformed``        401     not a compact JWS, unsupported ``alg``, bad claims
``signature_invalid``          401     the signature does not verify with a configured cert
``body_digest_mismatch``       401     ``sha256`` is not the digest of this body
``wrong_environment``          401     ``env`` names another environment
``signature_expired``          401     ``now > exp + 60 s``
``signature_not_yet_valid``    401     ``now < iat - 60 s``
``signature_replayed``         401     this ``jti`` was already used
``certificate_expired``        401     the matching certificate(s) expired
``certificate_not_yet_valid``  401     the matching certificate(s) are not valid yet
``no_certificate_configured``  403     the environment has no (readable) certificate
``unsigned_not_allowed``       403     ``hl7_auth = "none"`` on a production environment
=============================  ======  ======================================================
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from lib.clock import Clock
from lib.models import EnvironmentConfig
from lib.observability import metrics
from lib.scheduling.intake import PresentedSignature, Problem, SignedRequest

__all__ = [
    "ALGORITHMS",
    "CLOCK_SKEW",
    "MAX_LIFETIME",
    "JtiRegistry",
    "JwsRequestVerifier",
    "body_digest",
    "certificate_thumbprint",
    "prepare_certificates",
    "sign_request",
]

log = logging.getLogger(__name__)

#: Signature algorithms accepted (RFC 7518 names) and the key type each needs.
ALGORITHMS: dict[str, type] = {"RS256": rsa.RSAPublicKey, "PS256": rsa.RSAPublicKey, "ES256": ec.EllipticCurvePublicKey}
#: Longest accepted ``exp - iat``.
MAX_LIFETIME = timedelta(minutes=5)
#: Tolerated difference between the sender's clock and ours.
CLOCK_SKEW = timedelta(seconds=60)
_MAX_TOKEN = 8192
_MIN_RSA_BITS = 2048
_HEADER = "x-hl7-signature"
_AUTH_SCHEME = "hl7-jws"


class JtiRegistry(Protocol):
    """Single-use store of JWS IDs (``lib.store.jti.JtiStore``)."""

    def claim(self, environment_id: str, jti: str, *, expires: datetime, now: datetime) -> bool:
        """Record ``jti`` until ``expires``; ``False`` when it was already recorded.

        Raises:
            lib.store.errors.StoreUnavailable: the store cannot be reached (the caller answers 503).
        """
        ...


def body_digest(body: bytes) -> str:
    """The ``sha256`` claim of a body: base64url (no padding) of its SHA-256."""
    return _b64url(hashlib.sha256(body).digest())


def certificate_thumbprint(cert: x509.Certificate) -> str:
    """The ``x5t#S256`` of a certificate: base64url (no padding) SHA-256 of its DER encoding."""
    return _b64url(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class _Certificate:
    cert: x509.Certificate
    key: RSAKey | ECKey
    public_type: type
    thumbprint: str
    not_before: datetime
    not_after: datetime


@functools.lru_cache(maxsize=64)
def _load_certificate(text: str) -> _Certificate | None:
    """Parse one configured certificate (PEM, or base64 DER as in a .cer file); ``None`` when unreadable
    or its key is unsupported (RSA below 2048 bits, EC other than P-256)."""
    try:
        stripped = text.strip()
        if stripped.startswith("-----BEGIN"):
            cert = x509.load_pem_x509_certificate(stripped.encode("ascii"))
        else:
            cert = x509.load_der_x509_certificate(base64.b64decode("".join(stripped.split()), validate=True))
        public = cert.public_key()
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        return None
    key: RSAKey | ECKey
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < _MIN_RSA_BITS:
            return None
        key, kind = RSAKey.import_key(public), rsa.RSAPublicKey
    elif isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        key, kind = ECKey.import_key(public), ec.EllipticCurvePublicKey
    else:
        return None
    return _Certificate(
        cert, key, kind, certificate_thumbprint(cert), cert.not_valid_before_utc, cert.not_valid_after_utc
    )


def prepare_certificates(environment: EnvironmentConfig) -> int:
    """Parse the environment's configured certificates now (they are cached per process), so the first
    signed request of an instance does not pay for it; returns how many are usable."""
    return sum(_load_certificate(text) is not None for text in environment.hl7_certificates)


def _refuse(code: str, detail: str, status: int = 401) -> Problem:
    title = "Request signature refused" if status == 401 else "HL7 intake not configured for signed requests"
    headers = (("WWW-Authenticate", f'HL7-JWS realm="hl7-intake", error="{code}"'),) if status == 401 else ()
    return Problem(status, title, detail, code=code, headers=headers)


def _token(headers: Mapping[str, str]) -> str | None:
    """The compact JWS from ``X-HL7-Signature`` or ``Authorization: HL7-JWS``; None when absent."""
    for name, value in headers.items():
        lname = name.lower()
        if lname == _HEADER and value.strip():
            return value.strip()
        if lname == "authorization":
            scheme, _, rest = value.strip().partition(" ")
            if scheme.lower() == _AUTH_SCHEME and rest.strip():
                return rest.strip()
    return None


class JwsRequestVerifier:
    """The :class:`lib.scheduling.intake.RequestVerifier` of the HL7 intake (scheme in the module docstring).

    Args:
        jti: the single-use store of JWS IDs.
        clock: the wall clock (``lib.clock.SystemClock``), never a simulated one.
    """

    def __init__(self, *, jti: JtiRegistry, clock: Clock) -> None:
        self._jti = jti
        self._clock = clock

    def verify(self, environment: EnvironmentConfig, headers: Mapping[str, str], body: bytes) -> None:
        """Return when the request is authentic for ``environment`` and its ``jti`` was not used before
        (:meth:`authenticate`, then :meth:`claim`).

        Raises:
            Problem: 401 (with ``WWW-Authenticate``) or 403 with one reason code of the module table.
            lib.store.errors.StoreUnavailable: the ``jti`` store cannot be reached.
        """
        signed = self.authenticate(environment, headers, body)
        if signed is not None:
            self.claim(environment.id, signed)

    def authenticate(
        self, environment: EnvironmentConfig, headers: Mapping[str, str], body: bytes, *, at: datetime | None = None
    ) -> SignedRequest | None:
        """Check everything but the single use of the ``jti``; returns what the single-use claim needs
        (``None`` for an environment that accepts unsigned requests). The caller claims the ``jti`` with
        :meth:`claim`, or records it with the message it carries (``lib.store.messages``).

        ``at`` judges the times (``iat``/``exp``, the certificate's validity) as of that moment instead of now:
        the moment a kept request was received, when an operator replays it (:mod:`lib.scheduling.replay`).

        Raises:
            Problem: 401 (with ``WWW-Authenticate``) or 403 with one reason code of the module table.
        """
        if environment.hl7_auth == "none":
            if environment.kind == "production":
                raise _refuse(
                    "unsigned_not_allowed",
                    "This production environment is set to accept unsigned HL7 requests, which is not allowed; "
                    "upload the hospital's certificate and set HL7 authentication to JWS.",
                    403,
                )
            return None
        certificates = [c for c in map(_load_certificate, environment.hl7_certificates) if c is not None]
        if not certificates:
            raise _refuse(
                "no_certificate_configured",
                "No readable signing certificate (.cer, RSA 2048+ or EC P-256) is configured for this "
                "environment; upload the interface engine's certificate in the configuration portal.",
                403,
            )
        token = _token(headers)
        if token is None:
            raise _refuse(
                "signature_missing", "The request carries no X-HL7-Signature header (or Authorization: HL7-JWS)."
            )
        header, claims = _decode(token)
        now = at or self._clock.now()
        candidates = self._candidates(header, certificates, now)
        if not any(_verifies(token, c) for c in candidates):
            raise _refuse(
                "signature_invalid",
                "The signature does not verify with the certificate(s) configured for this environment.",
            )
        if at is None:
            # An authentic iat tells how far the sender's clock is from ours (plus transit): the clock-skew alert.
            metrics.clock_skew("hl7_jws", now.timestamp() - claims["iat"])
        self._check_claims(environment, claims, body, now)
        expires = datetime.fromtimestamp(claims["exp"], UTC) + CLOCK_SKEW
        return SignedRequest(jti=claims["jti"], expires=expires, now=now)

    def presented(self, headers: Mapping[str, str]) -> PresentedSignature | None:
        """The compact JWS the request carries (``X-HL7-Signature`` or ``Authorization: HL7-JWS``) and the wall
        time now, or None; kept with a body sent to an environment that does not exist yet, and checked as of
        that time when it is replayed. It holds no secret: a signature over one body for one environment, with
        a five-minute lifetime."""
        token = _token(headers)
        if token is None or len(token) > _MAX_TOKEN:
            return None
        return PresentedSignature(token, self._clock.now())

    def claim(self, environment_id: str, signed: SignedRequest) -> None:
        """Record the request's ``jti`` (single use).

        Raises:
            Problem: 401 ``signature_replayed`` when it was used before.
            lib.store.errors.StoreUnavailable: the ``jti`` store cannot be reached.
        """
        if not self._jti.claim(environment_id, signed.jti, expires=signed.expires, now=signed.now):
            raise self.replayed()

    @staticmethod
    def replayed() -> Problem:
        """The answer to a request whose ``jti`` was already used."""
        return _refuse("signature_replayed", "This signature (jti) was already used; sign every request anew.")

    @staticmethod
    def _candidates(header: dict[str, Any], certificates: list[_Certificate], now: datetime) -> list[_Certificate]:
        want = ALGORITHMS[header["alg"]]
        matching = [c for c in certificates if c.public_type is want]
        thumb = header.get("x5t#S256")
        if thumb is not None:
            matching = [c for c in matching if c.thumbprint == thumb]
        if not matching:
            raise _refuse(
                "signature_invalid",
                f"No configured certificate matches the signature (alg {header['alg']}"
                + (", x5t#S256 given" if thumb is not None else "") + ").",
            )
        valid = [c for c in matching if c.not_before <= now <= c.not_after]
        if not valid:
            if all(now > c.not_after for c in matching):
                raise _refuse(
                    "certificate_expired",
                    "The signing certificate configured for this environment has expired; upload the renewed one.",
                )
            raise _refuse(
                "certificate_not_yet_valid", "The signing certificate configured for this environment is not valid yet."
            )
        return valid

    @staticmethod
    def _check_claims(environment: EnvironmentConfig, claims: dict[str, Any], body: bytes, now: datetime) -> None:
        if claims["env"] != environment.id:
            raise _refuse("wrong_environment", "The signature was made for another environment (claim env).")
        if not secrets.compare_digest(claims["sha256"], body_digest(body)):
            raise _refuse(
                "body_digest_mismatch",
                "The sha256 claim is not the SHA-256 of the request body: sign the exact bytes that are sent.",
            )
        iat = datetime.fromtimestamp(claims["iat"], UTC)
        exp = datetime.fromtimestamp(claims["exp"], UTC)
        if now > exp + CLOCK_SKEW:
            raise _refuse("signature_expired", "The signature has expired (claim exp); sign every request anew.")
        if now < iat - CLOCK_SKEW:
            raise _refuse(
                "signature_not_yet_valid",
                "The signature was issued in the future (claim iat): check the sender's clock.",
            )


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Protected header and claims of a compact JWS, shape-checked (not yet verified)."""

    def bad(detail: str) -> Problem:
        return _refuse("signature_malformed", detail)

    if len(token) > _MAX_TOKEN or token.count(".") != 2:
        raise bad("The signature is not a compact JWS (three base64url parts separated by dots).")
    head_b64, payload_b64, sig_b64 = token.split(".")
    try:
        header = json.loads(_b64url_decode(head_b64))
        claims = json.loads(_b64url_decode(payload_b64))
        _b64url_decode(sig_b64)
    except (ValueError, UnicodeError, RecursionError):
        raise bad("The signature is not a compact JWS (three base64url parts separated by dots).") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise bad("The JWS header and payload must be JSON objects.")
    if header.get("alg") not in ALGORITHMS:
        raise bad("The JWS alg must be one of RS256, PS256, ES256.")
    if "crit" in header or header.get("b64") is False:
        raise bad("The JWS header must not use crit or b64.")
    thumb = header.get("x5t#S256")
    if thumb is not None and not isinstance(thumb, str):
        raise bad("The JWS header x5t#S256 must be a string.")
    for name in ("iat", "exp"):
        value = claims.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**37:
            raise bad(f"The claim {name} must be a whole number of seconds since 1970.")
    if not 0 < claims["exp"] - claims["iat"] <= MAX_LIFETIME.total_seconds():
        raise bad("The claims must satisfy 0 < exp - iat <= 300 seconds.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 128 or not all(33 <= ord(c) < 127 for c in jti):
        raise bad("The claim jti must be 8 to 128 printable ASCII characters without spaces.")
    for name in ("sha256", "env"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise bad(f"The claim {name} is missing.")
    return header, claims


def _verifies(token: str, certificate: _Certificate) -> bool:
    try:
        jws.deserialize_compact(token, certificate.key, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError):
        return False
    return True


def sign_request(
    body: bytes,
    *,
    private_key_pem: bytes,
    environment_id: str,
    now: datetime | None = None,
    lifetime: timedelta = timedelta(minutes=2),
    jti: str | None = None,
    algorithm: str | None = None,
    certificate_pem: bytes | None = None,
) -> str:
    """Sign one intake request the way an interface engine must (the reference implementation).

    Args:
        body: the exact bytes that will be POSTed.
        private_key_pem: PKCS#8/PKCS#1/SEC1 PEM private key (RSA 2048+ or EC P-256), unencrypted.
        environment_id: the ``{environmentId}`` of the URL (claim ``env``).
        now: issue time (default: the wall clock), aware.
        lifetime: ``exp - iat`` (at most 5 minutes).
        jti: unique ID (default: 128 random bits, base64url).
        algorithm: RS256 (default for RSA), PS256, or ES256 (default for EC).
        certificate_pem: when given, its ``x5t#S256`` goes into the header.

    Returns:
        The compact JWS for the ``X-HL7-Signature`` header.

    Raises:
        ValueError: unsupported key type or algorithm, or a lifetime over 5 minutes.
    """
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: RSAKey | ECKey = RSAKey.import_key(key)
        alg = algorithm or "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = ECKey.import_key(key)
        alg = algorithm or "ES256"
    else:
        raise ValueError("only RSA and EC P-256 keys can sign HL7 requests")
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported algorithm {alg!r}")
    if lifetime > MAX_LIFETIME:
        raise ValueError("lifetime must be at most 5 minutes")
    issued = now or datetime.now(UTC)
    iat = int(issued.timestamp())
    claims = {
        "sha256": body_digest(body),
        "env": environment_id,
        "iat": iat,
        "exp": iat + max(1, int(lifetime.total_seconds())),
        "jti": jti or secrets.token_urlsafe(16),
    }
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if certificate_pem is not None:
        header["x5t#S256"] = certificate_thumbprint(x509.load_pem_x509_certificate(certificate_pem))
    return jws.serialize_compact(header, json.dumps(claims, separators=(",", ":")).encode(), jwk, algorithms=[alg])
