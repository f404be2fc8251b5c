"""Queue trigger ``call-records``: after a meeting's call ended, read its Graph call record to settle the final
attendance and keep media quality (docs/presence.md). Until the record exists (or after a 429/5xx), the
message is enqueued again with a visibility delay; a store outage raises (the host retries, then poisons)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("call_records")
@bp.queue_trigger(arg_name="msg", queue_name="call-records", connection="AzureWebJobsStorage")
@observed("call_records")
def call_records(msg: func.QueueMessage) -> None:
    """Settle one visit from its call record (``{"appointmentKey"}``)."""
    from lib.queues import CALL_RECORDS_QUEUE, decode

    try:
        key = decode(msg.get_body()).get("appointmentKey")
    except (ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, str) or "|" not in key:
        raise ValueError("call-records message without an appointmentKey")  # to the poison queue
    svc = services()
    outcome = svc.call_records.settle(key)
    if outcome.retry_in is not None:
        try:
            svc.queues.send(CALL_RECORDS_QUEUE, {"appointmentKey": key}, visibility_timeout=outcome.retry_in)
        except Exception:
            log.warning("call-records retry not enqueued message=%s", msg.id)
    log.info("call-records message=%s outcome=%s added=%s", msg.id, outcome.outcome, outcome.added_events)
