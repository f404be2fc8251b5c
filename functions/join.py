"""HTTP triggers of the patient's side of the visit. Thin: parse the request, call ``lib.visits.join``, map
errors in one place per kind of answer (page or JSON problem).

Routes (under ``/api``):
- ``GET join/{token}[?lang=es]``: the join page (device test, lobby, the meeting), every state of the visit.
- ``POST join/{token}/call``: a new ACS identity + ``voip`` token and the meeting link (JSON).
- ``POST join/{token}/events``: ``{"type": "page_opened" | "device_test", "attempt", ...}`` -> 202.
- ``GET devicetest?env=<environment ID>[&lang=]``: the device test on its own (the EHR's device-test record).
- ``GET devicetest/ping`` and ``GET devicetest/payload``: what the device test measures the connection with.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import azure.functions as func

from functions.dependencies import services
from functions.http import UnreadableJson, correlation_id, problem, read_json
from functions.launch import STORE_RETRY_SECONDS, _client, _error, _frame, _respond
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)

#: Bytes the connection test downloads to measure throughput (random, so no transport compresses them).
PAYLOAD = os.urandom(1024 * 1024)
NO_STORE = {"Cache-Control": "no-store"}


#: Largest body the join routes read (a device-test report is a few hundred bytes).
MAX_BODY = 16 * 1024


def _json_body(req: func.HttpRequest, correlation: str) -> tuple[Any, func.HttpResponse | None]:
    """The parsed JSON body, or the problem to answer. JSON only: a cross-site form cannot post it without
    a CORS preflight, which we never grant."""
    if (req.headers.get("content-type") or "").split(";")[0].strip().lower() != "application/json":
        return None, problem(415, "Unsupported media type", "Send application/json.", correlation=correlation,
                             code="NOT_JSON")
    try:
        return read_json(req.get_body() or b"", max_bytes=MAX_BODY), None
    except UnreadableJson as exc:
        if exc.reason == "too_large":
            return None, problem(413, "Body too large", f"At most {MAX_BODY:,} bytes are read.",
                                 correlation=correlation, code="TOO_LARGE")
        return None, problem(400, "Bad request", "The body is not JSON.", correlation=correlation, code="BAD_JSON")


def _body_or_link_problem(req: func.HttpRequest, correlation: str) -> tuple[Any, func.HttpResponse | None]:
    """As :func:`_json_body`, but an unreadable body on a link that leads nowhere answers as the link (404
    ``LINK_INVALID``...): the token is judged before the body."""
    body, failed = _json_body(req, correlation)
    if failed is None:
        return body, None
    try:
        services().join.check_link(req.route_params.get("token", ""))
    except Exception as exc:
        return None, _api_error(exc, correlation)
    return None, failed


def _api_error(exc: Exception, correlation: str) -> func.HttpResponse:
    """The one mapping of the JSON routes' failures to problem responses (``code`` names the page's state)."""
    from lib.smart.errors import LaunchError, unusable_settings_error
    from lib.store.errors import StoreUnavailable
    from lib.stored_settings import UnusableSetting
    from lib.visits.call_identity import CallIdentityUnavailable
    from lib.visits.device_test_limits import TooManyDeviceTests
    from lib.visits.join import InvalidEvent, VisitNotOpen

    if isinstance(exc, TooManyDeviceTests):
        log.warning("join event refused code=TOO_MANY_DEVICE_TESTS correlation=%s", correlation)
        return problem(429, "Too many device tests", f"{exc} The result is still shown on the page.",
                       correlation=correlation, code="TOO_MANY_DEVICE_TESTS")
    if isinstance(exc, UnusableSetting):  # a stored environment document that cannot even be read
        exc = unusable_settings_error(exc)
    if isinstance(exc, InvalidEvent):
        return problem(400, "Bad request", exc.reason, correlation=correlation)
    if isinstance(exc, VisitNotOpen):
        return problem(409, "Visit not open", "The visit cannot be joined now.", correlation=correlation,
                       code=exc.code)
    if isinstance(exc, LaunchError):
        if exc.code == "ENVIRONMENT_SETTINGS_INVALID":  # for the admin: the setting, never anything about the visit
            log.warning("join API failed code=%s correlation=%s: %s", exc.code, correlation, exc.admin_hint)
        return problem(exc.status, exc.code, exc.user_message, correlation=correlation, code=exc.code)
    if isinstance(exc, CallIdentityUnavailable):
        log.warning("call identity unavailable reason=%s correlation=%s", exc.reason,
                                            correlation)
        return problem(503, "Unavailable", "The video service is not reachable. Try again in a moment.",
                       correlation=correlation, code="ACS_UNAVAILABLE")
    if isinstance(exc, StoreUnavailable):
        busy = problem(503, "Unavailable", "Try again in a moment.", correlation=correlation, code="STORE_UNAVAILABLE")
        busy.headers["Retry-After"] = str(STORE_RETRY_SECONDS)
        return busy
    log.error("join API failed code=INTERNAL_ERROR type=%s correlation=%s",
                                      type(exc).__name__, correlation)
    return problem(500, "Internal error", "Something went wrong on our side. Try again in a moment.",
                   correlation=correlation, code="INTERNAL_ERROR")


def _presented(req: func.HttpRequest) -> Any:
    """The guess limit's answer for the join link in the URL, checked before any work (``Refusal`` or ``None``):
    a link we signed (its HMAC, no store) is never counted nor refused; any other counts as a failed guess."""
    svc = services()
    return svc.throttle.presented(_client(req), issued=svc.join_links.issued(req.route_params.get("token") or ""))


def _guess_refusal(req: func.HttpRequest, correlation: str) -> func.HttpResponse | None:
    """The 429 problem for a link we never issued from an address over the guess limit."""
    refusal = _presented(req)
    if refusal is None:
        return None
    response = problem(429, "Too many requests", "Too many invalid join links from this address; wait and retry.",
                       correlation=correlation, code="RATE_LIMITED")
    response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def _language(req: func.HttpRequest) -> str | None:
    value = req.params.get("lang")
    return value if isinstance(value, str) and len(value) <= 16 else None


@bp.function_name("join_page")
@bp.route(route="join/{token?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("join_page")
def join_page(req: func.HttpRequest) -> func.HttpResponse:
    """The patient's join page for the visit behind an SMS or MyChart link token (``/api/join/`` alone, a link
    an SMS app cut short, gets the page's "This link does not work" state like any other bad link)."""
    correlation = correlation_id(req)
    language, accept_language = _language(req), req.headers.get("accept-language")
    try:
        refusal = _presented(req)
        if refusal is not None:
            log.warning("join_page refused code=RATE_LIMITED correlation=%s", correlation)
            result = services().join.rate_limited_page(retry_after=refusal.retry_after, language=language,
                                                       accept_language=accept_language)
        else:
            result = services().join.page(req.route_params.get("token") or "", language=language,
                                           accept_language=accept_language, correlation_id=correlation,
                                           frame=_frame(req))
    except Exception as exc:
        return _error(exc, correlation, "join_page")
    return _respond(result, correlation)


@bp.function_name("join_call")
@bp.route(route="join/{token}/call", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("join_call")
def join_call(req: func.HttpRequest) -> func.HttpResponse:
    """A new ACS identity and token to join the visit now: ``{"token", "expiresOn", "meetingLink",
    "displayName"}`` (never logged, never cached)."""
    correlation = correlation_id(req)
    refused = _guess_refusal(req, correlation)
    if refused is not None:
        return refused
    _, failed = _body_or_link_problem(req, correlation)
    if failed is not None:
        return failed
    try:
        grant = services().join.call(req.route_params.get("token", ""), correlation_id=correlation)
    except Exception as exc:
        return _api_error(exc, correlation)
    body = {"token": grant.token, "expiresOn": grant.expires_utc.isoformat(), "meetingLink": grant.meeting_link,
            "displayName": grant.display_name}
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json",
                             headers={**NO_STORE, "x-correlation-id": correlation})


@bp.function_name("join_events")
@bp.route(route="join/{token}/events", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("join_events")
def join_events(req: func.HttpRequest) -> func.HttpResponse:
    """Record a patient event from the join page (page opened, device test) -> 202."""
    correlation = correlation_id(req)
    refused = _guess_refusal(req, correlation)
    if refused is not None:
        return refused
    body, failed = _body_or_link_problem(req, correlation)
    if failed is not None:
        return failed
    try:
        recorded = services().join.record_event(req.route_params.get("token", ""), body, correlation_id=correlation)
    except Exception as exc:
        return _api_error(exc, correlation)
    return func.HttpResponse(json.dumps({"eventId": recorded.event_id, "writeback": recorded.writeback}),
                             status_code=202, mimetype="application/json",
                             headers={**NO_STORE, "x-correlation-id": correlation})


@bp.function_name("device_test_page")
@bp.route(route="devicetest", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("device_test_page")
def device_test_page(req: func.HttpRequest) -> func.HttpResponse:
    """The device test on its own, from the EHR's device-test record: ``?env=<environment ID>``."""
    correlation = correlation_id(req)
    env = req.params.get("env")
    try:
        result = services().join.device_test(env if isinstance(env, str) else None, language=_language(req),
                                             accept_language=req.headers.get("accept-language"))
    except Exception as exc:
        return _error(exc, correlation, "device_test_page")
    return _respond(result, correlation)


@bp.function_name("device_test_ping")
@bp.route(route="devicetest/ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("device_test_ping")
def device_test_ping(req: func.HttpRequest) -> func.HttpResponse:
    """A tiny answer: the device test's round-trip time to the app."""
    return func.HttpResponse("ok", status_code=200, mimetype="text/plain", headers=NO_STORE)


@bp.function_name("device_test_payload")
@bp.route(route="devicetest/payload", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("device_test_payload")
def device_test_payload(req: func.HttpRequest) -> func.HttpResponse:
    """1 MiB of random bytes: the device test's download speed."""
    return func.HttpResponse(PAYLOAD, status_code=200, mimetype="application/octet-stream", headers=NO_STORE)
