"""Entra ID (v2.0 endpoints) + Microsoft Graph ``onlineMeetings`` stand-in.

Run: ``python -m local.standins.graph --port 9402 --tls-dir .local/tls [--tenant GUID]``.

Entra (Microsoft identity platform v2.0; MSAL Python works unchanged with
``authority=f"{base}/{tenant}"`` and ``instance_discovery=False``, or ``oidc_authority=f"{base}/{tenant}/v2.0"``):

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: issuer ``{base}/{tenant}/v2.0``, token,
  authorize and JWKS endpoints.
- ``GET /{tenant}/.well-known/openid-configuration`` (v1): issuer ``https://sts.windows.net/{tenant}/`` (the
  issuer of access tokens and of Graph's notification ``validationTokens``), ``jwks_uri``
  ``{base}/common/discovery/keys``.
- ``GET /{tenant|common|organizations}/discovery/v2.0/keys`` and ``.../discovery/keys``: the stand-in's RS256
  signing keys (access, id and validation tokens): the active key and every key it rotated away from
  (``POST /_standin/keys/rotate``), as the real endpoint keeps publishing keys after they stop signing.
- ``POST /{tenant}/oauth2/v2.0/token``:
  - ``client_credentials`` with a certificate ``client_assertion`` (header ``x5t`` = SHA-1 or ``x5t#S256`` =
    SHA-256 thumbprint of the registered certificate; RS256 or PS256; ``iss`` = ``sub`` = client_id,
    ``aud`` = this token URL, ``exp`` at most 10 minutes ahead, unique ``jti``); ``scope`` must be
    ``https://graph.microsoft.com/.default``. Returns a JWT access token (``roles``).
  - ``authorization_code`` (delegated sign-in; PKCE checked when a challenge was sent) and
    ``refresh_token``: return ``access_token`` (``scp``), ``id_token`` (``oid``, ``tid``, ``nonce``),
    ``client_info``, ``refresh_token``.
- ``GET /{tenant}/oauth2/v2.0/authorize``: no UI; redirects back at once with a code for the configured
  sign-in user (``response_mode`` query or form_post).

Graph (``/v1.0``, Bearer token from above required):

- ``POST /v1.0/users/{userId}/onlineMeetings/createOrGet`` (and ``/v1.0/me/...`` with a delegated token):
  ``externalId`` required; unique key (tenant, user, externalId): 201 on create, 200 with the same meeting
  afterwards. Unknown user -> 404; app token on a user without an application access policy -> 403.
- ``GET /v1.0/users/{userId}/onlineMeetings/{meetingId}``; ``PATCH`` the same URL (the organizer's meeting only,
  404 otherwise): ``startDateTime`` (with or without ``endDateTime``), ``subject``, ``lobbyBypassSettings``
  (checked as on create: :func:`lobby_settings`); answers the updated meeting.
- ``GET /l/meetup-join/...``: a tiny HTML page standing in for the Teams join page (visits are recorded).
- ``/beta/subscriptions``: meeting call-event subscriptions with encrypted rich notifications and scripted
  rosters; ``/v1.0/communications/callRecords``; ``/v1.0/users/{id}/onlineMeetings/{id}/attendanceReports``
  (:mod:`local.standins.graph_presence`).

Errors use Graph's ``{"error": {"code", "message", "innerError"}}`` and Entra's ``{"error",
"error_description", "error_codes", ...}`` shapes. Control API: ``local/standins/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import html
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from local.standins.jose import (
    ClientAuthError,
    JtiRegistry,
    SigningKey,
    b64url,
    check_assertion_claims,
    unverified_parts,
    verify_jwt_signature,
)
from local.standins.server import (
    HttpError,
    Request,
    Response,
    StandinApp,
    html_response,
    json_response,
    redirect,
    run_cli,
)

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_TENANT_ID", "GRAPH_RESOURCE", "GraphState", "build_app", "main"]

DEFAULT_TENANT_ID = "5a1e7e57-0000-4000-8000-000000000001"
DEFAULT_CLIENT_ID = "5a1e7e57-0000-4000-8000-0000000000a1"
GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
APP_ROLE = "OnlineMeetings.ReadWrite.All"
DELEGATED_SCOPE = "OnlineMeetings.ReadWrite"
TOKEN_TTL = 3599
CODE_TTL = 600
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
LOBBY_SCOPES = {"organizer", "organization", "organizationAndFederated", "everyone", "invited",
                "organizationExcludingGuests"}
PREFER_UNKNOWN = {"invited", "organizationExcludingGuests"}


def lobby_state(meeting: dict[str, Any], organizer_id: str | None, tenant: str, joiner: dict[str, Any]) -> str:
    """``Connected`` or ``InLobby``: where a joiner lands under the meeting's ``lobbyBypassSettings``.

    Graph ``lobbyBypassSettings.scope``: ``organizer`` (only the organizer skips the lobby), ``organization``
    (people of the organizer's tenant, its guests included), ``organizationAndFederated`` (also users of other
    tenants), ``organizationExcludingGuests``, ``invited`` (the organizer and the invited attendees),
    ``everyone``; dial-in callers skip it only with ``isDialInBypassEnabled``. ``joiner``:
    ``{"user_id", "tenant", "guest"}`` for a signed-in Teams user, ``{"dial_in": true}`` for a phone, ``{}``
    for an anonymous guest (the patient's browser or ACS identity).
    """
    settings = meeting.get("lobbyBypassSettings") or {}
    scope = settings.get("scope", "organization")
    user_id = joiner.get("user_id")
    if joiner.get("dial_in"):
        return "Connected" if settings.get("isDialInBypassEnabled") or scope == "everyone" else "InLobby"
    if user_id and user_id == organizer_id:
        return "Connected"
    if scope == "everyone":
        return "Connected"
    if not user_id:
        return "InLobby"
    same_tenant = joiner.get("tenant", tenant) == tenant
    guest = bool(joiner.get("guest"))
    invited = any(((a.get("identity") or {}).get("user") or {}).get("id") == user_id
                  for a in (meeting.get("participants") or {}).get("attendees") or () if isinstance(a, dict))
    admitted = {
        "organizer": False,
        "organization": same_tenant,
        "organizationAndFederated": True,
        "organizationExcludingGuests": same_tenant and not guest,
        "invited": invited,
    }.get(scope, False)
    return "Connected" if admitted else "InLobby"


@dataclass
class App:
    """An app registration: client id, tenant, certificate (public key + thumbprints), redirect URIs."""

    client_id: str
    tenant: str
    certificate_pem: str
    public_key: Any
    x5t: str
    x5t_s256: str
    redirect_uris: list[str]
    roles: list[str]


@dataclass
class User:
    """A directory user: object id, UPN, display name, whether an application access policy covers it."""

    id: str
    user_principal_name: str
    display_name: str
    policy: bool = True


@dataclass
class AuthCode:
    """A delegated authorization code."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    nonce: str | None
    challenge: str | None
    challenge_method: str | None
    user_id: str
    issued: float
    used: bool = False


@dataclass
class GraphState:
    """Mutable state, guarded by ``lock``."""

    base: str
    tenant: str
    key: SigningKey = field(default_factory=SigningKey)
    #: keys that signed before a rotation: still published (tokens they signed stay valid), no longer signing
    previous_keys: list[SigningKey] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    jtis: JtiRegistry = field(default_factory=JtiRegistry)
    assertions: dict[str, str] = field(default_factory=dict)  # jti -> the signed client assertion
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    signin_user: str | None = None
    codes: dict[str, AuthCode] = field(default_factory=dict)
    refresh_tokens: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    meetings: dict[str, dict[str, Any]] = field(default_factory=dict)
    meeting_keys: dict[tuple[str, str, str], str] = field(default_factory=dict)
    meeting_owner: dict[str, str] = field(default_factory=dict)
    joins: list[dict[str, Any]] = field(default_factory=list)
    token_calls: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        """Forget meetings, codes, tokens, jtis and recorded calls (keep apps and users)."""
        with self.lock:
            self.codes.clear()
            self.refresh_tokens.clear()
            self.meetings.clear()
            self.meeting_keys.clear()
            self.meeting_owner.clear()
            self.joins.clear()
            self.token_calls.clear()
            self.jtis.clear()
            self.assertions.clear()

    def published_keys(self) -> list[SigningKey]:
        """The signing key and the keys it replaced, newest first."""
        with self.lock:
            return [self.key, *self.previous_keys]

    def jwks(self) -> dict[str, Any]:
        """The JWK Set of :meth:`published_keys`."""
        return {"keys": [k.public_jwk() for k in self.published_keys()]}

    def rotate(self) -> SigningKey:
        """A new signing key; the old one stays published."""
        with self.lock:
            self.previous_keys.insert(0, self.key)
            self.key = SigningKey()
            return self.key


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _graph_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "innerError": {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}}}
    return json_response(body, status, headers)


def _aad_error(error: str, code: int, description: str, status: int = 400) -> HttpError:
    body = {"error": error, "error_description": f"AADSTS{code}: {description}", "error_codes": [code],
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}
    return HttpError(json_response(body, status))


def _fault_body(status: int) -> Any:
    code = {429: "TooManyRequests", 503: "ServiceUnavailable", 500: "InternalServerError",
            504: "GatewayTimeout"}.get(status, "UnknownError")
    return {"error": {"code": code, "message": f"scripted fault {status}",
                      "innerError": {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                     "request-id": str(uuid.uuid4())}}}


def lobby_settings(lobby: Any, req: Request, current: dict[str, Any]) -> dict[str, Any]:
    """``lobbyBypassSettings`` of a create or update body over ``current``, checked as Graph checks them: an
    object, a known ``scope`` (the evolvable ``invited`` / ``organizationExcludingGuests`` only with ``Prefer:
    include-unknown-enum-members``), a boolean ``isDialInBypassEnabled``.

    Raises:
        HttpError: 400 ``BadRequest``.
    """
    if not isinstance(lobby, dict):
        raise HttpError(_graph_error(400, "BadRequest", "lobbyBypassSettings must be an object."))
    scope = lobby.get("scope", current.get("scope", "organization"))
    prefer = (req.header("Prefer") or "").lower()
    if scope not in LOBBY_SCOPES or (scope in PREFER_UNKNOWN and "include-unknown-enum-members" not in prefer):
        raise HttpError(_graph_error(400, "BadRequest", f"Invalid lobbyBypassSettings.scope '{scope}'."))
    dial_in = lobby.get("isDialInBypassEnabled", current.get("isDialInBypassEnabled", False))
    if not isinstance(dial_in, bool):
        raise HttpError(_graph_error(400, "BadRequest", "lobbyBypassSettings.isDialInBypassEnabled must be a "
                                                        "boolean."))
    return {"scope": scope, "isDialInBypassEnabled": dial_in}


def _parse_time(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise HttpError(_graph_error(400, "BadRequest", f"{name} must be an ISO 8601 date-time string"))
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise HttpError(_graph_error(400, "BadRequest", f"{name} is not a valid date-time")) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def build_app(base_url: str, *, tenant: str = DEFAULT_TENANT_ID) -> StandinApp:
    """Build the Entra + Graph stand-in for ``base_url`` serving one tenant ``tenant``."""
    app = StandinApp("graph", base_url, fault_body=_fault_body)
    st = GraphState(base=app.base_url, tenant=tenant)
    app.state = st  # type: ignore[attr-defined]
    app.on_reset(st.reset)

    def issuer() -> str:
        return f"{st.base}/{st.tenant}/v2.0"

    def token_url() -> str:
        return f"{st.base}/{st.tenant}/oauth2/v2.0/token"

    def check_tenant(tenant_in_path: str) -> None:
        if tenant_in_path != st.tenant:
            raise _aad_error("invalid_request", 90002, f"Tenant '{tenant_in_path}' not found.")

    # ---- Entra discovery ---------------------------------------------------------------------------
    @app.route("GET", r"/([^/]+)/v2\.0/\.well-known/openid-configuration")
    def _openid_configuration(req: Request, m: re.Match[str]) -> Response:
        check_tenant(m.group(1))
        return json_response({
            "issuer": issuer(),
            "authorization_endpoint": f"{st.base}/{st.tenant}/oauth2/v2.0/authorize",
            "token_endpoint": token_url(),
            "jwks_uri": f"{st.base}/{st.tenant}/discovery/v2.0/keys",
            "end_session_endpoint": f"{st.base}/{st.tenant}/oauth2/v2.0/logout",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "oid", "tid",
                                 "preferred_username"],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": None,
            "cloud_instance_name": "microsoftonline.com",
        })

    @app.route("GET", r"/([^/]+)/\.well-known/openid-configuration")
    def _openid_configuration_v1(req: Request, m: re.Match[str]) -> Response:
        if m.group(1) != "common":
            check_tenant(m.group(1))
        tenant_id = st.tenant if m.group(1) != "common" else "{tenantid}"
        return json_response({
            "issuer": f"https://sts.windows.net/{tenant_id}/",
            "authorization_endpoint": f"{st.base}/{m.group(1)}/oauth2/authorize",
            "token_endpoint": f"{st.base}/{m.group(1)}/oauth2/token",
            "jwks_uri": f"{st.base}/common/discovery/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": None,
            "cloud_instance_name": "microsoftonline.com",
        })

    @app.route("GET", r"/([^/]+)/discovery/(?:v2\.0/)?keys")
    def _keys(req: Request, m: re.Match[str]) -> Response:
        if m.group(1) not in (st.tenant, "common", "organizations"):
            check_tenant(m.group(1))
        return json_response(st.jwks())

    # ---- authorize (delegated) ---------------------------------------------------------------------
    @app.route("GET", r"/([^/]+)/oauth2/v2\.0/authorize")
    def _authorize(req: Request, m: re.Match[str]) -> Response:
        check_tenant(m.group(1))
        params = {k: v[0] for k, v in req.query.items()}
        with st.lock:
            reg = st.apps.get(params.get("client_id", ""))
        if reg is None:
            raise _aad_error("unauthorized_client", 700016, "Application not found in the directory.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in reg.redirect_uris:
            raise _aad_error("invalid_request", 50011, "The redirect URI does not match the app's.")
        state = params.get("state")
        mode = params.get("response_mode", "query")

        def back(values: dict[str, str]) -> Response:
            if state is not None:
                values["state"] = state
            if mode == "form_post":
                inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                                 for k, v in values.items())
                return html_response(
                    f'<!doctype html><html><body onload="document.forms[0].submit()">'
                    f'<form method="post" action="{html.escape(redirect_uri)}">{inputs}'
                    f'<noscript><button>Continue</button></noscript></form></body></html>')
            sep = "&" if "?" in redirect_uri else "?"
            answer = redirect(redirect_uri + sep + urllib.parse.urlencode(values))
            # Entra's sign-in pages refuse to be framed.
            answer.headers.update({"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"})
            return answer

        if params.get("response_type") != "code":
            return back({"error": "unsupported_response_type", "error_description": "AADSTS700054"})
        scopes = params.get("scope", "").split()
        if "openid" not in scopes:
            return back({"error": "invalid_request", "error_description": "AADSTS900144: scope openid required"})
        method = params.get("code_challenge_method")
        challenge = params.get("code_challenge")
        if challenge and method not in (None, "plain", "S256"):
            return back({"error": "invalid_request", "error_description": "AADSTS501491: bad method"})
        with st.lock:
            user_id = st.signin_user or next(iter(st.users), None)
            if user_id is None:
                return back({"error": "login_required", "error_description": "AADSTS50058: no user"})
            code = secrets.token_urlsafe(48)
            st.codes[code] = AuthCode(reg.client_id, redirect_uri, scopes, params.get("nonce"), challenge,
                                      method or ("plain" if challenge else None), user_id, time.time())
        return back({"code": code, "session_state": str(uuid.uuid4())})

    # ---- token -------------------------------------------------------------------------------------
    def authenticate(form: dict[str, str]) -> App:
        client_id = form.get("client_id", "")
        with st.lock:
            reg = st.apps.get(client_id)
        if reg is None or reg.tenant != st.tenant:
            raise _aad_error("unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the directory.")
        if form.get("client_secret"):
            raise _aad_error("invalid_client", 7000215, "Invalid client secret provided.", 401)
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            raise _aad_error("invalid_client", 7000218,
                             "The request body must contain client_assertion or client_secret.", 401)
        assertion = form["client_assertion"]
        try:
            header, claims = unverified_parts(assertion)
            alg = header.get("alg")
            if alg not in ("RS256", "PS256"):
                raise ClientAuthError("client assertion alg must be RS256 or PS256")
            # MSAL Python keeps the base64url '=' padding on thumbprints; Entra accepts both forms.
            if header.get("x5t#S256"):
                if str(header["x5t#S256"]).rstrip("=") != reg.x5t_s256:
                    raise ClientAuthError("the x5t#S256 thumbprint is not a registered certificate")
            elif header.get("x5t"):
                if str(header["x5t"]).rstrip("=") != reg.x5t:
                    raise ClientAuthError("the x5t thumbprint is not a registered certificate")
            else:
                raise ClientAuthError("client assertion header needs x5t or x5t#S256")
            verify_jwt_signature(assertion, reg.public_key, alg)
            # Entra accepts the *same* signed assertion again while it is valid: MSAL caches one assertion
            # for up to 9 minutes and uses it for every token request of that client. A different assertion
            # reusing a jti is still a replay.
            with st.lock:
                reused = st.assertions.get(str(claims.get("jti"))) == assertion
                st.assertions[str(claims.get("jti"))] = assertion
            check_assertion_claims(claims, client_id=client_id, audience=token_url(),
                                   jtis=JtiRegistry() if reused else st.jtis, max_lifetime=600)
        except ClientAuthError as exc:
            raise _aad_error("invalid_client", 700027, f"Client assertion failed validation: {exc}",
                             401) from exc
        return reg

    def access_token(claims: dict[str, Any]) -> str:
        now = int(time.time())
        base = {"aud": GRAPH_RESOURCE, "iss": f"https://sts.windows.net/{st.tenant}/", "iat": now,
                "nbf": now, "exp": now + TOKEN_TTL, "tid": st.tenant, "ver": "1.0",
                "uti": b64url(secrets.token_bytes(16))}
        base.update(claims)
        return st.key.sign(base)

    def delegated_response(reg: App, user_id: str, scopes: list[str], nonce: str | None) -> dict[str, Any]:
        with st.lock:
            user = st.users.get(user_id)
        if user is None:
            raise _aad_error("invalid_grant", 50034, "The user account does not exist in the directory.")
        now = int(time.time())
        api_scopes = [s.rsplit("/", 1)[-1] for s in scopes if s not in OIDC_SCOPES]
        at = access_token({"oid": user.id, "sub": b64url(hashlib.sha256(f"{user.id}|graph".encode()).digest()),
                           "appid": reg.client_id, "scp": " ".join(api_scopes) or "User.Read",
                           "upn": user.user_principal_name, "name": user.display_name, "idtyp": "user"})
        id_claims: dict[str, Any] = {
            "iss": issuer(), "aud": reg.client_id, "iat": now, "nbf": now, "exp": now + 3600,
            "sub": b64url(hashlib.sha256(f"{user.id}|{reg.client_id}".encode()).digest()),
            "oid": user.id, "tid": st.tenant, "name": user.display_name,
            "preferred_username": user.user_principal_name, "ver": "2.0",
        }
        if nonce:
            id_claims["nonce"] = nonce
        refresh = secrets.token_urlsafe(48)
        with st.lock:
            st.refresh_tokens[refresh] = (reg.client_id, user.id, scopes)
        client_info = b64url(json.dumps({"uid": user.id, "utid": st.tenant}).encode())
        return {"token_type": "Bearer", "scope": " ".join(
                    [f"{GRAPH_RESOURCE}/{s}" for s in api_scopes] + [s for s in scopes if s in OIDC_SCOPES]),
                "expires_in": TOKEN_TTL, "ext_expires_in": TOKEN_TTL, "access_token": at,
                "refresh_token": refresh, "id_token": st.key.sign(id_claims), "client_info": client_info}

    @app.route("POST", r"/([^/]+)/oauth2/v2\.0/token")
    def _token(req: Request, m: re.Match[str]) -> Response:
        check_tenant(m.group(1))
        form = req.form()
        grant_type = form.get("grant_type", "")
        with st.lock:
            st.token_calls.append({"grant_type": grant_type, "client_id": form.get("client_id"),
                                   "scope": form.get("scope")})
        if grant_type not in ("client_credentials", "authorization_code", "refresh_token"):
            raise _aad_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        reg = authenticate(form)
        if grant_type == "client_credentials":
            scopes = form.get("scope", "").split()
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                raise _aad_error("invalid_scope", 1002012, "The provided value for scope is not valid. "
                                 "Client credential flows must have a scope value with /.default suffixed.")
            resource = scopes[0][: -len("/.default")]
            if resource not in (GRAPH_RESOURCE, GRAPH_APP_ID):
                raise _aad_error("invalid_resource", 500011,
                                 f"The resource principal named {resource} was not found in the tenant.")
            token = access_token({"appid": reg.client_id, "azp": reg.client_id, "oid": str(
                uuid.uuid5(uuid.NAMESPACE_URL, reg.client_id)), "sub": reg.client_id, "roles": reg.roles,
                "idtyp": "app"})
            return json_response({"token_type": "Bearer", "expires_in": TOKEN_TTL,
                                  "ext_expires_in": TOKEN_TTL, "access_token": token})
        if grant_type == "refresh_token":
            with st.lock:
                entry = st.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if entry is None or entry[0] != reg.client_id:
                raise _aad_error("invalid_grant", 9002313, "Invalid refresh token.")
            return json_response(delegated_response(reg, entry[1], entry[2], None))
        with st.lock:
            code = st.codes.get(form.get("code", ""))
            if code is None or code.used:
                raise _aad_error("invalid_grant", 54005, "OAuth2 Authorization code was already redeemed "
                                 "or is unknown.")
            code.used = True
        if time.time() - code.issued > CODE_TTL:
            raise _aad_error("invalid_grant", 70008, "The provided authorization code has expired.")
        if code.client_id != reg.client_id:
            raise _aad_error("invalid_grant", 70000, "The code was issued to another client.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise _aad_error("invalid_grant", 50148, "The redirect_uri does not match the authorization request.")
        if code.challenge:
            verifier = form.get("code_verifier", "")
            if code.challenge_method == "S256":
                expected = b64url(hashlib.sha256(verifier.encode()).digest())
            else:
                expected = verifier
            if not verifier or expected != code.challenge:
                raise _aad_error("invalid_grant", 501481, "The Code_Verifier does not match the code_challenge.")
        return json_response(delegated_response(reg, code.user_id, code.scopes, code.nonce))

    # ---- Graph -------------------------------------------------------------------------------------
    def bearer(req: Request) -> dict[str, Any]:
        auth = req.header("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HttpError(_graph_error(401, "InvalidAuthenticationToken", "Access token is empty."))
        try:
            kid = jwt.get_unverified_header(value.strip()).get("kid")
            signer = next((k for k in st.published_keys() if k.kid == kid), st.key)
            claims = signer.decode(value.strip(), audience=[GRAPH_RESOURCE, GRAPH_APP_ID])
        except jwt.ExpiredSignatureError as exc:
            raise HttpError(_graph_error(401, "InvalidAuthenticationToken",
                                         "Lifetime validation failed, the token is expired.")) from exc
        except jwt.PyJWTError as exc:
            raise HttpError(_graph_error(401, "InvalidAuthenticationToken",
                                         "Access token validation failure. Invalid audience or signature.")) from exc
        if claims.get("tid") != st.tenant:
            raise HttpError(_graph_error(401, "InvalidAuthenticationToken", "Token is for another tenant."))
        return claims

    def resolve_user(user_ref: str, claims: dict[str, Any]) -> User:
        with st.lock:
            user = st.users.get(user_ref) or next(
                (u for u in st.users.values() if u.user_principal_name.lower() == user_ref.lower()), None)
        if user is None:
            raise HttpError(_graph_error(404, "NotFound", f"User '{user_ref}' was not found."))
        if claims.get("idtyp") == "app":
            if APP_ROLE not in claims.get("roles", []):
                raise HttpError(_graph_error(403, "Forbidden", "Application lacks OnlineMeetings.ReadWrite.All."))
            if not user.policy:
                raise HttpError(_graph_error(
                    403, "Forbidden", f"Application is not allowed to perform operations on the user "
                    f"'{user.id}' , neither is allowed access through RSC permission evaluation."))
        else:
            if claims.get("oid") != user.id:
                raise HttpError(_graph_error(403, "Forbidden", "Delegated tokens act only on the signed-in user."))
            if DELEGATED_SCOPE not in claims.get("scp", "").split():
                raise HttpError(_graph_error(403, "Forbidden", "Missing scope OnlineMeetings.ReadWrite."))
        return user

    def meeting_from_body(user: User, body: dict[str, Any], req: Request) -> dict[str, Any]:
        external_id = body.get("externalId")
        if not isinstance(external_id, str) or not external_id.strip():
            raise HttpError(_graph_error(400, "BadRequest", "externalId is required."))
        if "endDateTime" in body and "startDateTime" not in body:
            raise HttpError(_graph_error(400, "BadRequest", "startDateTime is required with endDateTime."))
        start = _parse_time(body["startDateTime"], "startDateTime") if "startDateTime" in body else \
            dt.datetime.now(dt.UTC)
        end = _parse_time(body["endDateTime"], "endDateTime") if "endDateTime" in body else \
            start + dt.timedelta(hours=1)
        if end < start:
            raise HttpError(_graph_error(400, "BadRequest", "endDateTime is before startDateTime."))
        lobby = lobby_settings(body.get("lobbyBypassSettings") or {}, req,
                               {"scope": "organization", "isDialInBypassEnabled": False})
        thread = f"19:meeting_{b64url(secrets.token_bytes(24))}@thread.v2"
        meeting_id = b64url(f"1*{user.id}*0**{thread}".encode())
        context = urllib.parse.quote(json.dumps({"Tid": st.tenant, "Oid": user.id}, separators=(",", ":")),
                                     safe="")
        join_url = f"{st.base}/l/meetup-join/{urllib.parse.quote(thread, safe='')}/0?context={context}"
        participants = body.get("participants") if isinstance(body.get("participants"), dict) else {}
        return {
            "@odata.context": f"{st.base}/v1.0/$metadata#users('{user.id}')/onlineMeetings/$entity",
            "id": meeting_id,
            "creationDateTime": _now_iso(),
            "startDateTime": _graph_time(start),
            "endDateTime": _graph_time(end),
            "joinUrl": join_url,
            "joinWebUrl": join_url,
            "meetingCode": str(secrets.randbelow(10**12)).zfill(12),
            "subject": body.get("subject"),
            "externalId": external_id,
            "isBroadcast": False,
            "allowedPresenters": body.get("allowedPresenters", "everyone"),
            "allowMeetingChat": body.get("allowMeetingChat", "enabled"),
            "lobbyBypassSettings": lobby,
            "chatInfo": {"threadId": thread, "messageId": "0", "replyChainMessageId": None},
            "joinInformation": {"content": "data:text/html,Join%20the%20meeting", "contentType": "html"},
            "joinMeetingIdSettings": {"isPasscodeRequired": False,
                                      "joinMeetingId": str(secrets.randbelow(10**12)).zfill(12),
                                      "passcode": None},
            "participants": {
                "organizer": {"upn": user.user_principal_name, "role": "presenter",
                              "identity": {"user": {"id": user.id, "displayName": None,
                                                    "tenantId": st.tenant, "identityProvider": "AAD"}}},
                "attendees": participants.get("attendees", []),
            },
            "audioConferencing": None,
            "videoTeleconferenceId": None,
        }

    def create_or_get(req: Request, user_ref: str) -> Response:
        claims = bearer(req)
        user = resolve_user(user_ref, claims)
        body = req.json()
        if not isinstance(body, dict):
            return _graph_error(400, "BadRequest", "A JSON object body is required.")
        meeting = meeting_from_body(user, body, req)
        key = (st.tenant, user.id, meeting["externalId"])
        with st.lock:
            existing = st.meeting_keys.get(key)
            if existing is not None:
                return json_response(st.meetings[existing], 200)
            st.meetings[meeting["id"]] = meeting
            st.meeting_keys[key] = meeting["id"]
            st.meeting_owner[meeting["id"]] = user.id
        return json_response(meeting, 201)

    @app.route("POST", r"/v1\.0/users/([^/]+)/onlineMeetings/createOrGet")
    def _create_or_get(req: Request, m: re.Match[str]) -> Response:
        return create_or_get(req, urllib.parse.unquote(m.group(1)))

    @app.route("POST", r"/v1\.0/me/onlineMeetings/createOrGet")
    def _create_or_get_me(req: Request, m: re.Match[str]) -> Response:
        claims = bearer(req)
        if claims.get("idtyp") == "app":
            return _graph_error(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
        return create_or_get(req, str(claims.get("oid")))

    @app.route(("GET", "PATCH"), r"/v1\.0/users/([^/]+)/onlineMeetings/([^/]+)")
    def _get_meeting(req: Request, m: re.Match[str]) -> Response:
        claims = bearer(req)
        user = resolve_user(urllib.parse.unquote(m.group(1)), claims)
        meeting_id = urllib.parse.unquote(m.group(2))
        with st.lock:
            meeting = st.meetings.get(meeting_id)
            owner = st.meeting_owner.get(meeting_id)
        if meeting is None or owner != user.id:
            return _graph_error(404, "NotFound", "The meeting was not found.")
        if req.method == "PATCH":  # onlinemeeting-update: times (both or start alone), subject, lobby
            body = req.json()
            if not isinstance(body, dict):
                return _graph_error(400, "BadRequest", "A JSON object body is required.")
            lobby = lobby_settings(body["lobbyBypassSettings"], req, meeting["lobbyBypassSettings"]) \
                if "lobbyBypassSettings" in body else None
            if "endDateTime" in body and "startDateTime" not in body:
                return _graph_error(400, "BadRequest", "startDateTime is required with endDateTime.")
            start = _parse_time(body["startDateTime"], "startDateTime") if "startDateTime" in body else None
            end = _parse_time(body["endDateTime"], "endDateTime") if "endDateTime" in body else None
            if start and end and end < start:
                return _graph_error(400, "BadRequest", "endDateTime is before startDateTime.")
            with st.lock:
                if start:
                    meeting["startDateTime"] = _graph_time(start)
                if end:
                    meeting["endDateTime"] = _graph_time(end)
                if isinstance(body.get("subject"), str):
                    meeting["subject"] = body["subject"]
                if lobby is not None:
                    meeting["lobbyBypassSettings"] = lobby
        return json_response(meeting)

    @app.route("GET", r"/l/meetup-join/(.+)")
    def _join_page(req: Request, m: re.Match[str]) -> Response:
        thread = urllib.parse.unquote(m.group(1).split("/")[0])
        with st.lock:
            meeting = next((mt for mt in st.meetings.values() if mt["chatInfo"]["threadId"] == thread), None)
            state = lobby_state(meeting, st.meeting_owner.get(meeting["id"]), st.tenant, {}) if meeting else None
            st.joins.append({"meeting_id": meeting["id"] if meeting else None, "thread_id": thread,
                             "at": _now_iso(), "user_agent": req.header("User-Agent"), "anonymous": True,
                             "state": state})
        if meeting is None:
            return html_response("<!doctype html><title>Meeting not found</title><h1>Meeting not found</h1>", 404)
        subject = html.escape(meeting.get("subject") or "Teams meeting")
        return html_response(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>Teams meeting (stand-in)</title>"
            "</head><body><main id=standin-meeting data-meeting-id=\"" + html.escape(meeting["id"]) + "\">"
            f"<h1>{subject}</h1><p>This is the local Teams join stand-in. In production this link opens "
            "Microsoft Teams.</p></main></body></html>")

    # ---- control API -------------------------------------------------------------------------------
    @app.route(("GET", "POST"), r"/_standin/apps")
    def _apps(req: Request, m: re.Match[str]) -> Response:
        if req.method == "GET":
            with st.lock:
                return json_response([{"client_id": a.client_id, "tenant": a.tenant, "x5t": a.x5t,
                                       "x5t#S256": a.x5t_s256, "redirect_uris": a.redirect_uris,
                                       "roles": a.roles} for a in st.apps.values()])
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("client_id"), str) or not isinstance(
                body.get("certificate_pem"), str):
            return json_response({"error": "client_id and certificate_pem are required"}, 400)
        pem = body["certificate_pem"]
        start = pem.find("-----BEGIN CERTIFICATE-----")
        try:
            cert = x509.load_pem_x509_certificate(pem[start:].encode() if start >= 0 else b"")
        except ValueError:
            return json_response({"error": "certificate_pem holds no PEM certificate"}, 400)
        uris = body.get("redirect_uris", [])
        with st.lock:
            previous = st.apps.get(body["client_id"])
        # Re-registering (to add redirect URIs) keeps the app's granted roles unless new ones are given.
        roles = body.get("roles", previous.roles if previous else [APP_ROLE])
        reg = App(client_id=body["client_id"], tenant=body.get("tenant", st.tenant),
                  certificate_pem=pem[start:], public_key=cert.public_key(),
                  x5t=b64url(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - x5t is SHA-1 by definition
                  x5t_s256=b64url(cert.fingerprint(hashes.SHA256())),
                  redirect_uris=list(uris), roles=list(roles))
        with st.lock:
            st.apps[reg.client_id] = reg
        return json_response({"client_id": reg.client_id, "tenant": reg.tenant, "x5t": reg.x5t,
                              "x5t#S256": reg.x5t_s256}, 201)

    @app.route(("GET", "POST"), r"/_standin/users")
    def _users(req: Request, m: re.Match[str]) -> Response:
        if req.method == "GET":
            with st.lock:
                return json_response([u.__dict__ for u in st.users.values()])
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            return json_response({"error": "id (object id) is required"}, 400)
        uid = body["id"]
        user = User(id=uid, user_principal_name=body.get("userPrincipalName", f"{uid}@example.test"),
                    display_name=body.get("displayName", "Local clinician"), policy=bool(body.get("policy", True)))
        with st.lock:
            st.users[uid] = user
        return json_response(user.__dict__, 201)

    @app.route("POST", r"/_standin/signin")
    def _signin(req: Request, m: re.Match[str]) -> Response:
        body = req.json()
        uid = body.get("id") if isinstance(body, dict) else None
        with st.lock:
            if uid not in st.users:
                return json_response({"error": "id must be a registered user"}, 400)
            st.signin_user = uid
        return json_response({"id": uid})

    @app.route(("GET", "DELETE"), r"/_standin/meetings")
    def _meetings(req: Request, m: re.Match[str]) -> Response:
        with st.lock:
            if req.method == "DELETE":
                st.meetings.clear()
                st.meeting_keys.clear()
                st.meeting_owner.clear()
                return Response(204)
            return json_response([dict(mt, organizerId=st.meeting_owner.get(mt["id"]))
                                  for mt in st.meetings.values()])

    @app.route("POST", r"/_standin/meetings/([^/]+)/join")
    def _join_as(req: Request, m: re.Match[str]) -> Response:
        """A participant joins (a Teams client would): ``{"user_id"?, "tenant"?, "guest"?, "dial_in"?}``
        -> ``{"state": "Connected" | "InLobby"}`` by the meeting's lobby settings; recorded in ``joins``."""
        body = req.json() if req.body else {}
        if not isinstance(body, dict):
            return json_response({"error": "JSON object expected"}, 400)
        meeting_id = urllib.parse.unquote(m.group(1))
        with st.lock:
            meeting = st.meetings.get(meeting_id)
            if meeting is None:
                return _graph_error(404, "NotFound", "The meeting was not found.")
            user_id = body.get("user_id")
            if user_id is not None and (not isinstance(user_id, str) or
                                        (body.get("tenant", st.tenant) == st.tenant and user_id not in st.users)):
                return json_response({"error": "user_id must be a registered user of the tenant"}, 400)
            state = lobby_state(meeting, st.meeting_owner.get(meeting_id), st.tenant, body)
            st.joins.append({"meeting_id": meeting_id, "thread_id": meeting["chatInfo"]["threadId"],
                             "at": _now_iso(), "user_agent": req.header("User-Agent"), "anonymous": not user_id,
                             "user_id": user_id, "state": state})
        return json_response({"state": state})

    @app.route("GET", r"/_standin/joins")
    def _joins(req: Request, m: re.Match[str]) -> Response:
        with st.lock:
            return json_response(list(st.joins))

    @app.route("POST", r"/_standin/keys/rotate")
    def _rotate(req: Request, m: re.Match[str]) -> Response:
        """Sign with a new key from now on; the previous keys stay published."""
        key = st.rotate()
        return json_response({"kid": key.kid, "published": [k.kid for k in st.published_keys()]})

    @app.route("GET", r"/_standin/token-calls")
    def _token_calls(req: Request, m: re.Match[str]) -> Response:
        with st.lock:
            return json_response(list(st.token_calls))

    # ---- subscriptions, encrypted call-event notifications, scripted rosters ------------------------
    from local.standins.graph_presence import install

    install(app, st, bearer)
    return app


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""

    def add_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenant", default=DEFAULT_TENANT_ID)

    return run_cli("graph", lambda args, base: build_app(base, tenant=args.tenant), add_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
