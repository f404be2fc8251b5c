"""Epic sandbox stand-in: SMART on FHIR EHR launch, FHIR Appointment read, SetExternalConnectionStatus.

Run: ``python -m local.standins.epic --port 9401 --tls-dir .local/tls [--emp-password-file F]``.

Base URL ``https://127.0.0.1:{port}``; FHIR base (the launch ``iss``) ``{base}/api/FHIR/R4``.

Real contract (SMART App Launch v2 ``app-launch.md``, ``client-confidential-asymmetric.md``,
``backend-services.md``; Epic's EPIC-OAUTH notes; see ``docs/references.md`` (``protocols.md`` §1–§2)):

- ``GET {iss}/.well-known/smart-configuration`` and ``GET {iss}/metadata`` (CapabilityStatement with the
  ``oauth-uris`` extension; the ``Epic-Client-ID`` header is accepted).
- ``GET|POST {base}/oauth2/authorize``: EHR launch, no user interaction (the clinician is signed in to Epic);
  redirects with ``code`` + ``state``. Strict: registered client and exact ``redirect_uri`` (else 400 JSON),
  then ``state``, ``response_type=code``, scopes ``launch`` + ``openid``, ``aud`` == iss, PKCE S256, a known
  unused ``launch`` (else a redirect with ``error``/``error_description``/``state``).
- Standalone launch (no ``launch``; the analyst's approval sign-in): ``GET {base}/oauth2/authorize`` answers
  Epic's login page; ``POST {base}/oauth2/login`` with the user's credentials (``/_standin/users``) redirects with
  ``code``; refused: a ``launch`` scope without a launch, no ``openid``, an ``aud`` that is not a FHIR base of
  this server (the main iss, or an organization's ``{base}/{org}/api/FHIR/R4``, whose discovery answers too),
  no PKCE S256 (redirect with ``error``), wrong credentials (the page again, 401; ``access_denied`` after 5
  tries). The token answer has an id_token (``fhirUser`` = the user's Practitioner under the ``aud`` signed in
  to) and no launch context.
- ``POST {base}/oauth2/token``: ``authorization_code`` (one-time code, exact ``redirect_uri``, PKCE verifier)
  and ``client_credentials`` (backend, ``system/...`` scopes), both with a ``private_key_jwt`` client
  assertion (RS384/RS256/ES384, ``kid``) checked against the client's registered JWK Set URL.
- ``GET {base}/oauth2/jwks`` (also ``{base}/oauth2/.well-known/openid-configuration``): the id_token key.
- ``GET {iss}/Appointment/{id}``, ``GET {iss}/Appointment?identifier=system|value``,
  ``GET {iss}/Practitioner/{id}``: Bearer token required (401 otherwise).
- ``GET|POST {base}/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus?...``: requires
  ``Epic-Client-ID`` plus HTTP Basic (``emp$TELEHEALTH``) or a backend Bearer token; answers
  ``{"Success": true}`` and records the call.

Identity mapping (documented choice): the Practitioner FHIR id of a provider launch IS the EHR user ID
(``user_id``, e.g. ``E1001``) unless the launch names another ``practitioner_id``; so the id_token's
``sub`` and ``fhirUser`` (``{iss}/Practitioner/{user_id}``) carry the EHR user ID. Patient and Encounter ids
default to ids derived from the CSN.

Control API (``/_standin/...``, JSON): see ``local/standins/README.md``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.standins.jose import (
    ClientAuthError,
    JtiRegistry,
    JwksCache,
    SigningKey,
    unverified_parts,
    verify_client_assertion,
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

__all__ = ["CSN_SYSTEM", "EpicState", "build_app", "main"]

CSN_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CODE_TTL = 300  # seconds an authorization code stays valid
LAUNCH_TTL = 600  # seconds a launch token stays valid
USER_TOKEN_TTL = 3240  # Epic's example expires_in
BACKEND_TOKEN_TTL = 3600
ID_TOKEN_TTL = 300
WRITEBACK_PATH = "/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus"
WRITEBACK_PARAMS = ("ConferenceID", "ExternalID", "ExternalIDType", "VendorName", "ConnectionStatus")
FHIR_JSON = "application/fhir+json; charset=utf-8"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PKCE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def _received_at() -> str:
    """Now, ISO-8601 UTC with milliseconds (benchmarks measure the delay to the write-back with it)."""
    import datetime as _dt

    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _derived_id(kind: str, csn: str) -> str:
    return "e" + hashlib.sha256(f"{kind}|{csn}".encode()).hexdigest()[:24]


@dataclass
class Client:
    """A registered SMART client: ``client_id``, its JWK Set URL and exact redirect URIs."""

    client_id: str
    jwks_url: str
    redirect_uris: list[str]


@dataclass
class Launch:
    """Context minted by ``POST /_standin/launch``; one-time use."""

    token: str
    client_id: str
    csn: str
    appointment_id: str
    context: str
    user_id: str | None
    practitioner_id: str | None
    patient_id: str
    encounter_id: str
    created: float
    used: bool = False
    #: token-response fields replaced (``None`` removes one), e.g. ``{"patient": None}``: shapes other EHRs send.
    token_overrides: dict[str, Any] = field(default_factory=dict)
    #: an ``iss`` put on the authorization response (RFC 9207), or ``None`` for none (Epic sends none).
    callback_iss: str | None = None


@dataclass
class Grant:
    """An authorization code and what it was issued for: an EHR launch (``launch``) or a standalone sign-in
    (``user``, no launch context)."""

    code: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    nonce: str | None
    launch: Launch | None
    issued: float
    used: bool = False
    tokens: list[str] = field(default_factory=list)
    user: EpicUser | None = None
    #: the FHIR base the sign-in was for (``aud``): the ``fhirUser`` of its id_token is under it.
    aud: str | None = None


@dataclass
class EpicUser:
    """An Epic user who can sign in interactively (standalone launch): credentials and their Practitioner."""

    username: str
    password: str
    practitioner_id: str


@dataclass
class PendingSignIn:
    """A standalone authorization request waiting for the user's credentials on the login page."""

    id: str
    params: dict[str, str]
    created: float
    attempts: int = 0


@dataclass
class Token:
    """An opaque access token."""

    value: str
    client_id: str
    scope: str
    expires: float
    backend: bool


class EpicState:
    """All mutable state of the stand-in, guarded by one lock."""

    def __init__(self, base_url: str, ca_verify: str | bool) -> None:
        self.base = base_url
        self.iss = f"{base_url}/api/FHIR/R4"
        self.token_url = f"{base_url}/oauth2/token"
        self.lock = threading.RLock()
        self.key = SigningKey()
        self.jwks_cache = JwksCache(verify=ca_verify)
        self.jtis = JtiRegistry()
        self.clients: dict[str, Client] = {}
        self.basic_users: dict[str, str] = {}
        self.launches: dict[str, Launch] = {}
        self.grants: dict[str, Grant] = {}
        self.tokens: dict[str, Token] = {}
        self.appointments: dict[str, dict[str, Any]] = {}
        self.status_calls: list[dict[str, Any]] = []
        self.users: dict[str, EpicUser] = {}
        self.pending: dict[str, PendingSignIn] = {}

    def reset(self) -> None:
        """Forget launches, codes, tokens, jtis, appointments and recorded calls (keep registrations)."""
        with self.lock:
            self.launches.clear()
            self.grants.clear()
            self.tokens.clear()
            self.appointments.clear()
            self.status_calls.clear()
            self.jtis.clear()
            self.pending.clear()


def _oauth_error(error: str, description: str, status: int = 400) -> HttpError:
    return HttpError(json_response({"error": error, "error_description": description}, status))


def _operation_outcome(status: int, code: str, text: str, headers: dict[str, str] | None = None) -> Response:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    resp = json_response(body, status, headers)
    resp.headers["Content-Type"] = FHIR_JSON
    return resp


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def build_app(base_url: str, *, ca_verify: str | bool = True, emp_password: str | None = None) -> StandinApp:
    """Build the Epic stand-in app for ``base_url`` (e.g. ``https://127.0.0.1:9501``).

    Args:
        base_url: public base URL, no trailing slash.
        ca_verify: ``requests`` verify value used to fetch client JWK Sets (CA bundle path or True).
        emp_password: password of the web-service user ``emp$TELEHEALTH`` (None: no Basic user).
    """
    app = StandinApp("epic", base_url, fault_body=lambda status: {
        "Success": False, "Error": f"scripted fault {status}"})
    st = EpicState(app.base_url, ca_verify)
    app.state = st  # type: ignore[attr-defined]
    if emp_password:
        st.basic_users["emp$TELEHEALTH"] = emp_password
    app.on_reset(st.reset)
    iss_path = "/api/FHIR/R4"
    #: An organization's FHIR base on this Epic server (``{base}/{org}/api/FHIR/R4``), as each organization of
    #: a shared Epic instance has its own: discovery and the approver's standalone sign-in serve it. A base of
    #: another shape is unknown here and gets Epic's answers (404 on discovery; ``aud`` refused on authorize).
    org_base = re.compile(re.escape(st.base) + r"/[A-Za-z0-9-]{1,40}/api/FHIR/(?:R4|DSTU2)")

    def served(aud: str | None) -> bool:
        return aud == st.iss or bool(aud and org_base.fullmatch(aud))

    # ---- discovery -------------------------------------------------------------------------------
    def smart_configuration() -> dict[str, Any]:
        return {
            "issuer": f"{st.base}/oauth2",
            "jwks_uri": f"{st.base}/oauth2/jwks",
            "authorization_endpoint": f"{st.base}/oauth2/authorize",
            "token_endpoint": st.token_url,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "RS256", "ES384"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "response_types_supported": ["code"],
            "scopes_supported": ["openid", "fhirUser", "launch", "online_access",
                                 "user/Appointment.read", "patient/Appointment.read"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": [
                "launch-ehr", "client-confidential-asymmetric", "sso-openid-connect", "authorize-post",
                "context-ehr-patient", "context-ehr-encounter", "permission-v1", "permission-online",
            ],
        }

    @app.route("GET", rf"{iss_path}/\.well-known/smart-configuration")
    def _smart_config(req: Request, m: re.Match[str]) -> Response:
        return json_response(smart_configuration(), headers={"Access-Control-Allow-Origin": "*"})

    @app.route("GET", r"/[A-Za-z0-9-]{1,40}/api/FHIR/(?:R4|DSTU2)/\.well-known/smart-configuration")
    def _other_base_config(req: Request, m: re.Match[str]) -> Response:
        # Other FHIR bases of the same Epic server (one per organization or version): discovery answers,
        # so a portal can register them, and an approver can sign in against them; EHR launches use the
        # main iss.
        return json_response(smart_configuration(), headers={"Access-Control-Allow-Origin": "*"})

    @app.route("GET", r"/oauth2/\.well-known/openid-configuration|/api/FHIR/R4/\.well-known/openid-configuration")
    def _oidc_config(req: Request, m: re.Match[str]) -> Response:
        conf = smart_configuration()
        conf.update({"subject_types_supported": ["public"],
                     "id_token_signing_alg_values_supported": ["RS256"]})
        return json_response(conf, headers={"Access-Control-Allow-Origin": "*"})

    @app.route("GET", rf"{iss_path}/metadata")
    def _metadata(req: Request, m: re.Match[str]) -> Response:
        body = {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "implementation": {"description": "Epic stand-in (local development)", "url": st.iss},
            "rest": [{
                "mode": "server",
                "security": {
                    "extension": [{
                        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                        "extension": [
                            {"url": "authorize", "valueUri": f"{st.base}/oauth2/authorize"},
                            {"url": "token", "valueUri": st.token_url},
                        ],
                    }],
                    "service": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR"}]}],
                },
                "resource": [
                    {"type": "Appointment", "interaction": [{"code": "read"}, {"code": "search-type"}]},
                    {"type": "Practitioner", "interaction": [{"code": "read"}]},
                ],
            }],
        }
        resp = json_response(body, headers={"Access-Control-Allow-Origin": "*"})
        resp.headers["Content-Type"] = FHIR_JSON
        return resp

    @app.route("GET", r"/oauth2/jwks")
    def _jwks(req: Request, m: re.Match[str]) -> Response:
        return json_response(st.key.jwks(), headers={"Cache-Control": "max-age=300"})

    # ---- authorize ---------------------------------------------------------------------------------
    @app.route(("GET", "POST"), r"/oauth2/authorize")
    def _authorize(req: Request, m: re.Match[str]) -> Response:
        if req.method == "POST":
            params = req.form()
        else:
            params = {k: v[0] for k, v in req.query.items() if len(v) == 1}
            repeated = [k for k, v in req.query.items() if len(v) > 1]
            if repeated:
                raise _oauth_error("invalid_request", f"parameter {repeated[0]} repeated")
        client_id = params.get("client_id", "")
        with st.lock:
            client = st.clients.get(client_id)
        if client is None:
            raise _oauth_error("unauthorized_client", "client_id is missing or not registered")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise _oauth_error("invalid_request", "redirect_uri is missing or not registered for this client")
        state = params.get("state", "")

        def fail(error: str, description: str) -> Response:
            return redirect(_with_query(redirect_uri, {
                "error": error, "error_description": description, "state": state}))

        if not state:
            return fail("invalid_request", "state is required")
        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "response_type must be code")
        scopes = params.get("scope", "").split()
        if "launch" not in params:
            return standalone(params, scopes, fail)
        if "launch" not in scopes or "openid" not in scopes:
            return fail("invalid_scope", "scope must include launch and openid")
        if params.get("aud") != st.iss:
            return fail("invalid_request", "aud must equal the FHIR base URL (iss) exactly")
        if params.get("code_challenge_method") != "S256":
            return fail("invalid_request", "code_challenge_method must be S256")
        challenge = params.get("code_challenge", "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge):
            return fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)")
        now = time.time()
        with st.lock:
            launch = st.launches.get(params.get("launch", ""))
            if launch is None or launch.client_id != client_id:
                return fail("invalid_request", "launch is unknown")
            if launch.used:
                return fail("invalid_request", "launch has already been used")
            if now - launch.created > LAUNCH_TTL:
                return fail("invalid_request", "launch has expired")
            launch.used = True
            code = secrets.token_urlsafe(32)
            st.grants[code] = Grant(
                code=code, client_id=client_id, redirect_uri=redirect_uri, code_challenge=challenge,
                scope=" ".join(scopes), nonce=params.get("nonce") or None, launch=launch, issued=now)
        answer = {"code": code, "state": state}
        if launch.callback_iss is not None:
            answer["iss"] = launch.callback_iss
        return redirect(_with_query(redirect_uri, answer))

    # ---- standalone launch (an Epic user signs in on Epic's login page) -------------------------------
    def standalone(params: dict[str, str], scopes: list[str], fail: Any) -> Response:
        """SMART standalone launch: no ``launch``; Epic shows its login page. Refused like Epic: a ``launch``
        scope without a launch, no ``openid``, ``aud`` other than the FHIR base URL, no PKCE S256."""
        if "launch" in scopes:
            return fail("invalid_scope", "the launch scope needs a launch parameter (EHR launch); a standalone "
                                         "launch asks for launch/patient or no launch scope")
        if "openid" not in scopes:
            return fail("invalid_scope", "scope must include openid")
        if not served(params.get("aud")):
            return fail("invalid_request", "aud must equal a FHIR base URL of this server exactly")
        if params.get("code_challenge_method") != "S256" or not re.fullmatch(r"[A-Za-z0-9_-]{43}",
                                                                              params.get("code_challenge", "")):
            return fail("invalid_request", "PKCE with code_challenge_method S256 is required")
        pending = PendingSignIn(secrets.token_urlsafe(24), dict(params), time.time())
        with st.lock:
            st.pending[pending.id] = pending
        return login_page(pending, "")

    def login_page(pending: PendingSignIn, error: str, status: int = 200) -> Response:
        message = f'<p role="alert" id="login-error">{html.escape(error)}</p>' if error else ""
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Epic sign-in (stand-in)</title>'
            '</head><body><main><h1>Sign in to Epic</h1>'
            f'<p>App <b>{html.escape(pending.params.get("client_id", ""))}</b> asks: '
            f'{html.escape(pending.params.get("scope", ""))}</p>{message}'
            f'<form method="post" action="{st.base}/oauth2/login">'
            f'<input type="hidden" name="pending" value="{html.escape(pending.id)}">'
            '<p><label for="username">User ID</label><br><input id="username" name="username" autocomplete="username">'
            '</p><p><label for="password">Password</label><br><input id="password" name="password" '
            'type="password" autocomplete="current-password"></p><p><button type="submit">Log in</button></p>'
            '</form></main></body></html>')
        return html_response(page, status)

    @app.route("POST", r"/oauth2/login")
    def _login(req: Request, m: re.Match[str]) -> Response:
        form = req.form()
        with st.lock:
            pending = st.pending.get(form.get("pending", ""))
        if pending is None or time.time() - pending.created > LAUNCH_TTL:
            return html_response("<!doctype html><title>Epic</title><p>This sign-in has expired. Start again from "
                                 "the app.</p>", 400)
        with st.lock:
            user = st.users.get(form.get("username", "").strip().upper())
        if user is None or not secrets.compare_digest(user.password, form.get("password", "")):
            pending.attempts += 1
            if pending.attempts >= 5:
                with st.lock:
                    st.pending.pop(pending.id, None)
                return redirect(_with_query(pending.params["redirect_uri"], {
                    "error": "access_denied", "error_description": "too many failed sign-ins",
                    "state": pending.params.get("state", "")}))
            return login_page(pending, "The user ID or password is wrong.", 401)
        with st.lock:
            st.pending.pop(pending.id, None)
            code = secrets.token_urlsafe(32)
            params = pending.params
            st.grants[code] = Grant(
                code=code, client_id=params["client_id"], redirect_uri=params["redirect_uri"],
                code_challenge=params["code_challenge"], scope=params.get("scope", ""),
                nonce=params.get("nonce") or None, launch=None, issued=time.time(), user=user,
                aud=params.get("aud"))
        return redirect(_with_query(params["redirect_uri"], {"code": code, "state": params.get("state", "")}))

    # ---- token -------------------------------------------------------------------------------------
    def authenticate_client(form: dict[str, str]) -> Client:
        if form.get("client_secret"):
            raise _oauth_error("invalid_client", "client secrets are not accepted: use private_key_jwt")
        if form.get("client_assertion_type") != JWT_BEARER:
            raise _oauth_error("invalid_client", f"client_assertion_type must be {JWT_BEARER}")
        assertion = form.get("client_assertion", "")
        if not assertion:
            raise _oauth_error("invalid_client", "client_assertion is required")
        try:
            _, claims = unverified_parts(assertion)
        except ClientAuthError as exc:
            raise _oauth_error("invalid_client", str(exc)) from exc
        client_id = str(claims.get("iss", ""))
        if form.get("client_id") and form["client_id"] != client_id:
            raise _oauth_error("invalid_client", "client_id does not match the assertion's iss")
        with st.lock:
            client = st.clients.get(client_id)
        if client is None:
            raise _oauth_error("invalid_client", "client is not registered")
        try:
            verify_client_assertion(assertion, client_id=client_id, audience=st.token_url,
                                    jwks_url=client.jwks_url, cache=st.jwks_cache, jtis=st.jtis)
        except ClientAuthError as exc:
            raise _oauth_error("invalid_client", str(exc)) from exc
        return client

    def new_token(client_id: str, scope: str, ttl: int, backend: bool) -> Token:
        tok = Token(secrets.token_urlsafe(48), client_id, scope, time.time() + ttl, backend)
        st.tokens[tok.value] = tok
        return tok

    @app.route("POST", r"/oauth2/token")
    def _token(req: Request, m: re.Match[str]) -> Response:
        form = req.form()
        grant_type = form.get("grant_type")
        if grant_type not in ("authorization_code", "client_credentials"):
            raise _oauth_error("unsupported_grant_type", "grant_type must be authorization_code or client_credentials")
        client = authenticate_client(form)
        if grant_type == "client_credentials":
            scope = form.get("scope", "system/Appointment.read")
            if any(not s.startswith("system/") for s in scope.split()):
                raise _oauth_error("invalid_scope", "backend services may request system/ scopes only")
            with st.lock:
                tok = new_token(client.client_id, scope, BACKEND_TOKEN_TTL, backend=True)
            return json_response({"access_token": tok.value, "token_type": "bearer",
                                  "expires_in": BACKEND_TOKEN_TTL, "scope": scope})
        code = form.get("code", "")
        with st.lock:
            grant = st.grants.get(code)
            if grant is None:
                raise _oauth_error("invalid_grant", "authorization code is unknown")
            if grant.used:
                for value in grant.tokens:  # RFC 6749 §4.1.2: revoke what the reused code issued
                    st.tokens.pop(value, None)
                raise _oauth_error("invalid_grant", "authorization code has already been used")
            grant.used = True
            if time.time() - grant.issued > CODE_TTL:
                raise _oauth_error("invalid_grant", "authorization code has expired")
            if grant.client_id != client.client_id:
                raise _oauth_error("invalid_grant", "authorization code was issued to another client")
            if form.get("redirect_uri") != grant.redirect_uri:
                raise _oauth_error("invalid_grant", "redirect_uri does not match the authorization request")
            verifier = form.get("code_verifier", "")
            if not _PKCE.fullmatch(verifier):
                raise _oauth_error("invalid_grant", "code_verifier is missing or malformed")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
            if digest.rstrip(b"=").decode("ascii") != grant.code_challenge:
                raise _oauth_error("invalid_grant", "code_verifier does not match the code_challenge")
            tok = new_token(client.client_id, grant.scope, USER_TOKEN_TTL, backend=False)
            grant.tokens.append(tok.value)
        launch = grant.launch
        now = int(time.time())
        if launch is None:  # standalone sign-in: identity only, no launch context
            assert grant.user is not None
            pract = grant.user.practitioner_id
            claims = {"iss": f"{st.base}/oauth2", "aud": client.client_id, "sub": pract,
                      "fhirUser": f"{grant.aud or st.iss}/Practitioner/{pract}", "iat": now,
                      "exp": now + ID_TOKEN_TTL}
            if grant.nonce:
                claims["nonce"] = grant.nonce
            return json_response({"access_token": tok.value, "token_type": "bearer", "expires_in": USER_TOKEN_TTL,
                                  "scope": grant.scope, "id_token": st.key.sign(claims)})
        if launch.context == "patient":
            user_ref, sub = f"Patient/{launch.patient_id}", launch.patient_id
        else:
            pract = launch.practitioner_id or ""
            user_ref, sub = f"Practitioner/{pract}", pract
        claims: dict[str, Any] = {
            "iss": f"{st.base}/oauth2", "aud": client.client_id, "sub": sub,
            "fhirUser": f"{st.iss}/{user_ref}", "iat": now, "exp": now + ID_TOKEN_TTL,
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        body: dict[str, Any] = {
            "access_token": tok.value,
            "token_type": "bearer",
            "expires_in": USER_TOKEN_TTL,
            "scope": grant.scope,
            "id_token": st.key.sign(claims),
            "patient": launch.patient_id,
            "encounter": launch.encounter_id,
            "appointment": launch.appointment_id,
            "fhirContext": [{"reference": f"Appointment/{launch.appointment_id}"}],
            "need_patient_banner": "false",
        }
        for name, value in launch.token_overrides.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        return json_response(body)

    # ---- FHIR --------------------------------------------------------------------------------------
    def require_bearer(req: Request) -> Token:
        auth = req.header("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        with st.lock:
            tok = st.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if tok is None or tok.expires < time.time():
            raise HttpError(_operation_outcome(
                401, "login", "a valid Bearer access token is required",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'}))
        return tok

    def fhir(body: dict[str, Any]) -> Response:
        resp = json_response(body)
        resp.headers["Content-Type"] = FHIR_JSON
        return resp

    @app.route("GET", rf"{iss_path}/Appointment/([^/]+)")
    def _appointment(req: Request, m: re.Match[str]) -> Response:
        require_bearer(req)
        with st.lock:
            resource = st.appointments.get(urllib.parse.unquote(m.group(1)))
        if resource is None:
            return _operation_outcome(404, "not-found", "Appointment not found")
        return fhir(resource)

    @app.route("GET", rf"{iss_path}/Appointment")
    def _appointment_search(req: Request, m: re.Match[str]) -> Response:
        require_bearer(req)
        ident = req.arg("identifier")
        if not ident:
            return _operation_outcome(400, "required", "search by identifier=system|value is supported")
        system, sep, value = ident.rpartition("|")
        if not sep:
            system, value = "", ident
        with st.lock:
            hits = [a for a in st.appointments.values()
                    if any(i.get("value") == value and (not system or i.get("system") == system)
                           for i in a.get("identifier", []))]
        return fhir({"resourceType": "Bundle", "type": "searchset", "total": len(hits),
                     "entry": [{"fullUrl": f"{st.iss}/Appointment/{a['id']}", "resource": a,
                                "search": {"mode": "match"}} for a in hits]})

    @app.route("GET", rf"{iss_path}/Practitioner/([^/]+)")
    def _practitioner(req: Request, m: re.Match[str]) -> Response:
        require_bearer(req)
        pid = urllib.parse.unquote(m.group(1))
        with st.lock:
            known = any(la.practitioner_id == pid for la in st.launches.values())
            user_id = next((la.user_id for la in st.launches.values() if la.practitioner_id == pid), None)
        if not known:
            return _operation_outcome(404, "not-found", "Practitioner not found")
        return fhir({"resourceType": "Practitioner", "id": pid, "active": True,
                     "identifier": [{"use": "usual", "type": {"text": "EXTERNAL"}, "value": user_id or pid}]})

    # ---- write-back --------------------------------------------------------------------------------
    @app.route(("GET", "POST"), re.escape(WRITEBACK_PATH))
    def _set_status(req: Request, m: re.Match[str]) -> Response:
        epic_client = req.header("Epic-Client-ID") or ""
        with st.lock:
            known_client = epic_client in st.clients
        if not known_client:
            return json_response({"Success": False, "Error": "Epic-Client-ID header missing or unknown"}, 400)
        auth = req.header("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        via = None
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            with st.lock:
                expected = st.basic_users.get(user)
            if expected is not None and secrets.compare_digest(expected, password):
                via = "basic"
        elif scheme.lower() == "bearer":
            with st.lock:
                tok = st.tokens.get(value.strip())
            if tok and tok.backend and tok.expires > time.time() and tok.client_id == epic_client:
                via = "bearer"
        if via is None:
            return json_response({"Success": False, "Error": "authentication required"}, 401,
                                 {"WWW-Authenticate": 'Basic realm="Epic", Bearer'})
        params: dict[str, str] = {}
        for name in WRITEBACK_PARAMS:
            values = req.query.get(name, [])
            if len(values) != 1 or not values[0]:
                return json_response({"Success": False, "Error": f"{name} is required exactly once"}, 400)
            params[name] = values[0]
        record = dict(params, method=req.method, auth=via, client_id=epic_client,
                      received_at=_received_at())
        with st.lock:
            st.status_calls.append(record)
        return json_response({"Success": True})

    # ---- control API -------------------------------------------------------------------------------
    @app.route(("GET", "POST"), r"/_standin/clients")
    def _clients(req: Request, m: re.Match[str]) -> Response:
        if req.method == "GET":
            with st.lock:
                return json_response([c.__dict__ for c in st.clients.values()])
        body = req.json()
        if not isinstance(body, dict):
            return json_response({"error": "JSON object expected"}, 400)
        cid, jwks_url, uris = body.get("client_id"), body.get("jwks_url"), body.get("redirect_uris")
        if not isinstance(cid, str) or not cid or not isinstance(jwks_url, str) or not jwks_url.startswith(
                ("http://", "https://")) or not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            return json_response({"error": "client_id, jwks_url (http[s] URL) and redirect_uris[] are required"}, 400)
        with st.lock:
            st.clients[cid] = Client(cid, jwks_url, list(uris))
        return json_response({"client_id": cid, "iss": st.iss}, 201)

    @app.route("POST", r"/_standin/users")
    def _users(req: Request, m: re.Match[str]) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body.get(k)
                                                 for k in ("username", "password", "practitioner_id")):
            return json_response({"error": "username, password and practitioner_id are required"}, 400)
        if not _FHIR_ID.fullmatch(body["practitioner_id"]):
            return json_response({"error": "practitioner_id is not a valid FHIR id"}, 400)
        with st.lock:
            st.users[body["username"].upper()] = EpicUser(body["username"].upper(), body["password"],
                                                          body["practitioner_id"])
        return json_response({"username": body["username"].upper()}, 201)

    @app.route("POST", r"/_standin/basic-users")
    def _basic_users(req: Request, m: re.Match[str]) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not body.get("username") or not body.get("password"):
            return json_response({"error": "username and password are required"}, 400)
        with st.lock:
            st.basic_users[str(body["username"])] = str(body["password"])
        return json_response({"username": body["username"]}, 201)

    @app.route("POST", r"/_standin/launch")
    def _launch(req: Request, m: re.Match[str]) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            return json_response({"error": "JSON object expected"}, 400)
        cid, csn = body.get("client_id"), body.get("appointment_csn")
        context = body.get("context", "provider")
        if not isinstance(cid, str) or not isinstance(csn, str) or not csn:
            return json_response({"error": "client_id and appointment_csn are required"}, 400)
        if context not in ("provider", "patient"):
            return json_response({"error": "context must be provider or patient"}, 400)
        user_id = body.get("user_id")
        if context == "provider" and not user_id:
            return json_response({"error": "user_id (EHR user ID) is required for a provider launch"}, 400)
        appt_id = body.get("fhir_appointment_id") or _derived_id("Appointment", csn)
        practitioner_id = body.get("practitioner_id") or user_id
        patient_id = body.get("patient_id") or _derived_id("Patient", csn)
        encounter_id = body.get("encounter_id") or _derived_id("Encounter", csn)
        for value in (appt_id, practitioner_id, patient_id, encounter_id):
            if value is not None and not _FHIR_ID.fullmatch(str(value)):
                return json_response({"error": f"{value!r} is not a valid FHIR id"}, 400)
        overrides = body.get("token_overrides") or {}
        callback_iss = body.get("callback_iss")
        if not isinstance(overrides, dict) or not (callback_iss is None or isinstance(callback_iss, str)):
            return json_response({"error": "token_overrides must be an object, callback_iss a string"}, 400)
        with st.lock:
            if cid not in st.clients:
                return json_response({"error": "client_id is not registered"}, 400)
            if appt_id not in st.appointments:
                participants = []
                if practitioner_id:
                    participants.append({"actor": {"reference": f"Practitioner/{practitioner_id}",
                                                   "type": "Practitioner"},
                                         "required": "required", "status": "accepted"})
                participants.append({"actor": {"reference": f"Patient/{patient_id}", "type": "Patient"},
                                     "required": "required", "status": "accepted"})
                resource: dict[str, Any] = {
                    "resourceType": "Appointment", "id": appt_id,
                    "identifier": [{"use": "usual", "system": CSN_SYSTEM, "value": csn}],
                    "status": "booked", "participant": participants,
                }
                for key in ("start", "end"):
                    if body.get(key):
                        resource[key] = body[key]
                st.appointments[appt_id] = resource
            token = secrets.token_urlsafe(32)
            st.launches[token] = Launch(
                token=token, client_id=cid, csn=csn, appointment_id=appt_id, context=context,
                user_id=user_id, practitioner_id=practitioner_id if context == "provider" else None,
                patient_id=patient_id, encounter_id=encounter_id, created=time.time(),
                token_overrides=dict(overrides), callback_iss=callback_iss)
        return json_response({"launch": token, "iss": st.iss, "appointment_id": appt_id,
                              "practitioner_id": practitioner_id, "patient_id": patient_id}, 201)

    @app.route(("GET", "POST"), r"/_standin/appointments")
    def _appointments(req: Request, m: re.Match[str]) -> Response:
        if req.method == "GET":
            with st.lock:
                return json_response(list(st.appointments.values()))
        body = req.json()
        if not isinstance(body, dict) or body.get("resourceType") != "Appointment" or not _FHIR_ID.fullmatch(
                str(body.get("id", ""))):
            return json_response({"error": "a FHIR Appointment with an id is required"}, 400)
        with st.lock:
            st.appointments[body["id"]] = body
        return json_response(body, 201)

    @app.route("GET", r"/_standin/embed")
    def _embed(req: Request, m: re.Match[str]) -> Response:
        """A stand-in for an Epic window that shows an app in an iframe (Hyperspace's browser, a Haiku/Canto web
        view, MyChart): ``?src=<app URL>``. The page is served from whatever origin the browser used
        (``https://localhost:{port}`` or ``https://127.0.0.1:{port}``), so tests can frame from an allowed and
        from a refused origin. The iframe sends its origin as ``Referer`` (``referrerpolicy="origin"``): what an
        https Epic page sends an https app by default, which the local http app would otherwise not get (an
        https -> http downgrade drops it); ``&referrer=none`` sends none."""
        src = req.arg("src") or ""
        if not src.startswith(("http://", "https://")):
            return json_response({"error": "src must be an http(s) URL"}, 400)
        policy = "no-referrer" if req.arg("referrer") == "none" else "origin"
        return html_response(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Epic (stand-in)</title></head>'
            '<body><h1>Epic stand-in</h1><iframe id="app" title="App" width="900" height="700" '
            f'allow="camera; microphone" referrerpolicy="{policy}" src="{html.escape(src, quote=True)}">'
            '</iframe></body></html>')

    @app.route(("GET", "DELETE"), r"/_standin/connection-status")
    def _status_calls(req: Request, m: re.Match[str]) -> Response:
        with st.lock:
            if req.method == "DELETE":
                st.status_calls.clear()
                return Response(204)
            return json_response(list(st.status_calls))

    return app


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""

    def add_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--emp-password-file", type=Path, default=None,
                       help="file holding the password of the emp$TELEHEALTH web-service user")

    def build(args: argparse.Namespace, base_url: str) -> StandinApp:
        bundle = args.tls_dir / "ca-bundle.pem"
        password = args.emp_password_file.read_text().strip() if args.emp_password_file else None
        return build_app(base_url, ca_verify=str(bundle) if bundle.exists() else True, emp_password=password)

    return run_cli("epic", build, add_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
