"""Who is signed in to the portal, and what they may do (docs/portal.md "Sign-in and roles").

Reused by every portal page and admin API route (and by the reports pages): :meth:`Access.principal` turns a
request's headers and cookies into a :class:`Principal` or raises :class:`NotSignedIn`; :func:`require`
checks a role; :class:`CsrfTokens` makes and checks the token every change must carry.

Where the identity comes from:

- **Azure: App Service authentication (Easy Auth) with Microsoft Entra ID.** The platform signs the user in and
  passes the claims in ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON). App Service removes these headers from requests
  coming from outside, so they are present only when the platform set them -- *if the authentication module is
  on*. The platform tells the app that it is on with the ``WEBSITE_AUTH_ENABLED=True`` variable (the check
  Microsoft.Identity.Web makes); only then is the header read, and its tenant and audience must be ours.
  Without it (the app reached directly, locally, or with authentication switched off) a principal header is
  a forgery and the request is refused.
- **Local development: a sign-in form** (``PORTAL_DEV_SIGNIN``), allowed only when the app runs against the
  local emulators (``lib.settings`` refuses it otherwise). It sets an HMAC-signed cookie naming the user and
  roles.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

ADMIN = "Admin"
APPROVER = "Approver"
REPORTS_READER = "ReportsReader"
#: The Entra app roles the portal knows (app registration "App roles", assigned in Enterprise applications).
ROLES: tuple[str, ...] = (ADMIN, APPROVER, REPORTS_READER)

PRINCIPAL_HEADER = "x-ms-client-principal"
DEV_COOKIE = "vv_portal_dev"
DEV_SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_SECONDS = 8 * 3600

_OID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_TID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
_NAME_CLAIMS = ("preferred_username", "upn", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "name")
_DEV_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,120}")


class NotSignedIn(Exception):
    """No trustworthy identity on the request. ``reason`` is safe to show; ``forged`` marks a principal
    header the platform did not set."""

    def __init__(self, reason: str, *, forged: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forged = forged


class Forbidden(Exception):
    """Signed in, but without the role (or assignment) the action needs. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """A signed-in portal user.

    Attributes:
        user_id: Entra object ID (``oid``); for the local sign-in, ``local:<name>``.
        name: sign-in name (UPN / e-mail), what admins type when they name an approver.
        roles: the app roles held (subset of :data:`ROLES`).
        source: ``easy-auth`` or ``local-dev``.
    """

    user_id: str
    name: str
    roles: frozenset[str]
    source: Literal["easy-auth", "local-dev"]

    def has(self, *roles: str) -> bool:
        """Whether the user holds any of ``roles``."""
        return bool(self.roles & set(roles))


def require(principal: Principal, *roles: str) -> Principal:
    """``principal`` when it holds one of ``roles``.

    Raises:
        Forbidden: naming the roles needed.
    """
    if not principal.has(*roles):
        needed = " or ".join(roles)
        raise Forbidden(f"This needs the {needed} role; you are signed in as {principal.name} with "
                        f"{', '.join(sorted(principal.roles)) or 'no portal role'}. Ask your Microsoft 365 admin to "
                        "assign the role to you in Entra ID (Enterprise applications > this app > Users and groups).")
    return principal


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derived(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, purpose, hashlib.sha256).digest()


class Access:
    """Reads the portal identity of a request.

    Args:
        secret: the app's ``LINK_SIGNING_KEY`` (keys for the local sign-in cookie are derived from it).
        easy_auth_enabled: ``WEBSITE_AUTH_ENABLED`` is true: the platform's authentication module is on.
        tenant_id: the Entra tenant whose users may sign in (``GRAPH_TENANT_ID``); ``None`` = not checked.
        audience: the Easy Auth app registration's client ID (``WEBSITE_AUTH_CLIENT_ID``); ``None`` = not checked.
        dev_signin: the local sign-in form is allowed (``PORTAL_DEV_SIGNIN``, local emulators only).
        secure_cookies: mark cookies ``Secure`` (``PUBLIC_BASE_URL`` is https).
    """

    def __init__(self, *, secret: bytes, easy_auth_enabled: bool, tenant_id: str | None = None,
                 audience: str | None = None, dev_signin: bool = False, secure_cookies: bool = True) -> None:
        self._dev_key = _derived(secret, b"portal-dev-signin")
        self.easy_auth_enabled = easy_auth_enabled
        self._tenant = (tenant_id or "").lower() or None
        self._audience = audience or None
        self.dev_signin = dev_signin and not easy_auth_enabled
        self.secure_cookies = secure_cookies

    # ---- reading the identity --------------------------------------------------------------------------------
    def principal(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Principal:
        """The signed-in user of a request.

        Raises:
            NotSignedIn: no identity, or a principal header the platform did not set (``forged``).
        """
        header = _header(headers, PRINCIPAL_HEADER)
        if self.easy_auth_enabled:
            if not header:
                raise NotSignedIn("Sign in with your Microsoft 365 account.")
            return self._easy_auth(header, headers)
        if header or _header(headers, "x-ms-client-principal-id") or _header(headers, "x-ms-client-principal-name"):
            raise NotSignedIn("A sign-in header was sent by the client, but App Service authentication is not on for "
                              "this app, so the header cannot have come from the platform: refused.", forged=True)
        if self.dev_signin:
            value = cookies.get(DEV_COOKIE)
            if value:
                return self._dev_principal(value)
            raise NotSignedIn("Sign in with the local development form.")
        raise NotSignedIn("The portal needs App Service authentication with Microsoft Entra ID (docs/portal.md "
                          "\"Sign-in and roles\"); it is not enabled for this app.")

    def _easy_auth(self, header: str, headers: Mapping[str, str]) -> Principal:
        try:
            doc = json.loads(base64.b64decode(header, validate=False))
        except (ValueError, binascii.Error, RecursionError) as exc:
            raise NotSignedIn("The sign-in header is not valid base64 JSON.", forged=True) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
            raise NotSignedIn("The sign-in header has no claims.", forged=True)
        if str(doc.get("auth_typ", "")).lower() != "aad" or (
                (_header(headers, "x-ms-client-principal-idp") or "aad").lower() != "aad"):
            raise NotSignedIn("Only Microsoft Entra ID sign-in is accepted.")
        claims: dict[str, list[str]] = {}
        for claim in doc["claims"]:
            if isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str):
                claims.setdefault(claim["typ"], []).append(claim["val"])

        def first(names: Iterable[str]) -> str | None:
            return next((claims[n][0] for n in names if claims.get(n)), None)

        oid = first(_OID_CLAIMS)
        if not oid:
            raise NotSignedIn("The sign-in has no object ID (oid) claim.")
        header_id = _header(headers, "x-ms-client-principal-id")
        if header_id and header_id.lower() != oid.lower():
            raise NotSignedIn("The sign-in headers disagree about the user.", forged=True)
        if self._tenant and (first(_TID_CLAIMS) or "").lower() != self._tenant:
            raise NotSignedIn("Users of another Entra tenant cannot use this portal.")
        if self._audience and claims.get("aud") and self._audience not in claims["aud"]:
            raise NotSignedIn("The sign-in was issued for another application.")
        role_type = doc.get("role_typ") if isinstance(doc.get("role_typ"), str) else "roles"
        roles = frozenset(r for r in claims.get(role_type, []) + claims.get("roles", []) if r in ROLES)
        name_type = doc.get("name_typ") if isinstance(doc.get("name_typ"), str) else None
        name = first([name_type] if name_type else []) or first(_NAME_CLAIMS) or oid
        return Principal(user_id=oid, name=name, roles=roles, source="easy-auth")

    # ---- local development sign-in ---------------------------------------------------------------------------
    def dev_cookie(self, name: str, roles: Iterable[str], *, now: float | None = None) -> str:
        """The signed cookie value of a local sign-in (``name`` and ``roles`` checked by the caller)."""
        body = _b64url(json.dumps({"n": name, "r": sorted(set(roles)),
                                   "e": int((now or time.time()) + DEV_SESSION_SECONDS)}).encode())
        return body + "." + _b64url(hmac.new(self._dev_key, body.encode(), hashlib.sha256).digest())

    def _dev_principal(self, value: str) -> Principal:
        body, _, signature = value.partition(".")
        expected = _b64url(hmac.new(self._dev_key, body.encode(), hashlib.sha256).digest())
        if not signature or not hmac.compare_digest(signature, expected):
            raise NotSignedIn("The local sign-in cookie is not valid; sign in again.", forged=True)
        try:
            doc = json.loads(_unb64url(body))
        except (ValueError, binascii.Error) as exc:
            raise NotSignedIn("The local sign-in cookie is not valid; sign in again.") from exc
        if doc.get("e", 0) < time.time():
            raise NotSignedIn("Your local sign-in has expired; sign in again.")
        name = str(doc.get("n", ""))
        return Principal(user_id=f"local:{name}", name=name, roles=frozenset(r for r in doc.get("r", [])
                                                                              if r in ROLES), source="local-dev")

    @staticmethod
    def valid_dev_name(name: str) -> bool:
        """Whether ``name`` can be a local sign-in name (letters, digits, ``._@+-``)."""
        return bool(_DEV_NAME.fullmatch(name))


class CsrfTokens:
    """Tokens bound to one signed-in user, required on every change (form field ``csrf_token`` or header
    ``X-CSRF-Token``): ``{issued}.{HMAC(user_id, issued)}``, valid :data:`CSRF_SECONDS`."""

    def __init__(self, secret: bytes) -> None:
        self._key = _derived(secret, b"portal-csrf")

    def issue(self, principal: Principal, *, now: float | None = None) -> str:
        """A token for ``principal``."""
        issued = str(int(now or time.time()))
        return issued + "." + self._mac(principal.user_id, issued)

    def check(self, principal: Principal, token: str | None, *, now: float | None = None) -> bool:
        """Whether ``token`` was issued to ``principal`` and is still fresh."""
        issued, _, mac = (token or "").partition(".")
        if not issued.isdigit() or not mac:
            return False
        if not hmac.compare_digest(mac, self._mac(principal.user_id, issued)):
            return False
        return 0 <= (now or time.time()) - int(issued) <= CSRF_SECONDS

    def _mac(self, user_id: str, issued: str) -> str:
        return _b64url(hmac.new(self._key, f"{user_id}|{issued}".encode(), hashlib.sha256).digest())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value.strip() if isinstance(value, str) and value.strip() else None
