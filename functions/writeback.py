"""Queue triggers of the EHR write-back: ``visit-events`` and its poison queue ``visit-events-poison``."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _ids(msg: func.QueueMessage, queue: str) -> tuple[str, str, str | None]:
    """``(event id, appointment key, correlation id)`` of a ``visit-events`` message.

    Raises:
        MalformedMessage: counted as ``vv.queue.malformed``; the host moves the message on to
            ``<queue>-poison`` (``visit-events-poison-poison`` for the poison trigger, also watched).
    """
    from lib.observability import metrics
    from lib.queues import MalformedMessage, read_ids

    try:
        ids = read_ids(msg.get_body(), "id", "appointmentKey")
    except MalformedMessage as exc:
        metrics.queue_malformed(queue)
        log.error("%s message %s is malformed (%s); left to the poison queue", queue, msg.id, exc)
        raise
    return ids["id"], ids["appointmentKey"], ids.get("correlationId")


@bp.function_name("writeback")
@bp.queue_trigger(arg_name="msg", queue_name="visit-events", connection="AzureWebJobsStorage")
@observed("writeback")
def writeback(msg: func.QueueMessage) -> None:
    """Write one visit event back to the EHR (claim, call, record; docs/writeback.md).

    A transient EHR failure is not raised: the event records its next attempt and this function enqueues the
    message again with that delay as its visibility timeout, so backoff follows Epic's ``Retry-After`` and
    the environment's horizon instead of the host's fixed 5 attempts. A store outage raises: the host
    redelivers, and after ``maxDequeueCount`` (5) attempts moves the message to ``visit-events-poison``.
    """
    from lib.queues import VISIT_EVENTS_QUEUE

    event_id, key, correlation = _ids(msg, "visit-events")
    svc = services()
    outcome = svc.writeback.write(event_id, key, correlation_id=correlation)
    if outcome.retry_in is not None:
        try:
            svc.queues.send(VISIT_EVENTS_QUEUE, {"id": event_id, "appointmentKey": key, "correlationId": correlation},
                            visibility_timeout=outcome.retry_in)
        except Exception:  # the event records when it is due: the sweep enqueues it
            log.warning("visit-events retry not enqueued message=%s correlation=%s", msg.id, correlation)
    log.info("visit-events message=%s dequeue=%s outcome=%s reason=%s correlation=%s", msg.id,
             msg.dequeue_count, outcome.outcome, outcome.reason, correlation)


@bp.function_name("writeback_poison")
@bp.queue_trigger(arg_name="msg", queue_name="visit-events-poison", connection="AzureWebJobsStorage")
@observed("writeback_poison")
def writeback_poison(msg: func.QueueMessage) -> None:
    """Record a message the host gave up on: log its IDs and mark the event ``failed``. Never requeues; raises
    only for a malformed message, which then ends in ``visit-events-poison-poison`` (watched and alerted on
    like every poison queue)."""
    event_id, key, correlation = _ids(msg, "visit-events-poison")
    environment_id = key.split("|", 1)[0]
    try:
        outcome = services().writeback.mark_poisoned(event_id, key, correlation_id=correlation)
    except Exception as exc:
        log.error("visit-events-poison event=%s environment=%s not marked (%s) correlation=%s", event_id,
                  environment_id, type(exc).__name__, correlation)
        return
    log.error("visit-events-poison event=%s environment=%s outcome=%s correlation=%s", event_id, environment_id,
              outcome.outcome, correlation)


@bp.function_name("writeback_sweep")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False, use_monitor=True)
@observed("writeback_sweep")
def writeback_sweep(timer: func.TimerRequest) -> None:
    """Every 5 minutes: re-enqueue visit events whose write-back attempt is overdue (a lost message, a failed
    enqueue, a moved clock) and mark claims of dead workers ``unknown``. A store or queue outage is logged;
    the next run tries again."""
    import uuid

    correlation = uuid.uuid4().hex
    try:
        counts = services().writeback.sweep(services().queues, correlation_id=correlation)
    except Exception as exc:
        log.error("writeback sweep failed type=%s correlation=%s", type(exc).__name__, correlation)
        return
    log.info("writeback sweep requeued=%s abandoned=%s correlation=%s", counts["requeued"], counts["abandoned"],
             correlation)
