"""Texts whose delivery report never came.

ACS reports every text it was asked to report on (``enableDeliveryReport``) through Event Grid; a text
``sent`` more than :data:`REPORT_EXPECTED_WITHIN` ago without any report is marked ``delivery_status =
"missing"`` (once) and counted (``vv.sms.delivery`` status ``missing``, the "SMS not delivered" alert). A
report that comes later still replaces it (it is newer than nothing). Runs every
:data:`SWEEP_EVERY_MINUTES` minutes from the reminder timer: one indexed query for the texts sent within
the last :data:`LOOKBACK`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from lib.observability import metrics
from lib.store.errors import ConcurrencyConflict
from lib.store.outbox import OutboxRepository

REPORT_EXPECTED_WITHIN = timedelta(hours=1)
LOOKBACK = timedelta(hours=24)
SWEEP_EVERY_MINUTES = 15


def due_now(now: datetime) -> bool:
    """Whether the timer run at ``now`` sweeps (every :data:`SWEEP_EVERY_MINUTES` minutes)."""
    return now.minute % SWEEP_EVERY_MINUTES == 0


def mark_missing_reports(outbox: OutboxRepository, now: datetime) -> int:
    """Mark and count the texts sent before ``now - REPORT_EXPECTED_WITHIN`` (within :data:`LOOKBACK`) that
    have no delivery report; returns how many were marked.

    Raises:
        StoreUnavailable: the store is down (the next sweep catches up).
    """
    cutoff = now - REPORT_EXPECTED_WITHIN
    marked = 0
    for item in outbox.awaiting_report(sent_since=cutoff - LOOKBACK, sent_before=cutoff):
        try:
            outbox.transition(item, delivery_status="missing",
                              delivery_detail="no delivery report within an hour of sending")
        except ConcurrencyConflict:
            continue  # a report (or another sweep) got there first
        marked += 1
    metrics.sms_delivery("missing", count=marked)
    return marked
