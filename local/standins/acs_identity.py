"""The identity REST contract of the ACS stand-in (what ``azure-communication-identity`` 1.5.0 calls).

It lives on the same endpoint as the SMS contract (one ACS resource, one connection string, one HMAC key):
:func:`local.standins.acs_sms.build_app` adds these routes.

Contract (from the SDK: ``_generated/operations/_operations.py``, ``_generated/models/_models.py``):

- ``POST /identities?api-version=2023-10-01`` ``{"createTokenWithScopes": ["voip"], "expiresInMinutes": 60}``
  (both optional) -> 201 ``{"identity": {"id": "8:acs:<resource>_<guid>"}, "accessToken": {"token",
  "expiresOn"}}`` (``accessToken`` only when scopes were asked for).
- ``POST /identities/{id}/:issueAccessToken`` ``{"scopes": [...], "expiresInMinutes"?}`` -> 200
  ``{"token", "expiresOn"}``; 404 for an unknown or deleted identity.
- ``POST /identities/{id}/:revokeAccessTokens`` -> 204; ``DELETE /identities/{id}`` -> 204.
- Every call is HMAC-signed like ``/sms`` (401 otherwise). Scopes must be known ACS scopes (``chat``,
  ``voip``, ``chat.join``, ``chat.join.limited``, ``voip.join``), ``expiresInMinutes`` within [60, 1440]:
  400 ``ValidationError`` otherwise, as the real service answers.

The token is a JWT (the Calling Web SDK reads its ``exp`` and ``skypeid`` claims; it never verifies the
signature, which only Microsoft can). Here it is HS256 with a key private to the stand-in, so it is
unusable anywhere but locally.

Control API: ``GET /_standin/identities`` lists identities with their scopes and token counts.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import OctKey

from local.standins.server import Request, Response, StandinApp, json_response

IDENTITY_API_VERSIONS = {"2021-03-07", "2022-06-01", "2022-10-01", "2023-10-01"}
SCOPES = {"chat", "voip", "chat.join", "chat.join.limited", "voip.join"}
DEFAULT_MINUTES = 24 * 60
#: The ACS resource ID inside identities and tokens (fictional).
RESOURCE_ID = "5a1e7e57-acs0-4000-8000-000000000001"
_ID = r"[^/]+"  # percent-encoded by the SDK (``8%3Aacs%3A...``)


@dataclass
class Identity:
    """One communication user the stand-in created."""

    id: str
    created: str
    tokens: int = 0
    scopes: list[str] = field(default_factory=list)
    revoked: int = 0


@dataclass
class IdentityState:
    """Identities created since the last reset, guarded by ``lock``."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    identities: dict[str, Identity] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    signing_key: OctKey = field(default_factory=lambda: OctKey.import_key(secrets.token_bytes(32)))

    def reset(self) -> None:
        """Forget every identity."""
        with self.lock:
            self.identities.clear()
            self.deleted.clear()


def _error(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def add_identity_routes(app: StandinApp, authenticate: Callable[[Request], Response | None]) -> IdentityState:
    """Add the identity contract to the ACS stand-in ``app``; ``authenticate`` is its HMAC check."""
    st = IdentityState()
    app.on_reset(st.reset)

    def checked(req: Request) -> tuple[dict[str, Any] | None, Response | None]:
        """The JSON body (``{}`` when empty) after the HMAC and api-version checks, or the error to answer."""
        denied = authenticate(req)
        if denied is not None:
            return None, denied
        version = req.arg("api-version")
        if version not in IDENTITY_API_VERSIONS:
            return None, _error(400, "UnsupportedApiVersion", f"api-version {version!r} is not supported")
        if not req.body:
            return {}, None
        body = req.json()
        if not isinstance(body, dict):
            return None, _error(400, "BadRequest", "A JSON object body is required.")
        return body, None

    def token_for(identity: Identity, scopes: Any, minutes: Any) -> tuple[dict[str, str] | None, Response | None]:
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
            return None, _error(400, "ValidationError", "Scopes must be a non-empty list of scope names.")
        unknown = sorted(set(scopes) - SCOPES)
        if unknown:
            return None, _error(400, "ValidationError", f"Unknown scopes: {', '.join(unknown)}.")
        if minutes is None:
            minutes = DEFAULT_MINUTES
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 60 <= minutes <= 1440:
            return None, _error(400, "ValidationError", "ExpiresInMinutes must be between 60 and 1440.")
        now = _now()
        expires = now + dt.timedelta(minutes=minutes)
        claims = {"skypeid": identity.id.removeprefix("8:"), "scp": 1792, "csi": str(int(now.timestamp())),
                  "exp": int(expires.timestamp()), "rgn": "amer", "acsScope": ",".join(scopes),
                  "resourceId": RESOURCE_ID, "resourceLocation": "unitedstates", "iat": int(now.timestamp())}
        token = jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, st.signing_key)
        with st.lock:
            identity.tokens += 1
            identity.scopes = sorted(set(identity.scopes) | set(scopes))
        return {"token": token, "expiresOn": _iso(expires)}, None

    def known(raw_id: str) -> Identity | None:
        with st.lock:
            return st.identities.get(urllib.parse.unquote(raw_id))

    @app.route("POST", r"/identities")
    def _create(req: Request, m: re.Match[str]) -> Response:
        body, failed = checked(req)
        if failed is not None:
            return failed
        assert body is not None
        identity = Identity(id=f"8:acs:{RESOURCE_ID}_{uuid.uuid4()}", created=_iso(_now()))
        answer: dict[str, Any] = {"identity": {"id": identity.id}}
        scopes = body.get("createTokenWithScopes")
        if scopes is not None:
            token, failed = token_for(identity, scopes, body.get("expiresInMinutes"))
            if failed is not None:
                return failed
            answer["accessToken"] = token
        elif body.get("expiresInMinutes") is not None:
            return _error(400, "ValidationError", "ExpiresInMinutes needs CreateTokenWithScopes.")
        with st.lock:
            st.identities[identity.id] = identity
        return json_response(answer, 201)

    @app.route("POST", rf"/identities/(?P<id>{_ID})/:issueAccessToken")
    def _issue(req: Request, m: re.Match[str]) -> Response:
        body, failed = checked(req)
        if failed is not None:
            return failed
        assert body is not None
        identity = known(m.group("id"))
        if identity is None:
            return _error(404, "IdentityNotFound", "Identity not found.")
        token, failed = token_for(identity, body.get("scopes"), body.get("expiresInMinutes"))
        return failed if failed is not None else json_response(token, 200)

    @app.route("POST", rf"/identities/(?P<id>{_ID})/:revokeAccessTokens")
    def _revoke(req: Request, m: re.Match[str]) -> Response:
        _, failed = checked(req)
        if failed is not None:
            return failed
        identity = known(m.group("id"))
        if identity is None:
            return _error(404, "IdentityNotFound", "Identity not found.")
        with st.lock:
            identity.revoked += 1
        return Response(204)

    @app.route("DELETE", rf"/identities/(?P<id>{_ID})")
    def _delete(req: Request, m: re.Match[str]) -> Response:
        _, failed = checked(req)
        if failed is not None:
            return failed
        with st.lock:
            identity_id = urllib.parse.unquote(m.group("id"))
            if st.identities.pop(identity_id, None) is not None:
                st.deleted.add(identity_id)
        return Response(204)

    @app.route("GET", r"/_standin/identities")
    def _list(req: Request, m: re.Match[str]) -> Response:
        with st.lock:
            return json_response([identity.__dict__ for identity in st.identities.values()])

    return st
