"""Our signing keys for ``private_key_jwt`` and the JWKS documents Epic fetches from our JWKS URLs.

SMART App Launch STU 2.2, client-confidential-asymmetric.html ("Registering a client", "Authenticating to
the token endpoint"): the client registers a JWK Set URL; every key has ``kty`` and ``kid``; the assertion's
``kid`` names the key; clients must be able to sign with **RS384 and ES384**. Epic (Q-7365177) requires the
JWKS URL from 2026, caches it for up to 29 hours, and wants **separate URLs (and keys) for non-production
and production**.

Key material (PEM, one or more unencrypted private keys, PKCS#1/SEC1 or PKCS#8):
- RSA, 2048 bits or more -> published with ``alg`` ``RS384``;
- EC on P-384 -> published with ``alg`` ``ES384`` (other curves are refused).

Rotation: every key of the PEM is published; the **first key of the algorithm's family signs**. Follow Epic's
advice: add the new key second, wait for the JWKS caches (Epic: up to 29 h, or our ``max-age``), move it
first, wait 5 minutes, drop the old one. A key published but not first is still accepted by Epic during the
switch (the assertion's ``kid`` picks it). ``kid`` is the RFC 7638 JWK thumbprint (SHA-256, base64url), so it
is stable across restarts and needs no configuration.

Per environment kind (:class:`SmartKeyring`): ``test`` keys come from ``SMART_PRIVATE_KEYS`` /
``SMART_PRIVATE_KEYS_FILE`` and are served at ``/api/.well-known/jwks.json`` (and ``/jwks/test.json``);
``production`` keys from ``SMART_PRIVATE_KEYS_PRODUCTION`` / ``SMART_PRIVATE_KEYS_PRODUCTION_FILE`` at
``/api/.well-known/jwks/production.json``. A production environment never signs with a test key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, RSAKey

from lib.smart.errors import LaunchError

#: Default JWS algorithm of our client assertions (SMART requires clients to support RS384 and ES384).
SIGNING_ALG = "RS384"
SUPPORTED_ALGS = ("RS384", "ES384")
MIN_RSA_BITS = 2048
EC_CURVE = "P-384"
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL
)
SigningKey = RSAKey | ECKey


def key_alg(key: SigningKey) -> str:
    """The JWS algorithm we use with ``key``: ``RS384`` for RSA, ``ES384`` for EC P-384."""
    return "RS384" if isinstance(key, RSAKey) else "ES384"


class SmartKeys:
    """The keys of our SMART client for one environment kind: the first of each family signs, all are published.

    Args:
        keys: RSA (>= 2048 bits) and/or EC P-384 private keys, in order of preference.
        setting: the setting name used in error hints (``SMART_PRIVATE_KEYS_FILE``...).

    Raises:
        LaunchError: ``SMART_KEYS_MISSING`` when ``keys`` is empty, a key is public-only, an RSA key is too
            short or an EC key is not on P-384.
    """

    def __init__(self, keys: Sequence[SigningKey], *, setting: str = "SMART_PRIVATE_KEYS_FILE") -> None:
        if not keys:
            raise LaunchError("SMART_KEYS_MISSING")
        for key in keys:
            if not key.is_private:
                raise LaunchError("SMART_KEYS_MISSING", f"A key in {setting} is public-only.")
            if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:  # type: ignore[union-attr]
                raise LaunchError("SMART_KEYS_MISSING", f"SMART signing keys must have at least {MIN_RSA_BITS} bits.")
            if isinstance(key, ECKey) and key.curve_name != EC_CURVE:
                raise LaunchError("SMART_KEYS_MISSING", f"EC keys in {setting} must be on {EC_CURVE} (ES384).")
        self._keys: list[SigningKey] = [_with_kid(k) for k in keys]

    @classmethod
    def from_pem(cls, pem: bytes, *, setting: str = "SMART_PRIVATE_KEYS_FILE") -> SmartKeys:
        """Load every RSA / EC private key block of a PEM document (certificates and other blocks are skipped).

        Raises:
            LaunchError: ``SMART_KEYS_MISSING`` when no usable private key is found.
        """
        blocks = [m.group(0) for m in _PEM_BLOCK.finditer(pem)]
        if any(b"ENCRYPTED" in b.split(b"\n", 1)[0] for b in blocks):
            raise LaunchError("SMART_KEYS_MISSING", "Encrypted PEM keys are not supported; store the key unencrypted "
                                                    "in Key Vault or on the protected file system.")
        keys: list[SigningKey] = []
        for block in blocks:
            keys.append(_import_private_key(block, setting))
        return cls(keys, setting=setting)

    @classmethod
    def from_file(cls, path: Path | None, *, setting: str = "SMART_PRIVATE_KEYS_FILE") -> SmartKeys:
        """Load the keys of a PEM file setting.

        Raises:
            LaunchError: ``SMART_KEYS_MISSING`` when the setting is unset, the file is unreadable or holds no key.
        """
        if path is None:
            raise LaunchError("SMART_KEYS_MISSING")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LaunchError("SMART_KEYS_MISSING", f"{setting} cannot be read.") from exc
        return cls.from_pem(data, setting=setting)

    @property
    def active(self) -> SigningKey:
        """The first key (it signs when no algorithm is asked for)."""
        return self._keys[0]

    @property
    def active_kid(self) -> str:
        """``kid`` of :attr:`active` (RFC 7638 thumbprint)."""
        return str(self._keys[0].kid)

    def signer(self, alg: str | None = None) -> tuple[SigningKey, str]:
        """``(key, alg)`` that signs an assertion with ``alg`` (``RS384``/``ES384``), or with the first key's own
        algorithm when ``alg`` is ``None``: the first key of that family (rotation order).

        Raises:
            LaunchError: ``SMART_KEYS_MISSING`` when ``alg`` is unsupported or no key of its family is loaded.
        """
        if alg is None:
            return self._keys[0], key_alg(self._keys[0])
        if alg not in SUPPORTED_ALGS:
            raise LaunchError("SMART_KEYS_MISSING", f"The environment asks for assertion algorithm {alg!r}; "
                                                    f"supported: {', '.join(SUPPORTED_ALGS)}.")
        for key in self._keys:
            if key_alg(key) == alg:
                return key, alg
        family = "an RSA key (2048+ bits)" if alg == "RS384" else "an EC P-384 key"
        raise LaunchError("SMART_KEYS_MISSING", f"The environment signs with {alg}: add {family} to the "
                                                "environment kind's SMART key setting.")

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set, every key with ``kid``, ``alg`` (RS384 / ES384) and ``use`` ``sig``:
        ``{"keys": [{"kty": "RSA", "n", "e", ...}, {"kty": "EC", "crv": "P-384", "x", "y", ...}]}``."""
        out = []
        for key in self._keys:
            jwk = key.as_dict(private=False)
            if isinstance(key, RSAKey):
                public = {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}
            else:
                public = {"kty": "EC", "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"]}
            out.append({**public, "kid": key.kid, "alg": key_alg(key), "use": "sig"})
        return {"keys": out}


class SmartKeyring:
    """Our keys per environment kind (``test`` / ``production``), each loaded on first use.

    Args:
        loaders: kind -> a function returning that kind's :class:`SmartKeys` (raising ``LaunchError``
            ``SMART_KEYS_MISSING`` when its setting is missing; not cached then, so a fix needs no restart).
    """

    def __init__(self, loaders: dict[str, Callable[[], SmartKeys]]) -> None:
        self._loaders = loaders
        self._loaded: dict[str, SmartKeys] = {}

    def for_kind(self, kind: str) -> SmartKeys:
        """The keys of environment kind ``kind``.

        Raises:
            LaunchError: ``SMART_KEYS_MISSING`` (unknown kind, or its keys are not configured).
        """
        if kind not in self._loaded:
            loader = self._loaders.get(kind)
            if loader is None:
                raise LaunchError("SMART_KEYS_MISSING", f"No SMART keys are configured for {kind!r} environments.")
            self._loaded[kind] = loader()
        return self._loaded[kind]

    __call__ = for_kind


def _import_private_key(block: bytes, setting: str) -> SigningKey:
    """One PEM private key block as a joserfc RSA or EC key."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        raw = load_pem_private_key(block, password=None)
    except Exception as exc:  # cryptography raises ValueError/TypeError/UnsupportedAlgorithm
        raise LaunchError("SMART_KEYS_MISSING", f"A PEM block in {setting} is not a readable private key.") from exc
    if isinstance(raw, rsa.RSAPrivateKey):
        return RSAKey.import_key(block)
    if isinstance(raw, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(block)
    raise LaunchError("SMART_KEYS_MISSING", f"A PEM block in {setting} is neither an RSA nor an EC key.")


def _with_kid(key: SigningKey) -> SigningKey:
    """A copy of ``key`` whose ``kid`` is its RFC 7638 thumbprint."""
    return type(key).import_key(key.as_dict(private=True), {"kid": key.thumbprint()})
