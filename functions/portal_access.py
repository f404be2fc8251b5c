"""Who may call a portal page or admin API route: the one check every portal trigger makes (admin pages and
API, reports). Thin: the rules are in :mod:`lib.config.access`.

Usage in a trigger::

    principal = authorize(req, ADMIN)                         # a read
    principal = authorize(req, ADMIN, change=True, form=form)  # a change: CSRF token + same origin

:class:`Denied` carries the HTTP status and a message; :func:`problem_for` turns it into a JSON problem,
the page layer into an HTML page.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

import azure.functions as func

from functions.dependencies import services
from functions.http import UnreadableJson, correlation_id, problem, read_json

#: Largest JSON or form body a portal route reads (a certificate upload has its own, lower cap).
MAX_BODY = 256 * 1024


class Denied(Exception):
    """The request may not proceed: ``status`` (401/403/413/415/400), ``title``, ``detail``, ``code``."""

    def __init__(self, status: int, title: str, detail: str, code: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.code = status, title, detail, code


def cookies(req: func.HttpRequest) -> dict[str, str]:
    """The request's cookies (an unreadable Cookie header counts as none)."""
    try:
        jar = SimpleCookie(req.headers.get("cookie") or "")
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def principal_of(req: func.HttpRequest):
    """The signed-in portal user.

    Raises:
        Denied: 401 ``NOT_SIGNED_IN`` or ``FORGED_PRINCIPAL``.
    """
    from lib.config.access import NotSignedIn

    try:
        return services().portal.access.principal(req.headers, cookies(req))
    except NotSignedIn as exc:
        code = "FORGED_PRINCIPAL" if exc.forged else "NOT_SIGNED_IN"
        raise Denied(401, "Not signed in", exc.reason, code) from None


def authorize(req: func.HttpRequest, *roles: str, change: bool = False,
              form: Mapping[str, str] | None = None):
    """The signed-in user when they hold one of ``roles``; for a change also the CSRF token and origin.

    Raises:
        Denied: 401 (not signed in / forged), 403 (``ROLE_MISSING``, ``CSRF_FAILED``, ``CROSS_SITE``).
    """
    from lib.config.access import Forbidden, require

    principal = principal_of(req)
    try:
        require(principal, *roles)
    except Forbidden as exc:
        raise Denied(403, "Not allowed", exc.reason, "ROLE_MISSING") from None
    if change:
        check_change(req, principal, form)
    return principal


def check_change(req: func.HttpRequest, principal: object, form: Mapping[str, str] | None = None) -> None:
    """A change must come from our own pages or a script holding a token: same origin (when the browser says)
    and a CSRF token issued to this user (``X-CSRF-Token`` header or ``csrf_token`` form field).

    Raises:
        Denied: 403 ``CROSS_SITE`` or ``CSRF_FAILED``.
    """
    from lib.config.access import CSRF_FIELD, CSRF_HEADER

    portal = services().portal
    origin = req.headers.get("origin")
    public = urlsplit(portal.public_base_url)
    # Pages are served with Referrer-Policy no-referrer, so browsers send "Origin: null" on their own form
    # posts; Sec-Fetch-Site still tells same-origin from cross-site, and the CSRF token decides.
    if origin and origin != "null" and origin.rstrip("/") != f"{public.scheme}://{public.netloc}":
        raise Denied(403, "Cross-site request refused", "This change came from another site.", "CROSS_SITE")
    if (req.headers.get("sec-fetch-site") or "").lower() == "cross-site":
        raise Denied(403, "Cross-site request refused", "This change came from another site.", "CROSS_SITE")
    token = req.headers.get(CSRF_HEADER) or (form or {}).get(CSRF_FIELD)
    if not portal.csrf.check(principal, token):  # type: ignore[arg-type]
        raise Denied(403, "Form expired or not sent by the portal",
                     "The request has no valid CSRF token. Reload the page and try again (scripts: send the token "
                     "from GET /api/config/session in the X-CSRF-Token header).", "CSRF_FAILED")


def json_body(req: func.HttpRequest) -> object:
    """The JSON body (UTF-8, at most :data:`MAX_BODY` bytes).

    Raises:
        Denied: 415 not JSON, 413 too large, 400 unreadable.
    """
    if (req.headers.get("content-type") or "").split(";")[0].strip().lower() != "application/json":
        raise Denied(415, "Unsupported media type", "Send the body as application/json.", "NOT_JSON")
    raw = req.get_body() or b""
    try:
        return read_json(raw, max_bytes=MAX_BODY, empty={})
    except UnreadableJson as exc:
        if exc.reason == "too_large":
            raise Denied(413, "Body too large", f"The body has {len(raw):,} bytes; at most {MAX_BODY:,} are read.",
                         "TOO_LARGE") from None
        detail = "The body is nested too deeply to read." if exc.reason == "too_deep" else "The body is not UTF-8 JSON."
        raise Denied(400, "Bad request", detail, "BAD_JSON") from None


def form_body(req: func.HttpRequest, *, max_bytes: int = MAX_BODY) -> dict[str, list[str]]:
    """A urlencoded form (every value of each field).

    Raises:
        Denied: 415 not a form, 413 too large, 400 unreadable.
    """
    kind = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Denied(415, "Unsupported media type", "Send the form as application/x-www-form-urlencoded.",
                     "NOT_FORM")
    raw = req.get_body() or b""
    if len(raw) > max_bytes:
        raise Denied(413, "Form too large", f"The form has {len(raw):,} bytes; at most {max_bytes:,} are read.",
                     "TOO_LARGE")
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise Denied(400, "Bad request", "The form is not UTF-8.", "BAD_FORM") from None


def problem_for(req: func.HttpRequest, denied: Denied) -> func.HttpResponse:
    """A JSON problem response for ``denied`` (with ``WWW-Authenticate`` on 401)."""
    response = problem(denied.status, denied.title, denied.detail, correlation=correlation_id(req), code=denied.code)
    if denied.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="portal"'
    return response
