"""Queue trigger ``call-records``: after a meeting, read what Graph keeps about it: the call record (final
attendance and media quality) or, where the tenant allows neither call-event subscriptions nor call records,
the meeting's attendance report (lib/presence/after_meeting.py, docs/presence.md). Until it exists (or after a
429/5xx), the message is enqueued again with a visibility delay; a store outage raises (the host retries,
then poisons)."""

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
    """Run one after-the-meeting message (``{"appointmentKey", "read"?, "then"?}``)."""
    from lib.presence.after_meeting import AfterMeetingWork
    from lib.queues import CALL_RECORDS_QUEUE, decode

    try:
        work = AfterMeetingWork.parse(decode(msg.get_body()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable call-records message ({exc})") from None  # to the poison queue
    svc = services()
    outcome = svc.after_meeting.run(work)
    if outcome.retry is not None and outcome.retry_in is not None:
        try:
            svc.queues.send(CALL_RECORDS_QUEUE, outcome.retry.message(), visibility_timeout=outcome.retry_in)
        except Exception:  # raise: the host delivers this message again rather than lose the visit's look
            log.warning("call-records retry not enqueued message=%s", msg.id)
            raise
    log.info("call-records message=%s read=%s outcome=%s added=%s", msg.id, outcome.read, outcome.outcome,
             outcome.added_events)
