"""Signing keys and certificates of a test "hospital interface engine", and signed-request headers.

One RSA 2048 key per test session (generation is the slow part); certificates are cheap and minted
per need (valid now, expired, not yet valid).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from lib.scheduling.signature import sign_request


@dataclass(frozen=True)
class Signer:
    """A private key (PEM) and a certificate for it (PEM)."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def cert_text(self) -> str:
        """The certificate as configured in ``EnvironmentConfig.hl7_certificates``."""
        return self.cert_pem.decode("ascii")

    def headers(self, environment_id: str, body: bytes, **kw: object) -> dict[str, str]:
        """``{"X-HL7-Signature": <JWS>}`` for ``body`` (keywords go to :func:`sign_request`)."""
        return {"X-HL7-Signature": sign_request(body, private_key_pem=self.key_pem, environment_id=environment_id,
                                                **kw)}  # type: ignore[arg-type]


def certificate(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *, not_before: dt.datetime,
                not_after: dt.datetime) -> bytes:
    """A self-signed certificate (PEM) for ``key`` with the given validity window."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-interface-engine")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    """The session's RSA 2048 key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signer(*, days_valid_from: float = -1, days_valid_to: float = 365, kind: str = "rsa") -> Signer:
    """A signer whose certificate is valid from ``now + days_valid_from`` to ``now + days_valid_to``."""
    key = rsa_key() if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = certificate(key, not_before=now + dt.timedelta(days=days_valid_from),
                       not_after=now + dt.timedelta(days=days_valid_to))
    return Signer(_pem(key), cert)


@functools.cache
def default_signer() -> Signer:
    """The session's interface engine: RSA 2048, certificate valid for a year."""
    return signer()
