"""HTTP triggers of the video visit: SMART launch (provider, patient), its callback and our JWKS (the
patient's join page is ``functions/join.py``).
Thin: parse the request, call ``lib.visits``, map errors in :func:`_error`.

Routes (under ``/api``):
- ``GET launch/provider``, ``GET launch/patient``: the launch URLs registered in Epic (``iss``, ``launch``,
  optional ``env``; or ``env`` + ``data`` for Epic's encrypted link).
- ``GET launch/callback``: the SMART ``redirect_uri``.
- ``GET launch/signin``: the Entra ``redirect_uri`` of the clinician's one-time Microsoft 365 sign-in.
- ``GET .well-known/jwks.json`` (= ``jwks/test.json``) and ``GET .well-known/jwks/production.json``: the JWK Set
  URLs registered in Epic for test and production environments (public keys of ``private_key_jwt``).
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
#: The ``Retry-After`` of every answer given while the store cannot be reached (seconds).
STORE_RETRY_SECONDS = 30


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


def _frame_ancestors() -> tuple[str, ...]:
    """Who may frame an error page (``FRAME_NOT_ALLOWED`` excepted: anyone, as it must be readable in the frame
    it refuses): every environment's Epic origins (the environment may not be known yet)."""
    try:
        return services().frame_origins.origins()  # type: ignore[no-any-return]
    except Exception:  # settings broken: the page is still shown, framable by us only
        return ()


def _error(exc: Exception, correlation: str, where: str) -> func.HttpResponse:
    """The one mapping of failures to the HTML error page (code, fix, correlation ID)."""
    from lib.smart.errors import LaunchError
    from lib.store.errors import StoreUnavailable
    from lib.visits.pages import error_page

    if isinstance(exc, LaunchError):
        error = _with_urls(exc)
        log.warning("%s failed code=%s correlation=%s", where, error.code, correlation)
    elif isinstance(exc, StoreUnavailable):
        error = LaunchError("STORE_UNAVAILABLE", retry_after=STORE_RETRY_SECONDS)
        log.warning("%s failed code=STORE_UNAVAILABLE correlation=%s", where, correlation)
    else:
        error = LaunchError("INTERNAL_ERROR")
        log.error("%s failed code=INTERNAL_ERROR type=%s correlation=%s", where, type(exc).__name__, correlation)
    anyone = error.code == "FRAME_NOT_ALLOWED"
    return _respond(error_page(error, correlation, frame_ancestors=() if anyone else _frame_ancestors(),
                               frame_anyone=anyone), correlation)


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


def _rate_limited(refusal: Any) -> Exception:
    from lib.smart.errors import LaunchError

    return LaunchError("RATE_LIMITED", retry_after=refusal.retry_after)


def _client(req: func.HttpRequest) -> str:
    from lib.visits.throttle import client_address

    return client_address(req.headers)


def _frame(req: func.HttpRequest) -> Any:
    from lib.visits.framing import FrameContext

    return FrameContext.from_headers(req.headers)


#: Codes that mean "the state presented is not one we issued": counted as guesses. (Join links and status
#: passes are signed: their triggers check the signature first, ``AnonymousThrottle.presented``.)
GUESS_CODES = frozenset({"STATE_INVALID", "STATE_MISSING"})


def _count_guess(exc: Exception, client: str) -> None:
    if getattr(exc, "code", None) in GUESS_CODES:
        services().throttle.failed_guess(client)


def _begin(req: func.HttpRequest, kind: str) -> func.HttpResponse:
    correlation = correlation_id(req)
    try:
        refusal = services().throttle.launch_attempt(_client(req))
        if refusal is not None:
            log.warning("launch_%s refused code=RATE_LIMITED correlation=%s", kind, correlation)
            raise _rate_limited(refusal)
        result = services().launch.begin(kind, _query(req), _cookie(req, LAUNCH_COOKIE), correlation_id=correlation,
                                         frame=_frame(req))
    except Exception as exc:
        return _error(exc, correlation, f"launch_{kind}")
    return _respond(result, correlation)


def _guarded(req: func.HttpRequest, where: str, call: Any) -> func.HttpResponse:
    """Run ``call()`` for a request that presents a secret: refused while its address is over the guess
    limit, and a failure that means "unknown secret" counts against it."""
    correlation = correlation_id(req)
    client = _client(req)
    try:
        refusal = services().throttle.guesses_exhausted(client)
        if refusal is not None:
            log.warning("%s refused code=RATE_LIMITED correlation=%s", where, correlation)
            raise _rate_limited(refusal)
        result = call(correlation)
    except Exception as exc:
        _count_guess(exc, client)
        return _error(exc, correlation, where)
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
    return _guarded(req, "launch_callback", lambda correlation: services().launch.complete(
        _query(req), _cookie(req, LAUNCH_COOKIE), correlation_id=correlation, frame=_frame(req)))


@bp.function_name("launch_signin")
@bp.route(route="launch/signin", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("launch_signin")
def launch_signin(req: func.HttpRequest) -> func.HttpResponse:
    """Entra redirect URI of the clinician's one-time sign-in: ``?code=..&state=..`` -> the meeting."""
    return _guarded(req, "launch_signin", lambda correlation: services().launch.complete_signin(
        _query(req), _cookie(req, LAUNCH_COOKIE), correlation_id=correlation))


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
