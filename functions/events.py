"""HTTP trigger ``POST /api/events/acs``: Event Grid delivers ACS SMS events (delivery reports, inbound STOP,
START and HELP texts). The caller is authenticated (``?code=`` key, ACS topic) before anything is applied;
the subscription validation handshake is answered with the validation code (Event Grid "webhook event
delivery": ``{"validationResponse": code}``)."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from functions.dependencies import services
from functions.http import UnreadableJson, correlation_id, problem, read_json
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)

#: Event Grid batches are at most 1 MB (one event per batch in our subscriptions).
MAX_BODY_BYTES = 1_048_576


@bp.function_name("acs_events")
@bp.route(route="events/acs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("acs_events")
def acs_events(req: func.HttpRequest) -> func.HttpResponse:
    """Apply a batch of Event Grid events (EventGridSchema JSON array).

    Each event is validated on its own (``lib/sms/event_schema.py``): a malformed one is skipped, counted and
    logged by position and failed fields, and every valid one beside it is applied (Event Grid retries a
    failed batch for 24 hours, so one bad event must not hold back a STOP).

    Answers: 200 (every valid event applied, malformed ones skipped; or the handshake), 400 (not an event
    array, or no event of the batch is usable: a problem naming each one; Event Grid does not retry 400),
    401/403 (caller not authenticated; not retried either), 413, 503 (store down: Event Grid retries, effects
    are idempotent). Never logs phone numbers or message texts.
    """
    from lib.sms.event_schema import SUBSCRIPTION_VALIDATION, ValidationData, parse_batch
    from lib.sms.events import WebhookRejected, check_caller
    from lib.store.errors import StoreUnavailable

    correlation = correlation_id(req)
    svc = services()
    body = req.get_body() or b""
    try:  # the caller's key first: nothing of an unauthenticated body is read
        check_caller(expected_key=svc.settings.eventgrid_webhook_key, given_key=req.params.get("code"),
                     expected_topic=None, events=[])
    except WebhookRejected as rejected:
        log.warning("acs events rejected status=%d reason=%s correlation=%s", rejected.status, rejected.reason,
                    correlation)
        return problem(rejected.status, "Not authenticated", rejected.reason, correlation=correlation)
    try:
        events = read_json(body, max_bytes=MAX_BODY_BYTES)
    except UnreadableJson as exc:
        if exc.reason == "too_large":
            return problem(413, "Batch too large", "Event Grid batches are at most 1 MB.", correlation=correlation)
        events = None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return problem(400, "Not an Event Grid batch", "Expected a JSON array of events.", correlation=correlation)
    try:
        check_caller(
            expected_key=svc.settings.eventgrid_webhook_key,
            given_key=req.params.get("code"),
            expected_topic=svc.settings.acs_resource_id,
            events=events,
        )
    except WebhookRejected as rejected:
        log.warning("acs events rejected status=%d reason=%s correlation=%s", rejected.status, rejected.reason,
                    correlation)
        return problem(rejected.status, "Not authenticated", rejected.reason, correlation=correlation)
    valid, malformed = parse_batch(events)
    for event in valid:
        if event.event_type == SUBSCRIPTION_VALIDATION and isinstance(event.data, ValidationData):
            log.info("acs events subscription validation answered correlation=%s", correlation)
            return func.HttpResponse(json.dumps({"validationResponse": event.data.validation_code}),
                                     status_code=200, mimetype="application/json")
    if malformed and not valid:
        svc.acs_events.handle([], malformed)  # counted and logged like the ones skipped beside valid events
        return problem(400, "No usable event", "No event of the batch could be read: "
                       + "; ".join(bad.describe() for bad in malformed[:20]), correlation=correlation,
                       malformed=[bad.describe() for bad in malformed[:100]])
    try:
        report = svc.acs_events.handle(valid, malformed)
    except StoreUnavailable:
        return problem(503, "Store unavailable", "Deliver the events again later.", correlation=correlation)
    log.info("acs events applied=%d skipped_malformed=%d outcomes=%s correlation=%s", len(report.outcomes),
             len(report.malformed), report.outcomes, correlation)
    return func.HttpResponse(status_code=200)
