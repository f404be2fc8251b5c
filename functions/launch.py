"""HTTP triggers of the video visit: SMART launch (provider, patient), its callback, our JWKS, the patient
join page and its events. Thin: parse the request, call ``lib.visits``, map errors in :func:`_error`.

Routes (under ``/api``):
- ``GET launch/provider``, ``GET launch/patient``: the launch URLs registered in Epic (``iss``, ``launch``,
  optional ``env``; or ``env`` + ``data`` for Epic's encrypted link).
- ``GET launch/callback``: the SMART ``redirect_uri``.
- ``GET launch/signin``: the Entra ``redirect_uri`` of the clinician's one-time Microsoft 365 sign-in.
- ``GET .well-known/jwks.json`` (= ``jwks/test.json``) and ``GET .well-known/jwks/production.json``: the JWK Set
  URLs registered in Epic for test and production environments (public keys of ``private_key_jwt``).
- ``GET join/{token}``: the patient's join page; ``POST join/{token}/events``: ``{"type": "connected"}``.
"""

from __future__ import annotations

import json
import logging
from http.cookies import CookieError, SimpleCookie
from typing import Any

import azure.functions as func

from functions.dependencies import services
from functions.http import correlation_id, problem
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)

LAUNCH_COOKIE = "vv_launch"


def _cookie(req: func.HttpRequest, name: str) -> str | None:
    raw = req.headers.get("cookie") or ""
    try:
        jar = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def _query(req: func.HttpRequest) -> dict[str, str]:
    return {k: v for k, v in req.params.items() if isinstance(v, str)}


def _respond(result: Any, correlation: str) -> func.HttpResponse:
    """Turn a ``lib.visits.pages`` ``Redirect`` or ``Page`` into an HTTP response."""
    from lib.visits.pages import BASE_HEADERS, Redirect

    headers = {**BASE_HEADERS, "x-correlation-id": correlation}
    for cookie in result.cookies:  # one cookie at most today (HttpResponse headers are a dict)
        headers["Set-Cookie"] = cookie.header()
    if isinstance(result, Redirect):
        headers["Location"] = result.location
        return func.HttpResponse(status_code=result.status, headers=headers)
    headers.update(result.headers)
    return func.HttpResponse(result.html, status_code=result.status, headers=headers,
                             mimetype="text/html", charset="utf-8")


def _error(exc: Exception, correlation: str, where: str) -> func.HttpResponse:
    """The one mapping of failures to the HTML error page (code, fix, correlation ID)."""
    from lib.smart.errors import LaunchError
    from lib.store.errors import StoreUnavailable
    from lib.visits.pages import error_page

    if isinstance(exc, LaunchError):
        error = _with_urls(exc)
        log.warning("%s failed code=%s correlation=%s", where, error.code, correlation)
    elif isinstance(exc, StoreUnavailable):
        error = LaunchError("STORE_UNAVAILABLE")
        log.warning("%s failed code=STORE_UNAVAILABLE correlation=%s", where, correlation)
    else:
        error = LaunchError("INTERNAL_ERROR")
        log.error("%s failed code=INTERNAL_ERROR type=%s correlation=%s", where, type(exc).__name__, correlation)
    return _respond(error_page(error, correlation), correlation)


def _with_urls(error: Any) -> Any:
    """The error with ``{public}`` in its admin hint replaced by ``PUBLIC_BASE_URL``."""
    if "{public}" not in error.admin_hint:
        return error
    try:
        public = services().settings.public_base_url
    except Exception:  # settings broken: keep the placeholder
        return error
    error.admin_hint = error.admin_hint.replace("{public}", public)
    return error


def _begin(req: func.HttpRequest, kind: str) -> func.HttpResponse:
    correlation = correlation_id(req)
    try:
        result = services().launch.begin(kind, _query(req), _cookie(req, LAUNCH_COOKIE), correlation_id=correlation)
    except Exception as exc:
        return _error(exc, correlation, f"launch_{kind}")
    return _respond(result, correlation)


@bp.function_name("launch_provider")
@bp.route(route="launch/provider", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("launch_provider")
def launch_provider(req: func.HttpRequest) -> func.HttpResponse:
    """Provider launch from Epic: ``?iss=..&launch=..[&sessionId=%CSN%&departmentId=..]`` -> authorize."""
    return _begin(req, "provider")


@bp.function_name("launch_patient")
@bp.route(route="launch/patient", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("launch_patient")
def launch_patient(req: func.HttpRequest) -> func.HttpResponse:
    """Patient launch from MyChart: ``?iss=..&launch=..`` -> authorize."""
    return _begin(req, "patient")


@bp.function_name("launch_callback")
@bp.route(route="launch/callback", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("launch_callback")
def launch_callback(req: func.HttpRequest) -> func.HttpResponse:
    """SMART redirect URI: ``?code=..&state=..[&iss=..]`` (RFC 9207 iss checked) -> the meeting or join page."""
    correlation = correlation_id(req)
    try:
        result = services().launch.complete(_query(req), _cookie(req, LAUNCH_COOKIE), correlation_id=correlation)
    except Exception as exc:
        return _error(exc, correlation, "launch_callback")
    return _respond(result, correlation)


@bp.function_name("launch_signin")
@bp.route(route="launch/signin", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("launch_signin")
def launch_signin(req: func.HttpRequest) -> func.HttpResponse:
    """Entra redirect URI of the clinician's one-time sign-in: ``?code=..&state=..`` -> the meeting."""
    correlation = correlation_id(req)
    try:
        result = services().launch.complete_signin(_query(req), _cookie(req, LAUNCH_COOKIE),
                                                   correlation_id=correlation)
    except Exception as exc:
        return _error(exc, correlation, "launch_signin")
    return _respond(result, correlation)


def _jwks(req: func.HttpRequest, kind: str) -> func.HttpResponse:
    """The public JWK Set of environment kind ``kind`` (``kid`` = RFC 7638 thumbprint, ``alg`` RS384/ES384, ``use``
    sig), cacheable for an hour (Epic caches up to 29 h otherwise; keep a replaced key published a day)."""
    correlation = correlation_id(req)
    from lib.smart.errors import LaunchError

    try:
        document = services().smart_keyring.for_kind(kind).jwks()
    except LaunchError as exc:
        log.error("jwks unavailable kind=%s code=%s correlation=%s", kind, exc.code, correlation)
        return problem(503, "Keys unavailable", exc.admin_hint, correlation=correlation, code=exc.code)
    return func.HttpResponse(json.dumps(document), status_code=200, mimetype="application/json",
                             headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*",
                                      "x-correlation-id": correlation})


@bp.function_name("jwks")
@bp.route(route=".well-known/jwks.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("jwks")
def jwks(req: func.HttpRequest) -> func.HttpResponse:
    """The JWK Set URL of *test* environments (kept stable for existing Epic registrations)."""
    return _jwks(req, "test")


@bp.function_name("jwks_test")
@bp.route(route=".well-known/jwks/test.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("jwks_test")
def jwks_test(req: func.HttpRequest) -> func.HttpResponse:
    """The JWK Set URL of test environments (same keys as ``.well-known/jwks.json``)."""
    return _jwks(req, "test")


@bp.function_name("jwks_production")
@bp.route(route=".well-known/jwks/production.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("jwks_production")
def jwks_production(req: func.HttpRequest) -> func.HttpResponse:
    """The JWK Set URL of production environments (``SMART_PRIVATE_KEYS_PRODUCTION``)."""
    return _jwks(req, "production")


@bp.function_name("join_page")
@bp.route(route="join/{token}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("join_page")
def join_page(req: func.HttpRequest) -> func.HttpResponse:
    """The patient's join page (device test, Join button) for the visit behind an SMS link token."""
    correlation = correlation_id(req)
    try:
        result = services().join.page(req.route_params.get("token", ""), correlation_id=correlation)
    except Exception as exc:
        return _error(exc, correlation, "join_page")
    return _respond(result, correlation)


@bp.function_name("join_events")
@bp.route(route="join/{token}/events", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("join_events")
def join_events(req: func.HttpRequest) -> func.HttpResponse:
    """Record a patient event from the join page: JSON ``{"type": "connected", "attempt": ".."}`` -> 202."""
    correlation = correlation_id(req)
    from lib.smart.errors import LaunchError
    from lib.store.errors import StoreUnavailable
    from lib.visits.join import InvalidEvent

    if (req.headers.get("content-type") or "").split(";")[0].strip().lower() != "application/json":
        return problem(415, "Unsupported media type", "Send application/json.", correlation=correlation)
    try:
        body = json.loads(req.get_body() or b"null")
    except ValueError:
        return problem(400, "Bad request", "The body is not JSON.", correlation=correlation)
    try:
        recorded = services().join.record_event(req.route_params.get("token", ""), body, correlation_id=correlation)
    except InvalidEvent as exc:
        return problem(400, "Bad request", exc.reason, correlation=correlation)
    except LaunchError as exc:
        return problem(exc.status, exc.code, exc.user_message, correlation=correlation, code=exc.code)
    except StoreUnavailable:
        return problem(503, "Unavailable", "Try again in a moment.", correlation=correlation)
    return func.HttpResponse(json.dumps({"eventId": recorded.event_id, "writeback": recorded.writeback}),
                             status_code=202, mimetype="application/json",
                             headers={"Cache-Control": "no-store", "x-correlation-id": correlation})
