"""Graph subscriptions to a visit's meeting call events (container ``graph_subscriptions``, partition ``/id``).

One document per visit (ID :func:`subscription_doc_id`), created when its meeting is created. ``state``:
``pending`` (to create), ``active`` (Graph accepted it), ``ended`` (the visit is over: deleted at Graph, or never
created), ``not_allowed``
(Graph refused it as not permitted: the visit's attendance is read after the meeting instead), ``not_used``
(the environment's ``presence_source`` is ``attendance_report``). ``source`` is that setting when the document
was made (``auto``, ``notifications``, ``attendance_report``). ``secret`` is the
random half of the ``clientState`` we gave Graph (``{doc id}.{secret}``): a notification names its document
through the first half and proves itself with the second. ``claimed_utc`` is when a run started creating the
Graph subscription (two runs never create two: :meth:`lib.presence.subscriptions.PresenceSubscriptions`);
``certificate_id`` the encryption certificate Graph encrypts its notifications for (a renewal after a
certificate rotation subscribes again with the new one).
Every document carries a ``ttl``: Cosmos DB deletes it :data:`KEEP_AFTER_VISIT` after its visit is over, whatever
state it is left in.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lib.clock import Clock, SystemClock
from lib.models import cosmos_ttl, iso, parse_iso
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import AlreadyExists

#: How long a document is kept after its visit is over (``end_after_utc``), for ``./dev ops visit timeline``.
KEEP_AFTER_VISIT = timedelta(days=30)
#: Without a known end (never the case for documents the app writes): kept this long from each write.
KEEP_WITHOUT_END = timedelta(days=60)


def subscription_doc_id(appointment_key: str) -> str:
    """The document ID of a visit's call-events subscription: ``mce-`` + 32 hex digits of SHA-256."""
    return "mce-" + hashlib.sha256(appointment_key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class GraphSubscription:
    """One visit's subscription: Graph's ``graph_id`` once created, ``expires_utc`` as Graph granted it,
    ``end_after_utc`` when it is deleted (the visit is over), ``missed_utc`` the last ``missed`` lifecycle
    notification (the roster may have gaps that the call record settles)."""

    id: str
    appointment_key: str
    resource: str
    secret: str
    state: str = "pending"
    graph_id: str | None = None
    expires_utc: datetime | None = None
    end_after_utc: datetime | None = None
    missed_utc: datetime | None = None
    last_error: str | None = None
    source: str = "auto"
    claimed_utc: datetime | None = None
    certificate_id: str | None = None
    etag: str | None = None

    def to_doc(self, now: datetime) -> dict[str, Any]:
        """The Cosmos document, with the ``ttl`` that deletes it :data:`KEEP_AFTER_VISIT` after the visit."""
        keep = (self.end_after_utc + KEEP_AFTER_VISIT - now) if self.end_after_utc else KEEP_WITHOUT_END
        return {"id": self.id, "appointmentKey": self.appointment_key, "resource": self.resource,
                "secret": self.secret, "state": self.state, "graph_id": self.graph_id,
                "expires_utc": iso(self.expires_utc), "end_after_utc": iso(self.end_after_utc),
                "missed_utc": iso(self.missed_utc), "last_error": self.last_error, "source": self.source,
                "claimed_utc": iso(self.claimed_utc), "certificate_id": self.certificate_id,
                "ttl": cosmos_ttl(keep.total_seconds(), minimum=3600)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> GraphSubscription:
        """Build from a stored document, keeping its ``_etag``."""
        return cls(id=doc["id"], appointment_key=doc["appointmentKey"], resource=doc["resource"],
                   secret=doc["secret"], state=doc.get("state", "pending"), graph_id=doc.get("graph_id"),
                   expires_utc=parse_iso(doc.get("expires_utc")), end_after_utc=parse_iso(doc.get("end_after_utc")),
                   missed_utc=parse_iso(doc.get("missed_utc")), last_error=doc.get("last_error"),
                   source=doc.get("source") or "auto", claimed_utc=parse_iso(doc.get("claimed_utc")),
                   certificate_id=doc.get("certificate_id"), etag=doc.get("_etag"))


class GraphSubscriptionRepository:
    """Point reads, create-once and ETag-guarded updates of :class:`GraphSubscription`.

    Args:
        store: the Cosmos store.
        clock: for the documents' ``ttl`` (the system clock: Cosmos DB expires documents in real time).
    """

    def __init__(self, store: CosmosStore, clock: Clock | None = None) -> None:
        self._container = store.container("graph_subscriptions")
        self._clock = clock or SystemClock()

    def get(self, doc_id: str) -> GraphSubscription | None:
        """One subscription document, or ``None``."""
        doc = read_or_none(self._container, doc_id, doc_id)
        return GraphSubscription.from_doc(doc) if doc else None

    def create_once(self, subscription: GraphSubscription) -> tuple[GraphSubscription, bool]:
        """Store it unless its ID exists; ``(stored, created?)``."""
        try:
            with translated_errors():
                doc = self._container.create_item(subscription.to_doc(self._clock.now()))
            return GraphSubscription.from_doc(doc), True
        except AlreadyExists:
            existing = self.get(subscription.id)
            assert existing is not None
            return existing, False

    def update(self, subscription: GraphSubscription, **changes: Any) -> GraphSubscription:
        """ETag-guarded update.

        Raises:
            ConcurrencyConflict: it changed since it was read.
        """
        updated = dataclasses.replace(subscription, **changes)
        with translated_errors():
            doc = self._container.replace_item(item=subscription.id, body=updated.to_doc(self._clock.now()),
                                               **if_match(subscription.etag))
        return GraphSubscription.from_doc(doc)

    def due(self, now: datetime, renew_before: datetime) -> list[GraphSubscription]:
        """Subscriptions needing work: ``pending`` ones, ``active`` ones expiring before ``renew_before`` or
        whose visit is over (``end_after_utc`` before ``now``). A cross-partition query over live visits only."""
        with translated_errors():
            docs = self._container.query_items(
                "SELECT * FROM c WHERE c.state = 'pending' OR (c.state = 'active' AND "
                "(c.expires_utc < @renew OR c.end_after_utc < @now))",
                parameters=[{"name": "@renew", "value": iso(renew_before)}, {"name": "@now", "value": iso(now)}],
                enable_cross_partition_query=True,
            )
            return [GraphSubscription.from_doc(d) for d in docs]
