"""HTTP triggers for Microsoft Graph change notifications (docs/presence.md).

``POST /api/notifications/graph``: meeting call events (rich, encrypted); ``POST
/api/notifications/graph/lifecycle``: lifecycle events. Both answer Graph's validation request
(``?validationToken=...``: 200, ``text/plain``, the token decoded) within its 10-second budget.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.http import correlation_id, problem
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)

#: Graph's validation tokens are short sentences; anything longer is not one.
MAX_VALIDATION_TOKEN = 512
#: Seconds Graph is asked to wait before delivering again a notification we could not apply now.
RETRY_AFTER_SECONDS = 5


def _validation(req: func.HttpRequest) -> func.HttpResponse | None:
    token = req.params.get("validationToken")
    if token is None:
        return None
    if not token or len(token) > MAX_VALIDATION_TOKEN:
        return problem(400, "Bad validation request", "The validation token is empty or too long.")
    return func.HttpResponse(token, status_code=200, mimetype="text/plain",
                             headers={"X-Content-Type-Options": "nosniff"})


def _answer(report: object, correlation: str) -> func.HttpResponse:
    refused = getattr(report, "refused", [])
    if refused:
        # Deliveries that fail the validation-token, clientState or signature checks were not sent by Graph for us.
        return problem(403, "Notification refused", "The delivery failed its validation-token check, or a "
                       "notification its clientState, certificate or signature check; what failed was not applied.",
                       correlation=correlation, reasons=sorted(set(refused)))
    return func.HttpResponse(status_code=202, headers={"x-correlation-id": correlation})


def _handle(req: func.HttpRequest, which: str) -> func.HttpResponse:
    from lib.presence.encrypted_content import NotificationRefused
    from lib.presence.validation_tokens import SigningKeysUnavailable
    from lib.store.errors import ConcurrencyConflict, StoreUnavailable

    handshake = _validation(req)
    if handshake is not None:
        return handshake
    correlation = correlation_id(req)
    try:
        service = services().notifications
        handle = service.changes if which == "changes" else service.lifecycle
        report = handle(req.get_body() or b"", correlation_id=correlation)
    except NotificationRefused as exc:
        return problem(400, "Not a notification delivery", f"The body was refused ({exc.reason}).",
                       correlation=correlation)
    except SigningKeysUnavailable as exc:
        log.warning("graph notification deferred: identity platform keys unavailable reason=%s correlation=%s",
                    exc.reason, correlation)
        return _try_again("The identity platform's signing keys cannot be read to check the delivery; Graph "
                          "delivers again.", correlation)
    except StoreUnavailable:
        log.warning("graph notification deferred: store unavailable correlation=%s", correlation)
        return _try_again("The store is unavailable; Graph delivers again.", correlation)
    except ConcurrencyConflict:
        # A burst of notifications for one visit kept changing its roster through every retry: what was
        # stored stays (idempotent), and Graph's redelivery applies the rest.
        log.warning("graph notification deferred: the visit's roster kept changing correlation=%s", correlation)
        return _try_again("Other notifications of the same meeting were being applied; Graph delivers again.",
                          correlation)
    return _answer(report, correlation)


def _try_again(detail: str, correlation: str) -> func.HttpResponse:
    """503 with ``Retry-After``: Graph delivers the notification again later."""
    response = problem(503, "Try again", detail, correlation=correlation)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@bp.function_name("graph_notifications")
@bp.route(route="notifications/graph", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("graph_notifications")
def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Meeting call events: 202 applied, 403 the delivery or a notification failed its checks, 400 not a
    delivery, 503 with ``Retry-After`` store down, the identity platform's keys unreadable, or the visit's
    roster busy with concurrent notifications (Graph retries; effects are idempotent)."""
    return _handle(req, "changes")


@bp.function_name("graph_lifecycle")
@bp.route(route="notifications/graph/lifecycle", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("graph_lifecycle")
def graph_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    """Lifecycle events (reauthorizationRequired, subscriptionRemoved, missed); answers as
    :func:`graph_notifications`."""
    return _handle(req, "lifecycle")
