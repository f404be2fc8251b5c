"""SMS opt-outs per (sender, recipient), their history, numbers texts no longer reach, the per-number cap,
and the once-a-day HELP marker (container ``opt_outs``, pk ``/id``).

Phone numbers are PHI and live only until the visit is over, but an opt-out must outlive the visit (CTIA;
FCC 24-24: honour a revocation on every later text). So the recipient is never stored: the document ID is a
keyed hash, ``HMAC-SHA256(k, sender "|" recipient)`` with ``k = HMAC-SHA256(LINK_SIGNING_KEY, "sms-opt-out-v1")``.
Whoever holds the key can test a known number; nobody can list the numbers. Rotating ``LINK_SIGNING_KEY``
forgets every opt-out (carriers still block toll-free STOPs; see ``docs/sms.md``).

Event Grid delivers at least once and in no order (``security.md`` §4.4), so a change applies only
when its event time is newer than the stored one; writes are ETag-guarded. Every opt-out and opt-in is also
appended to the document's ``history`` (event time, opted out or in, keyword; never the number or the text),
so the consent record is kept, not overwritten (ACS messaging policy: keep consent records).

Documents per (sender, keyed hash of the recipient):
- ``optout|<hash>``: ``opted_out``, ``event_time``, ``keyword``, ``history``;
- ``undeliverable|<hash>``: a "Failed" delivery report or an ACS refusal for this recipient: no more texts
  until the number opts in again (START) or an operator deletes it;
- ``cap|<environment>|<hash>``: outbox item -> send time in the rolling window (the per-number cap).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from lib.models import iso, parse_iso
from lib.store.cosmos import (
    CosmosStore,
    delete_if_exists,
    read_many,
    read_or_none,
    translated_errors,
    write_over,
)
from lib.store.errors import AlreadyExists, ConcurrencyConflict

#: HELP markers live two days (one is enough to cover "today" in any zone); Cosmos ``ttl`` in seconds.
HELP_MARKER_TTL = int(timedelta(days=2).total_seconds())
#: Most consent events kept per pair (a number that toggles STOP/START for years stays bounded).
HISTORY_LIMIT = 500


_OPTED_OUT = "the recipient opted out (STOP) of texts from this number"


def _undeliverable(doc: dict[str, object]) -> str:
    return f"an earlier text to this number was not delivered ({doc.get('reason')}): no more texts"


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

    def stop_reasons(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """:meth:`stop_reason` of many pairs in one batch read (ReadMany of their opt-out and undeliverable
        documents); pairs that may be texted are absent."""
        ids: dict[str, tuple[str, tuple[str, str]]] = {}
        for pair in pairs:
            ids[self._id(*pair)] = ("optout", pair)
            ids[self._id(*pair, "undeliverable")] = ("undeliverable", pair)
        reasons: dict[tuple[str, str], str] = {}
        for doc in read_many(self._container, [(doc_id, doc_id) for doc_id in ids]):
            kind, pair = ids.get(doc["id"], ("", ("", "")))
            if kind == "optout" and doc.get("opted_out"):
                reasons[pair] = _OPTED_OUT
            elif kind == "undeliverable":
                reasons.setdefault(pair, _undeliverable(doc))
        return reasons

    def record(self, sender: str, recipient: str, *, opted_out: bool, event_time: datetime, keyword: str) -> bool:
        """Store an opt-out (``True``) or opt-in (``False``) unless a newer event is already stored; either
        way the event joins the pair's ``history`` (once, however often Event Grid delivers it). An opt-in
        also lifts an "undeliverable" mark (the number answered, so it takes texts).

        Returns whether this event changed the current state. ``keyword`` (``STOP``, ``START``,
        ``FREETEXT``, ``ACS-BLOCKED``...) is kept for the consent record; the message text is not.

        Raises:
            StoreUnavailable: the store is down (the webhook answers 503 and Event Grid retries).
        """
        doc_id = self._id(sender, recipient)
        entry = {"event_time": iso(event_time), "opted_out": opted_out, "keyword": keyword}
        for _ in range(5):
            doc = read_or_none(self._container, doc_id, doc_id)
            history = list(doc.get("history") or []) if doc else []
            stored = parse_iso(doc.get("event_time")) if doc else None
            newer = stored is None or event_time > stored
            if entry in history and not newer:
                return False
            if entry not in history:
                history = sorted([*history, entry], key=lambda e: e["event_time"])[-HISTORY_LIMIT:]
            current = {"opted_out": opted_out, "event_time": iso(event_time), "keyword": keyword} if newer else {
                k: doc[k] for k in ("opted_out", "event_time", "keyword")} if doc else {}
            try:
                write_over(self._container, doc, {"id": doc_id, **current, "history": history})
                break
            except (AlreadyExists, ConcurrencyConflict):
                continue  # another delivery of an event for the same pair: decide again
        else:
            return False
        if newer and not opted_out:
            delete_if_exists(self._container, self._id(sender, recipient, "undeliverable"),
                             self._id(sender, recipient, "undeliverable"))
        return newer

    def history(self, sender: str, recipient: str) -> list[dict[str, object]]:
        """The pair's consent events, oldest first (``event_time``, ``opted_out``, ``keyword``)."""
        doc_id = self._id(sender, recipient)
        doc = read_or_none(self._container, doc_id, doc_id)
        return list(doc.get("history") or []) if doc else []

    def mark_undeliverable(self, sender: str, recipient: str, *, event_time: datetime, reason: str) -> None:
        """Stop texts from ``sender`` to ``recipient``: a delivery report said "Failed" or ACS refused the
        number (``reason``, no number in it). Repeating it is harmless."""
        doc_id = self._id(sender, recipient, "undeliverable")
        with translated_errors():
            self._container.upsert_item({"id": doc_id, "event_time": iso(event_time), "reason": reason[:200]})

    def stop_reason(self, sender: str, recipient: str) -> str | None:
        """Why ``sender`` must not text ``recipient`` (opted out, or texts no longer reach it), or ``None``."""
        if self.is_opted_out(sender, recipient):
            return _OPTED_OUT
        doc_id = self._id(sender, recipient, "undeliverable")
        doc = read_or_none(self._container, doc_id, doc_id)
        return _undeliverable(doc) if doc else None

    def take_cap_slot(
        self, environment_id: str, item_id: str, sender: str, recipient: str, *, now: datetime, limit: int,
        window: timedelta, always: bool = False,
    ) -> bool:
        """``True`` when fewer than ``limit`` other texts of ``environment_id`` went from ``sender`` to
        ``recipient`` in the ``window`` before ``now`` (and counts outbox item ``item_id``), else ``False``.
        ``always``: count ``item_id`` and answer ``True`` even over the limit (a text the cap must not drop
        still uses up the budget of the reminders after it).

        Counted per outbox item, so a retry of the same text takes no second slot; ETag-guarded, so two
        workers cannot both take the last slot.

        Raises:
            StoreUnavailable: the store is down.
        """
        doc_id = f"cap|{environment_id}|{self.pair_hash(sender, recipient)}"
        since = iso(now - window) or ""
        for _ in range(8):
            doc = read_or_none(self._container, doc_id, doc_id)
            sent = {k: v for k, v in (doc.get("sent") or {} if doc else {}).items() if v > since}
            if item_id in sent:
                return True
            if len(sent) >= limit and not always:
                return False
            body = {"id": doc_id, "sent": {**sent, item_id: iso(now)}, "ttl": int(window.total_seconds()) + 3600}
            try:
                write_over(self._container, doc, body)
                return True
            except (AlreadyExists, ConcurrencyConflict):
                continue
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

    def _id(self, sender: str, recipient: str, kind: str = "optout") -> str:
        return f"{kind}|{self.pair_hash(sender, recipient)}"
