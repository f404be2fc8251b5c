"""A per-sender-number rate limit shared by every instance (container ``timer_state``, one document per sender).

ACS accepts 200 texts a minute per toll-free number and 6,000 per short code, answering 429 above that
(ACS ``sms-faq.md`` "throughput"). A token bucket shared across instances needs a shared counter; this is
the simplest correct one: a fixed one-minute window per sender, ``{"id": "sms-rate|<sender>", "minute":
"YYYY-MM-DDTHH:MM", "count": n}``, incremented with an ETag-guarded replace (HTTP 412 -> read again). A
window that has passed is reset by the first writer of the next minute, so one document per sender exists,
not one per minute. The sender is our own number, not patient data.

A fixed window can let through up to twice the rate across a minute boundary (end of one minute, start of
the next); set ``rate_per_minute`` to half the ACS limit if that matters. ACS's 429 still backs us off.
"""

from __future__ import annotations

from datetime import datetime

from lib.store.cosmos import CosmosStore, read_or_none, write_over
from lib.store.errors import AlreadyExists, ConcurrencyConflict


class SenderRateLimiter:
    """Take one send from a sender's per-minute budget."""

    def __init__(self, store: CosmosStore, *, attempts: int = 8) -> None:
        self._container = store.container("timer_state")
        self._attempts = attempts

    def take(self, sender: str, *, now: datetime, per_minute: int) -> bool:
        """``True`` when a send from ``sender`` fits this minute's budget (and counts it), else ``False``.

        Lost ETag races are retried ``attempts`` times; when every attempt loses, the answer is ``False``
        (the text stays pending and goes next minute: never over the limit).

        Raises:
            StoreUnavailable: the store is down.
        """
        return self.take_many(sender, now=now, per_minute=per_minute, count=1) == 1

    def take_many(self, sender: str, *, now: datetime, per_minute: int, count: int) -> int:
        """Take up to ``count`` sends from this minute's budget in one read and one write; returns how many
        were granted (``0`` .. ``count``). A timer run reserves a whole page's sends at once; a reserved send
        that is then not made (the ACS call failed) is lost to this minute only, never over the limit.

        Raises:
            StoreUnavailable: the store is down.
        """
        if count <= 0:
            return 0
        doc_id = f"sms-rate|{sender}"
        minute = now.strftime("%Y-%m-%dT%H:%M")
        for _ in range(self._attempts):
            doc = read_or_none(self._container, doc_id, doc_id)
            used = doc["count"] if doc and doc.get("minute") == minute else 0
            granted = max(0, min(count, per_minute - used))
            if granted == 0:
                return 0
            body = {"id": doc_id, "minute": minute, "count": used + granted}
            try:
                write_over(self._container, doc, body)
                return granted
            except (AlreadyExists, ConcurrencyConflict):
                continue
        return 0
