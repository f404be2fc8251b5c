"""Plugin-free helpers for tests that use the local services (no pytest import here).

Typical session fixture (in a ``conftest.py``)::

    @pytest.fixture(scope="session")
    def services():
        with local.testing.running_services("test") as handle:
            yield handle

Helpers:

- :func:`running_services`: start a profile, yield its :class:`~local.services.ServiceHandle`, stop what was
  started (services that were already running are left running).
- :func:`patched_environ`: set ``handle.settings`` (or any mapping) in ``os.environ`` temporarily.
- :func:`reset_standins`: ``POST /_standin/reset`` on the three stand-ins (keeps registrations).
- :class:`JwksServer`: a loopback HTTP server publishing a JWK Set, the way our app publishes its SMART keys,
  so the Epic stand-in can verify client assertions without the app running.
- :func:`rsa_public_jwk`, :func:`client_assertion`: build a JWK and a SMART ``private_key_jwt`` assertion.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from local.services import ServiceHandle, start
from local.standins.jose import SigningKey, b64url

__all__ = [
    "JwksServer",
    "client_assertion",
    "patched_environ",
    "reset_standins",
    "rsa_public_jwk",
    "running_services",
]


@contextmanager
def running_services(profile: str = "test", root: Path | None = None, *,
                     timeout: float = 60.0) -> Iterator[ServiceHandle]:
    """Start ``profile``'s services, yield the handle, then stop the ones this call started.

    Raises ``local.services.ServiceError`` (one-line message) when they cannot start, e.g. Node.js missing.
    """
    handle = start(profile, root, timeout=timeout)
    try:
        yield handle
    finally:
        handle.stop()


@contextmanager
def patched_environ(settings: Mapping[str, str]) -> Iterator[None]:
    """Set ``settings`` in ``os.environ`` for the block, restoring previous values afterwards."""
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def reset_standins(handle: ServiceHandle) -> None:
    """Clear recorded calls, issued tokens and scripted faults of the three stand-ins."""
    for name in ("epic", "graph", "acs"):
        resp = requests.post(f"{handle.url(name)}/_standin/reset", verify=str(handle.material.ca_cert),
                             timeout=5)
        resp.raise_for_status()


def rsa_public_jwk(private_key: Any, *, alg: str = "RS384", kid: str | None = None) -> dict[str, Any]:
    """Public JWK of an RSA or EC private key (cryptography object or PEM bytes/str).

    ``kid`` defaults to the base64url SHA-256 of the DER public key.
    """
    if isinstance(private_key, (bytes, str)):
        data = private_key.encode() if isinstance(private_key, str) else private_key
        private_key = serialization.load_pem_private_key(data, password=None)
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = SigningKey(private_key).public_jwk()
        jwk["alg"] = alg
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        nums = private_key.public_key().public_numbers()
        size = (private_key.curve.key_size + 7) // 8
        jwk = {"kty": "EC", "crv": {256: "P-256", 384: "P-384", 521: "P-521"}[private_key.curve.key_size],
               "x": b64url(nums.x.to_bytes(size, "big")), "y": b64url(nums.y.to_bytes(size, "big")),
               "use": "sig", "alg": alg}
        der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        jwk["kid"] = b64url(hashlib.sha256(der).digest())
    else:
        raise TypeError("RSA or EC private key expected")
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def client_assertion(private_key: Any, *, client_id: str, token_url: str, kid: str, alg: str = "RS384",
                     lifetime: int = 240, jti: str | None = None, extra_claims: dict[str, Any] | None = None,
                     extra_headers: dict[str, Any] | None = None) -> str:
    """A SMART ``private_key_jwt`` assertion: ``iss`` = ``sub`` = client_id, ``aud`` = token URL, ``exp`` =
    now + ``lifetime`` seconds, random ``jti`` (unless given), header ``kid`` (+ ``extra_headers``)."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "jti": jti or str(uuid.uuid4()),
              "iat": now, "nbf": now, "exp": now + lifetime}
    claims.update(extra_claims or {})
    headers = {"kid": kid, "typ": "JWT"}
    headers.update(extra_headers or {})
    return jwt.encode(claims, private_key, algorithm=alg, headers=headers)


class JwksServer:
    """Serve a JWK Set at ``http://127.0.0.1:{port}/jwks`` from a background thread (loopback only).

    Use as a context manager; ``url`` is the JWK Set URL; assign ``keys`` to rotate.
    """

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.hits = 0
        outer = self

        class _H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                outer.hits += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
