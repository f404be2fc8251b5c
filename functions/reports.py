"""Reports (issue 14): the ``report-updates`` queue trigger that keeps the report documents current.

The report page, its JSON API and the CSV exports are served here too once the portal's sign-in and roles are
in place (``docs/reports.md``).
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("report_update")
@bp.queue_trigger(arg_name="msg", queue_name="report-updates", connection="AzureWebJobsStorage")
@observed("report_update")
def report_update(msg: func.QueueMessage) -> None:
    """Apply one report update (idempotent: a redelivery changes nothing twice).

    A malformed message raises, like a store outage: the host retries it and then moves it to
    ``report-updates-poison``, where it stays visible instead of being dropped with a log line.
    """
    from lib.queues import decode
    from lib.reports.inputs import InvalidReportInput, ReportUpdate

    try:
        update = ReportUpdate.from_message(decode(msg.get_body()))
    except (ValueError, UnicodeDecodeError, InvalidReportInput) as exc:
        from lib.observability import metrics

        metrics.queue_malformed("report-updates")  # the malformed-queue-messages alert
        log.error("report-updates message %s is malformed (%s)", msg.id, type(exc).__name__)
        raise InvalidReportInput("malformed report-updates message") from exc
    outcome = services().report_recorder.apply(update)
    log.info("report-updates message=%s type=%s outcome=%s", msg.id, update.type, outcome)
