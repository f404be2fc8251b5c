"""HTTP trigger ``POST /api/hl7/{environmentId}``: HL7 v2 SIU in, HL7 ACK out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import azure.functions as func

from functions.dependencies import services
from functions.http import correlation_id, problem
from functions.observability import observed

if TYPE_CHECKING:
    from lib.scheduling.intake import IntakeResponse

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("hl7_intake")
@bp.route(route="hl7/{environmentId}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("hl7_intake")
def hl7_intake(req: func.HttpRequest) -> func.HttpResponse:
    """Accept one HL7 message; answer the ACK (``AA``/``AE``/``AR``) or an HTTP problem.

    The body size is checked before anything is read into the parser (413); the request signature
    (docs/hl7-intake.md) is checked before the body is parsed (401/403 with a reason ``code``). Texts
    that are due at once (confirmations) are handed to the ``sms-outbox`` queue after the ACK is decided.

    Guessing is limited per client address (``GUESS_RATE_LIMIT``, shared with the other secret guesses): a
    request to an environment that does not exist (404) or whose signature fails (401) counts as a failed
    guess, and while an address is over the limit such a request is answered 429 with ``Retry-After``
    instead. A request that authenticates is never counted nor refused, even from an address over the limit
    (an engine behind the same NAT as a misbehaving client, a test run that sent bad signatures first); an
    address cannot keep more than a few bodies for unknown environments (``lib/scheduling/keep_limit.py``).
    """
    from lib.scheduling.unavailable import store_unavailable_response, unavailable_response
    from lib.settings import SettingsError
    from lib.store.errors import StoreUnavailable
    from lib.visits.throttle import client_address

    correlation = correlation_id(req)
    body = req.get_body() or b""
    try:
        svc = services()
        intake = svc.intake
    except SettingsError as exc:  # e.g. a Key Vault reference that did not resolve: the message is not lost
        log.error("hl7 intake unavailable: %s correlation=%s", exc, correlation)
        return _answer(unavailable_response(body, "A connector secret is unavailable; send the message again later."),
                       correlation)
    if len(body) > svc.settings.hl7_max_bytes:
        return problem(
            413,
            "Message too large",
            f"The message is {len(body)} bytes; this connector accepts at most {svc.settings.hl7_max_bytes}.",
            correlation=correlation,
        )
    client = client_address(req.headers)
    environment_id = req.route_params.get("environmentId", "")
    try:
        result = intake.handle(environment_id, body, dict(req.headers), client=client)
    except StoreUnavailable:  # a step the intake does not answer itself (the signature's jti, keeping a refusal)
        log.warning("hl7 intake store unavailable correlation=%s", correlation)
        return _answer(store_unavailable_response(body), correlation)
    except Exception:
        log.exception("hl7 intake failed correlation=%s", correlation)
        return _answer(unavailable_response(body, "The message was not accepted; send it again later."), correlation)
    if result.status in (401, 404):  # a failed signature or an environment that does not exist: a guess
        refusal = svc.throttle.presented(client, issued=False)  # refused while over the limit, else counted
        if refusal is not None:
            response = problem(429, "Too many requests", "Too many requests to unknown environments or with "
                               "failed signatures from this address; wait and send again.", correlation=correlation,
                               code="rate_limited")
            response.headers["Retry-After"] = str(refusal.retry_after)
            return response
    if result.outbox_to_send:
        try:
            for item_id in result.outbox_to_send:
                svc.queues.send("sms-outbox", {"id": item_id, "correlationId": correlation})
        except Exception:  # the reminder timer sends due outbox items anyway
            log.warning("could not enqueue texts correlation=%s; the timer will send them", correlation)
    if result.changed_appointment:
        try:  # one queue message: the reports re-read the appointment off the intake's path
            svc.report_feed.appointment_changed(result.changed_appointment)
        except Exception:
            log.warning("could not enqueue the report update correlation=%s", correlation)
    return _answer(result, correlation)


def _answer(result: IntakeResponse, correlation: str) -> func.HttpResponse:
    return func.HttpResponse(
        result.body,
        status_code=result.status,
        mimetype=result.content_type,
        headers={"x-correlation-id": correlation, **dict(result.headers)},
    )
