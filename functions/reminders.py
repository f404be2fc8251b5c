"""SMS sending: the ``sms-outbox`` queue (texts due now) and the every-minute timer (reminders due)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed, sms_outcome, sms_run

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("sms_outbox")
@bp.queue_trigger(arg_name="msg", queue_name="sms-outbox", connection="AzureWebJobsStorage")
@observed("sms_outbox")
def sms_outbox(msg: func.QueueMessage) -> None:
    """Send one outbox item now (confirmations). Redelivery is harmless: the outbox state decides.

    A store outage raises, so the host retries the message and moves it to ``sms-outbox-poison`` after
    ``maxDequeueCount`` attempts; the timer still sends the item when it is due. A malformed message raises
    too (counted as ``vv.queue.malformed``), so it reaches the poison queue instead of vanishing.
    """
    from lib.observability import metrics
    from lib.queues import SMS_OUTBOX_QUEUE, MalformedMessage, read_ids

    try:
        ids = read_ids(msg.get_body(), "id")
    except MalformedMessage as exc:
        metrics.queue_malformed(SMS_OUTBOX_QUEUE)
        log.error("sms-outbox message %s is malformed (%s); left to the poison queue", msg.id, exc)
        raise
    item_id = ids["id"]
    outcome = services().dispatcher.send_one(item_id)
    sms_outcome(item_id, outcome)
    log.info("sms-outbox message=%s outcome=%s", msg.id, outcome)


@bp.function_name("reminders_due")
@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False, use_monitor=True)
@observed("reminders_due")
def reminders_due(timer: func.TimerRequest) -> None:
    """Every minute: send the texts now due, then purge phone numbers and rejected HL7 messages of visits
    that are over; every 15 minutes, mark and count sent texts whose delivery report never came."""
    from lib.sms import delivery_watch

    svc = services()
    report = svc.dispatcher.run_due()
    sms_run(report.outcomes)
    if delivery_watch.due_now(svc.clock.now()):
        missing = delivery_watch.mark_missing_reports(svc.repos.outbox, svc.clock.now())
        if missing:
            log.warning("sms delivery reports missing for %d texts (sent over an hour ago)", missing)
    purged = 0
    now = svc.clock.now()
    for key in svc.repos.contacts.expired_keys(now):
        purged += svc.repos.contacts.delete(key)
    for environment_id, message_id in svc.repos.rejected.expired(now):  # raw HL7 of visits now over
        purged += svc.repos.rejected.delete(environment_id, message_id)
    log.info(
        "reminders_due past_due=%s outcomes=%s queries=%d purged=%d",
        timer.past_due, report.outcomes, report.queries, purged,
    )
