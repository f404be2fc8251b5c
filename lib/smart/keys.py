"""Our signing keys for ``private_key_jwt`` and the JWKS document Epic fetches from our JWKS URL.

SMART App Launch STU 2.2, client-confidential-asymmetric.html ("Registering a client", "Authenticating to
the token endpoint"): the client registers a JWK Set URL; every key has ``kty`` and ``kid``; the assertion's
``kid`` names the key. Epic (Q-7365177) requires the JWKS URL from 2026 and caches it for up to 29 hours.

Key file (``Settings.smart_private_keys_file``): PEM, one or more RSA private keys (PKCS#1 or PKCS#8,
unencrypted), 2048 bits or more. The **first** key signs; the others are still published so a rotation can
follow Epic's advice: add the new key second, wait for the JWKS caches, move it first, wait 5 minutes, drop
the old one. ``kid`` is the RFC 7638 JWK thumbprint (SHA-256, base64url), so it is stable across restarts
and needs no configuration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from lib.smart.errors import LaunchError

#: JWS algorithm of our client assertions (SMART requires clients to support RS384; Epic accepts it).
SIGNING_ALG = "RS384"
MIN_RSA_BITS = 2048
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ((?:RSA |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL
)


class SmartKeys:
    """The RSA keys of our SMART client: the active one signs, all are published.

    Args:
        keys: RSA private keys, active first.

    Raises:
        LaunchError: ``SMART_KEYS_MISSING`` when ``keys`` is empty or a key is too short.
    """

    def __init__(self, keys: Sequence[RSAKey]) -> None:
        if not keys:
            raise LaunchError("SMART_KEYS_MISSING")
        for key in keys:
            if not key.is_private:
                raise LaunchError("SMART_KEYS_MISSING", "A key in SMART_PRIVATE_KEYS_FILE is public-only.")
            if key.raw_value.key_size < MIN_RSA_BITS:  # type: ignore[union-attr]
                raise LaunchError("SMART_KEYS_MISSING", f"SMART signing keys must have at least {MIN_RSA_BITS} bits.")
        self._keys = [_with_kid(k) for k in keys]

    @classmethod
    def from_pem(cls, pem: bytes) -> SmartKeys:
        """Load every RSA private key block of a PEM document (certificates and other blocks are skipped).

        Raises:
            LaunchError: ``SMART_KEYS_MISSING`` when no usable RSA private key is found.
        """
        blocks = [m.group(0) for m in _PEM_BLOCK.finditer(pem)]
        if any(b"ENCRYPTED" in b.split(b"\n", 1)[0] for b in blocks):
            raise LaunchError("SMART_KEYS_MISSING", "Encrypted PEM keys are not supported; store the key unencrypted "
                                                    "in Key Vault or on the protected file system.")
        keys: list[RSAKey] = []
        for block in blocks:
            try:
                keys.append(RSAKey.import_key(block))
            except Exception as exc:  # joserfc raises several types for malformed input
                raise LaunchError("SMART_KEYS_MISSING", "A PEM block in SMART_PRIVATE_KEYS_FILE is not an RSA key.") \
                    from exc
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path | None) -> SmartKeys:
        """Load the keys of ``Settings.smart_private_keys_file``.

        Raises:
            LaunchError: ``SMART_KEYS_MISSING`` when the setting is unset, the file is unreadable or holds no key.
        """
        if path is None:
            raise LaunchError("SMART_KEYS_MISSING")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LaunchError("SMART_KEYS_MISSING", "SMART_PRIVATE_KEYS_FILE cannot be read.") from exc
        return cls.from_pem(data)

    @property
    def active(self) -> RSAKey:
        """The key that signs new assertions (its ``kid`` is set)."""
        return self._keys[0]

    @property
    def active_kid(self) -> str:
        """``kid`` of the active key (RFC 7638 thumbprint)."""
        return str(self._keys[0].kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: ``{"keys": [{"kty": "RSA", "n", "e", "kid", "alg": "RS384", "use": "sig"}]}``."""
        out = []
        for key in self._keys:
            jwk = key.as_dict(private=False)
            out.append({"kty": "RSA", "n": jwk["n"], "e": jwk["e"], "kid": key.kid, "alg": SIGNING_ALG,
                        "use": "sig"})
        return {"keys": out}


def _with_kid(key: RSAKey) -> RSAKey:
    """A copy of ``key`` whose ``kid`` is its RFC 7638 thumbprint."""
    return RSAKey.import_key(key.as_dict(private=True), {"kid": key.thumbprint()})
