"""RSA keys generated once per test session (2048 bits: generation is the slow part)."""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


@lru_cache(maxsize=8)
def rsa_pem(name: str, bits: int = 2048) -> bytes:
    """A PKCS#8 PEM RSA private key; the same ``name`` gives the same key within a session."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@lru_cache(maxsize=8)
def ec_pem(name: str, curve: str = "P-384") -> bytes:
    """A SEC1 PEM EC private key (P-384 by default); the same ``name`` gives the same key within a session."""
    curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
    key = ec.generate_private_key(curves[curve])
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
