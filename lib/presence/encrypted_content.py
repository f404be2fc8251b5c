"""Rich Graph change notifications: decrypt ``encryptedContent`` with our certificate, after checking its
signature (GRAPH ``concepts/change-notifications-with-resource-data.md``).

``dataKey`` is a random symmetric key encrypted with our certificate's RSA public key (OAEP, SHA-1);
``dataSignature`` is HMAC-SHA256 over the base64-decoded ``data`` keyed with that symmetric key, and must
match before anything is decrypted; ``data`` is AES-256-CBC with PKCS#7 padding whose IV is the first 16
bytes of the symmetric key. ``encryptionCertificateId`` must be one of ours (the ID we sent when
subscribing), so a notification encrypted for another certificate is refused before any work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class NotificationRefused(Exception):
    """A notification failed a check. ``reason`` is a short code safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class NotificationCertificate:
    """Our encryption certificate: ``certificate_id`` (sent as ``encryptionCertificateId``), the base64 DER
    certificate Graph encrypts for, and its private key."""

    certificate_id: str
    certificate_b64: str
    private_key: RSAPrivateKey

    @classmethod
    def from_pem(cls, pem: bytes) -> NotificationCertificate:
        """From one PEM holding the private key and the certificate (``GRAPH_CLIENT_CERT(_FILE)``).

        Raises:
            ValueError: no RSA private key or no certificate in ``pem``.
        """
        start = pem.find(b"-----BEGIN CERTIFICATE-----")
        if start < 0:
            raise ValueError("the PEM holds no certificate")
        cert = x509.load_pem_x509_certificate(pem[start:])
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, RSAPrivateKey):
            raise ValueError("the certificate's key must be RSA")
        der = cert.public_bytes(serialization.Encoding.DER)
        thumbprint = hashlib.sha256(der).hexdigest()[:32]
        return cls(certificate_id=f"vv-{thumbprint}", certificate_b64=base64.b64encode(der).decode(),
                   private_key=key)


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise NotificationRefused(f"{name}_missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NotificationRefused(f"{name}_not_base64") from None


def decrypt_resource(encrypted: Any, certificates: dict[str, NotificationCertificate]) -> dict[str, Any]:
    """The resource data of one rich notification, decrypted and parsed.

    Args:
        encrypted: the notification's ``encryptedContent`` object.
        certificates: our certificates by ``certificate_id`` (two during a rotation).

    Raises:
        NotificationRefused: ``unknown_certificate``, ``bad_data_key``, ``bad_signature``, ``bad_data``
            (or a ``*_missing`` / ``*_not_base64`` field).
    """
    if not isinstance(encrypted, dict):
        raise NotificationRefused("encrypted_content_missing")
    certificate = certificates.get(str(encrypted.get("encryptionCertificateId")))
    if certificate is None:
        raise NotificationRefused("unknown_certificate")
    data = _b64(encrypted.get("data"), "data")
    signature = _b64(encrypted.get("dataSignature"), "data_signature")
    wrapped = _b64(encrypted.get("dataKey"), "data_key")
    try:
        key = certificate.private_key.decrypt(
            wrapped, asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))  # noqa: S303 - Graph's scheme
    except ValueError:
        raise NotificationRefused("bad_data_key") from None
    if len(key) != 32:
        raise NotificationRefused("bad_data_key")
    expected = hmac.new(key, data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise NotificationRefused("bad_signature")
    try:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        value = json.loads(plain.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise NotificationRefused("bad_data") from None
    if not isinstance(value, dict):
        raise NotificationRefused("bad_data")
    return value
