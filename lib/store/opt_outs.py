"""SMS opt-outs per (sender, recipient), and the once-a-day HELP marker (container ``opt_outs``, pk ``/id``).

Phone numbers are PHI and live only until the visit is over, but an opt-out must outlive the visit (CTIA;
FCC 24-24: honour a revocation on every later text). So the recipient is never stored: the document ID is a
keyed hash, ``HMAC-SHA256(k, sender "|" recipient)`` with ``k = HMAC-SHA256(LINK_SIGNING_KEY, "sms-opt-out-v1")``.
Whoever holds the key can test a known number; nobody can list the numbers. Rotating ``LINK_SIGNING_KEY``
forgets every opt-out (carriers still block toll-free STOPs; see ``docs/sms.md``).

Event Grid delivers at least once and in no order (``reference/security.md`` §4.4), so a change applies only
when its event time is newer than the stored one; writes are ETag-guarded.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from lib.models import iso, parse_iso
from lib.store.cosmos import CosmosStore, read_many, read_or_none, translated_errors, write_over
from lib.store.errors import AlreadyExists, ConcurrencyConflict

#: HELP markers live two days (one is enough to cover "today" in any zone); Cosmos ``ttl`` in seconds.
HELP_MARKER_TTL = int(timedelta(days=2).total_seconds())


def opt_out_key(link_signing_key: bytes) -> bytes:
    """The HMAC key of opt-out IDs, derived from ``LINK_SIGNING_KEY`` (domain-separated)."""
    return hmac.new(link_signing_key, b"sms-opt-out-v1", hashlib.sha256).digest()


class OptOutRepository:
    """Record and check opt-outs without storing the phone number.

    Args:
        store: the database.
        key: :func:`opt_out_key` of ``LINK_SIGNING_KEY``.
    """

    def __init__(self, store: CosmosStore, key: bytes) -> None:
        self._container = store.container("opt_outs")
        self._key = key

    def pair_hash(self, sender: str, recipient: str) -> str:
        """The keyed hash of (sender, recipient), both E.164 (hex, 64 characters)."""
        return hmac.new(self._key, f"{sender}|{recipient}".encode(), hashlib.sha256).hexdigest()

    def is_opted_out(self, sender: str, recipient: str) -> bool:
        """Whether ``recipient`` opted out of texts from ``sender`` (and did not opt back in since)."""
        doc = read_or_none(self._container, self._id(sender, recipient), self._id(sender, recipient))
        return bool(doc and doc.get("opted_out"))

    def opted_out(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which ``(sender, recipient)`` pairs are opted out now, in one batch read (ReadMany)."""
        ids = {self._id(sender, recipient): (sender, recipient) for sender, recipient in pairs}
        docs = read_many(self._container, [(doc_id, doc_id) for doc_id in ids])
        return {ids[doc["id"]] for doc in docs if doc.get("opted_out") and doc["id"] in ids}

    def record(self, sender: str, recipient: str, *, opted_out: bool, event_time: datetime, keyword: str) -> bool:
        """Store an opt-out (``True``) or opt-in (``False``) unless a newer event is already stored.

        Returns whether this event changed the record. ``keyword`` (``STOP``, ``START``...) is kept for the
        consent record; the message text is not.

        Raises:
            StoreUnavailable: the store is down (the webhook answers 503 and Event Grid retries).
        """
        doc_id = self._id(sender, recipient)
        for _ in range(5):
            doc = read_or_none(self._container, doc_id, doc_id)
            stored = parse_iso(doc.get("event_time")) if doc else None
            if stored is not None and stored >= event_time:
                return False
            body = {"id": doc_id, "opted_out": opted_out, "event_time": iso(event_time), "keyword": keyword}
            try:
                write_over(self._container, doc, body)
                return True
            except (AlreadyExists, ConcurrencyConflict):
                continue  # another delivery of an event for the same pair: decide again
        return False

    def claim_help_reply(self, sender: str, recipient: str, day: str) -> bool:
        """``True`` once per (sender, recipient, ``day``): the caller may answer this HELP. Created before
        sending, so a redelivered event never gets a second answer (at most one HELP reply a day)."""
        doc_id = f"help|{self.pair_hash(sender, recipient)}|{day}"
        try:
            with translated_errors():
                self._container.create_item({"id": doc_id, "ttl": HELP_MARKER_TTL})
            return True
        except AlreadyExists:
            return False

    def _id(self, sender: str, recipient: str) -> str:
        return f"optout|{self.pair_hash(sender, recipient)}"
