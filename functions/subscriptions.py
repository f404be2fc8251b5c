"""Graph upkeep timers (every 5 minutes): ``presence_subscriptions`` creates pending subscriptions to meeting
call events, renews those expiring within a day, deletes those of visits that are over (docs/presence.md);
``meeting_times`` moves meetings whose visit was rescheduled (S13/S14, or a new time from FHIR)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("presence_subscriptions")
@bp.timer_trigger(arg_name="timer", schedule="30 */5 * * * *", run_on_startup=False, use_monitor=True)
@observed("presence_subscriptions")
def presence_subscriptions(timer: func.TimerRequest) -> None:
    """One pass over the subscriptions needing work. A store outage is logged; the next run tries again."""
    try:
        counts = services().presence_subscriptions.run_due()
    except Exception as exc:
        log.error("presence subscriptions run failed type=%s", type(exc).__name__)
        return
    log.info("presence subscriptions created=%s renewed=%s ended=%s failed=%s", counts["created"],
             counts["renewed"], counts["ended"], counts["failed"])


@bp.function_name("meeting_times")
@bp.timer_trigger(arg_name="timer", schedule="45 */5 * * * *", run_on_startup=False, use_monitor=True)
@observed("meeting_times")
def meeting_times(timer: func.TimerRequest) -> None:
    """PATCH the meetings of rescheduled visits. A store outage is logged; the next run tries again."""
    try:
        counts = services().meeting_times.run()
    except Exception as exc:
        log.error("meeting times run failed type=%s", type(exc).__name__)
        return
    log.info("meeting times updated=%s failed=%s", counts["updated"], counts["failed"])
