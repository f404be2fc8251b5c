"""Texts that need an operator: list them, and resolve the ones whose outcome is unknown.

A text ends ``unknown`` when ACS may have sent it and can no longer tell us (no answer or a 5xx, and ACS's
5-minute repeatable-request window passed before a repeat could ask again; or the worker died mid-send).
It is never resent by itself: a patient must not get it twice. A delivery report for its tag reconciles it
to ``sent``; otherwise an operator checks (ACS message logs in Azure Monitor, or the patient) and resolves it:

- ``sent``: ACS did send it; recorded as ``sent`` with the operator's word for it;
- ``resend``: it was not sent; back to ``pending``, due now, with a new repeatable request, so the
  dispatcher sends it once (after its usual checks: the visit still booked and not started, the number not
  opted out).

Texts ``skipped`` by the per-number cap are listed too (``--capped``): reminders the cap held back, with the
visit they belonged to. Nothing here shows a phone number (only its last two digits, as the texts report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.models import OutboxItem

#: The reason the dispatcher gives a text skipped by the per-number cap ends with this.
CAP_MARKER = "(per-number cap)"


@dataclass(frozen=True)
class TextForReview:
    """One text an operator should look at (``item``: the whole outbox item)."""

    item: OutboxItem

    def to_json(self) -> dict[str, Any]:
        """JSON shape for ``local.ops``: IDs, state, reason, attempts and times; never the number or the text."""
        item = self.item
        return {k: v for k, v in {
            "textId": item.id, "environmentId": item.environment_id,
            "appointmentId": item.appointment_key.split("|", 1)[-1], "kind": item.kind, "revision": item.revision,
            "state": item.state, "reason": item.reason, "attempts": item.attempts,
            "dueUtc": item.due_utc.isoformat(),
            "claimedUtc": item.claimed_utc.isoformat() if item.claimed_utc else None,
            "repeatabilityRequestId": item.repeat_id, "deliveryStatus": item.delivery_status,
            "recipientLast2": item.recipient_last2,
        }.items() if v is not None}


def list_for_review(services: Any, environment_id: str | None = None, *, capped: bool = False,
                    limit: int = 500) -> list[TextForReview]:
    """Texts in ``unknown`` (and, with ``capped``, texts skipped by the per-number cap), oldest due first."""
    from lib.store.cosmos import translated_errors

    query = "SELECT TOP @limit * FROM c WHERE c.type = 'text' AND (c.state = 'unknown' OR c.state = @other)"
    # Without --capped, @other is 'unknown' again: one query text, no string building.
    parameters: list[dict[str, Any]] = [{"name": "@limit", "value": limit},
                                        {"name": "@other", "value": "skipped" if capped else "unknown"}]
    if environment_id:
        query += " AND c.environmentId = @env"
        parameters.append({"name": "@env", "value": environment_id})
    with translated_errors():
        docs = services.store.container("visits").query_items(query + " ORDER BY c.due_utc", parameters=parameters,
                                                              enable_cross_partition_query=True)
        items = [OutboxItem.from_doc(d) for d in docs]
    return [TextForReview(i) for i in items if i.state == "unknown" or (i.reason or "").endswith(CAP_MARKER)]


def resolve(services: Any, text_id: str, outcome: str) -> str:
    """Resolve one ``unknown`` text as ``sent`` or ``resend`` (see the module docstring). Returns ``sent``,
    ``requeued``, ``not-unknown:<state>`` (nothing changed: only ``unknown`` texts are resolved) or
    ``missing``.

    Raises:
        ValueError: ``outcome`` is neither ``sent`` nor ``resend``.
        lib.store.errors.StoreUnavailable: the store cannot be reached.
        lib.store.errors.ConcurrencyConflict: the text kept changing (run it again).
    """
    from lib.store.errors import ConcurrencyConflict

    if outcome not in ("sent", "resend"):
        raise ValueError("resolve a text as 'sent' or 'resend'")
    outbox = services.repos.outbox
    for _ in range(3):
        item = outbox.get(text_id)
        if item is None:
            return "missing"
        if item.state != "unknown":
            return f"not-unknown:{item.state}"
        try:
            if outcome == "sent":
                outbox.transition(item, state="sent", reason="confirmed sent by an operator",
                                  sent_utc=item.claimed_utc or services.clock.now())
                return "sent"
            # A new repeatable request (the old one is outside ACS's window): repeat_id cleared, not maybe-accepted.
            outbox.transition(item, state="pending", due_utc=services.clock.now(), claimed_utc=None,
                              maybe_accepted=False, repeat_id=None, repeat_first_sent=None,
                              reason="resend requested by an operator after review")
        except ConcurrencyConflict:
            continue
        _enqueue(services, item.id)
        return "requeued"
    raise ConcurrencyConflict("text kept changing")


def _enqueue(services: Any, item_id: str) -> None:
    """Queue the text now; if that fails the reminder timer sends it (it is pending and due)."""
    from lib.queues import SMS_OUTBOX_QUEUE

    try:
        services.queues.send(SMS_OUTBOX_QUEUE, {"id": item_id})
    except Exception:  # the every-minute timer finds it due
        return
