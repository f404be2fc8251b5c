"""Queue trigger ``launch-followup``: what a launch left until after its redirect, the clinician's click record
and the subscription to a new meeting's call events (lib/visits/launch_followup.py, docs/launch.md)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("launch_followup")
@bp.queue_trigger(arg_name="msg", queue_name="launch-followup", connection="AzureWebJobsStorage")
@observed("launch_followup")
def launch_followup(msg: func.QueueMessage) -> None:
    """Store the click once and subscribe once. A malformed message or a store outage raises: the host
    redelivers, and after ``maxDequeueCount`` (5) attempts moves it to ``launch-followup-poison``."""
    from lib.observability import metrics
    from lib.queues import LAUNCH_FOLLOWUP_QUEUE, MalformedMessage
    from lib.visits.launch_followup import FollowUp

    try:
        followup = FollowUp.from_message(msg.get_body())
    except MalformedMessage as exc:
        metrics.queue_malformed(LAUNCH_FOLLOWUP_QUEUE)
        log.error("launch-followup message %s is malformed (%s); left to the poison queue", msg.id, exc)
        raise
    outcome = services().launch_followup.handle(followup)
    log.info("launch-followup message=%s outcome=%s correlation=%s", msg.id, outcome, followup.correlation_id)
