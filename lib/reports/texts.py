"""One report row per text (an outbox item), without the number: only its last two digits.

States shown: ``queued`` (pending or being sent), ``sent``, ``delivered``, ``failed`` (a send error or a
delivery report saying ``Failed``; with the reason), ``blocked``, ``opted_out`` (blocked because the recipient
sent STOP), ``skipped`` (not sent, with the reason: superseded, cancelled, quiet hours until the visit...),
``unknown`` (the send's outcome is under review). ``quiet_hours_moved`` says a reminder was moved by quiet
hours, whatever its state now.
"""

from __future__ import annotations

from typing import Any

from lib.models import OutboxItem, iso

STATES = ("queued", "sent", "delivered", "failed", "blocked", "opted_out", "skipped", "unknown")
_QUIET_MARKER = "quiet hours"
_OPT_OUT_MARKERS = ("opted out", "stop", "opt-out", "optout")


def text_state(item: OutboxItem) -> tuple[str, str | None]:
    """``(state, reason)`` of an outbox item as the report shows it."""
    reason = item.reason
    if item.state in ("pending", "sending"):
        return "queued", None
    if item.state == "sent":
        status = (item.delivery_status or "").lower()
        if status == "delivered":
            return "delivered", None
        if status == "failed":
            return "failed", item.delivery_detail or "delivery report: Failed"
        return "sent", None
    if item.state == "blocked":
        if any(m in (reason or "").lower() for m in _OPT_OUT_MARKERS):
            return "opted_out", reason
        return "blocked", reason
    if item.state in ("failed", "skipped", "unknown"):
        return item.state, reason
    return item.state, reason


def text_row(item: OutboxItem) -> dict[str, Any]:
    """The stored report row of one text."""
    state, reason = text_state(item)
    return {
        "id": item.id,
        "appointment_id": item.appointment_key.split("|", 1)[-1],
        "environment_id": item.environment_id,
        "kind": item.kind,
        "revision": item.revision,
        "language": item.language,
        "segments": item.segments,
        "state": state,
        "reason": (reason or "")[:200] or None,
        "quiet_hours_moved": _QUIET_MARKER in (item.reason or "").lower(),
        "due_utc": iso(item.due_utc),
        "sent_utc": iso(item.sent_utc),
        "delivery_utc": iso(item.delivery_event_utc),
        "recipient": f"••{item.recipient_last2}" if item.recipient_last2 else None,
    }


def counts_for_visit(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """``(texts sent, texts delivered)`` of a visit: sent counts everything handed to ACS."""
    sent = sum(1 for r in rows if r["state"] in ("sent", "delivered", "failed") and r.get("sent_utc"))
    delivered = sum(1 for r in rows if r["state"] == "delivered")
    return sent, delivered
