"""HTTP triggers of a visit's live status (docs/presence.md): ``GET /api/visits/{pass}/status`` (page) and
``GET /api/visits/{pass}/status.json``. The pass comes from a clinician's SMART launch into that visit with
``view=status`` (:mod:`lib.presence.status_pass`); without a valid pass there is nothing to see (404)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import azure.functions as func

from functions.dependencies import services
from functions.http import correlation_id, problem
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _guess_refusal(req: func.HttpRequest) -> Any:
    """The guess limit's answer for the pass in the URL (``Refusal`` or ``None``), checked before any work: a
    pass we signed is never counted nor refused; any other counts as a failed guess (docs/launch.md)."""
    from functions.launch import _client

    svc = services()
    return svc.throttle.presented(_client(req), issued=svc.status_passes.issued(req.route_params.get("token") or ""))


def _too_many(correlation: str, retry_after: int) -> func.HttpResponse:
    log.warning("visit status refused code=RATE_LIMITED correlation=%s", correlation)
    answer = problem(429, "Too many requests", "Too many invalid status links from this address; wait and retry.",
                     correlation=correlation, code="RATE_LIMITED")
    answer.headers["Retry-After"] = str(retry_after)
    return answer


def _status(token: str) -> tuple[Any, Any] | None:
    """``(pass, VisitStatus)`` or ``None`` when the pass is not valid now."""
    from lib.presence.live_status import visit_status
    from lib.presence.status_pass import InvalidPass

    svc = services()
    try:
        found = svc.status_passes.verify(token, now=svc.clock.now())
    except InvalidPass as exc:
        log.warning("visit status refused reason=%s", exc.reason)
        return None
    return found, visit_status(svc.presence_repo.get(found.appointment_key))


def call_state_label(status: Any) -> str:
    """One sentence about the call as a whole."""
    if status.call_ended_utc is not None:
        return "The call has ended."
    if status.call_started_utc is not None:
        return "The call is in progress."
    return "The call has not started yet."


@bp.function_name("visit_status_page")
@bp.route(route="visits/{token}/status", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("visit_status_page")
def visit_status_page(req: func.HttpRequest) -> func.HttpResponse:
    """The page: the participants table, redrawn from the JSON every 3 seconds by a static script."""
    from zoneinfo import ZoneInfo

    from lib.store.errors import StoreUnavailable
    from lib.web import render

    correlation = correlation_id(req)
    token = req.route_params.get("token") or ""
    refusal = _guess_refusal(req)
    if refusal is not None:
        from lib.smart.errors import LaunchError
        from lib.visits.pages import error_page

        page = error_page(LaunchError("RATE_LIMITED", retry_after=refusal.retry_after), correlation)
        return func.HttpResponse(page.html, status_code=page.status, headers={**page.headers, **NO_STORE},
                                 mimetype="text/html", charset="utf-8")
    try:
        found = _status(token)
        if found is None:
            page = render("launch_error.html", {
                "message": "This status link is not valid: it expires two hours after the visit. Open the "
                           "visit's status from Epic again.", "retry_advice": None, "code": "STATUS_LINK_INVALID",
                "correlation_id": correlation, "admin_hint": "The pass in the link is malformed, forged or expired."},
                status=404)
            return func.HttpResponse(page.html, status_code=404, headers={**page.headers, **NO_STORE},
                                     mimetype="text/html", charset="utf-8")
        visit_pass, status = found
        environment = services().repos.environments.get(visit_pass.appointment_key.split("|", 1)[0])
    except StoreUnavailable:
        return problem(503, "Try again", "The store is unavailable; reload in a minute.", correlation=correlation)
    zone = ZoneInfo(environment.time_zone if environment else "UTC")

    def local(at: datetime) -> str:
        return at.astimezone(zone).strftime("%H:%M")

    page = render("visit_status.html", {
        "json_url": "./status.json",
        "call_state": call_state_label(status),
        "zone_label": zone.key,
        "participants": [{"label": p.label, "state": p.state, "state_label": p.to_json()["stateLabel"],
                          "since_iso": p.since_utc.isoformat(), "since_local": local(p.since_utc)}
                         for p in status.participants],
    })
    return func.HttpResponse(page.html, status_code=page.status, headers={**page.headers, **NO_STORE},
                             mimetype="text/html", charset="utf-8")


@bp.function_name("visit_status_json")
@bp.route(route="visits/{token}/status.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("visit_status_json")
def visit_status_json(req: func.HttpRequest) -> func.HttpResponse:
    """``{"callStartedUtc", "callEndedUtc", "callStateLabel", "updatedUtc", "participants": [{"role",
    "label", "state", "stateLabel", "sinceUtc"}]}``; 404 without a valid pass."""
    from lib.store.errors import StoreUnavailable

    correlation = correlation_id(req)
    refusal = _guess_refusal(req)
    if refusal is not None:
        return _too_many(correlation, refusal.retry_after)
    try:
        found = _status(req.route_params.get("token") or "")
    except StoreUnavailable:
        return problem(503, "Try again", "The store is unavailable.", correlation=correlation)
    if found is None:
        return problem(404, "Not found", "This status link is not valid.", correlation=correlation)
    body = {**found[1].to_json(), "callStateLabel": call_state_label(found[1])}
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json",
                             headers={**NO_STORE, "x-correlation-id": correlation})
