"""The SMS outbox: the ``text`` documents of each visit's partition (container ``visits``, partition key
``/appointmentKey``, see :mod:`lib.store.visits`).

An item is created before anything is sent (by the intake, in the same transactional batch as its
appointment); its state then moves only through ETag-guarded replaces, so two timers or a redelivered queue
message cannot both send it. The timer finds due items with one indexed query on ``due_utc`` across the
visits (:meth:`OutboxRepository.due`): Cosmos DB answers it from the index of each physical partition, so
its cost follows the items due, not the items stored.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from lib.models import OutboxItem, iso
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import AlreadyExists
from lib.store.schema import VISITS


def appointment_key_of(item_id: str) -> str:
    """The appointment key (the visit's partition) inside an outbox ID ``{appointmentKey}|{kind}|{revision}``."""
    return item_id.rsplit("|", 2)[0]


class OutboxRepository:
    """Create, read, transition and query :class:`OutboxItem` documents."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container(VISITS)

    def create_once(self, item: OutboxItem) -> tuple[OutboxItem, bool]:
        """Create ``item`` unless an item with its ID exists; returns ``(stored item, created?)``."""
        try:
            with translated_errors():
                doc = self._container.create_item(item.to_doc())
            return OutboxItem.from_doc(doc), True
        except AlreadyExists:
            existing = self.get(item.id)
            if existing is None:  # deleted between the two calls: try once more
                return self.create_once(item)
            return existing, False

    def get(self, item_id: str) -> OutboxItem | None:
        """Point-read one item (its partition is in its ID), or ``None`` (also for text that cannot be an
        outbox ID, such as the tag of a delivery report for another kind of text)."""
        if item_id.count("|") < 3 or any(c in item_id for c in "/\\?#"):
            return None
        doc = read_or_none(self._container, item_id, appointment_key_of(item_id))
        return OutboxItem.from_doc(doc) if doc else None

    def transition(self, item: OutboxItem, **changes: object) -> OutboxItem:
        """Replace ``item`` with ``changes`` applied, only if it is unchanged since read.

        Raises:
            ConcurrencyConflict: another worker moved it first.
        """
        updated = dataclasses.replace(item, **changes)  # type: ignore[arg-type]
        with translated_errors():
            doc = self._container.replace_item(item=item.id, body=updated.to_doc(), **if_match(item.etag))
        return OutboxItem.from_doc(doc)

    def due(
        self, now: datetime, *, since: datetime, stale_before: datetime | None = None, limit: int = 200
    ) -> list[OutboxItem]:
        """Pending items due in ``[since, now]``, and (when ``stale_before`` is given) items left in ``sending``
        since before ``stale_before`` (a worker died mid-send), earliest due first. One query across the visits'
        partitions, answered from the index on ``type``, ``state`` and ``due_utc``.
        """
        with translated_errors():
            docs = self._container.query_items(
                "SELECT TOP @limit * FROM c WHERE c.type = 'text' AND "
                "((c.state = 'pending' AND c.due_utc >= @since AND c.due_utc <= @now) OR "
                "(c.state = 'sending' AND c.claimed_utc <= @stale)) ORDER BY c.due_utc",
                parameters=[
                    {"name": "@limit", "value": limit},
                    {"name": "@since", "value": iso(since)},
                    {"name": "@now", "value": iso(now)},
                    # An empty string sorts before every ISO instant: no stale item matches.
                    {"name": "@stale", "value": iso(stale_before) or ""},
                ],
                enable_cross_partition_query=True,
            )
            return [OutboxItem.from_doc(d) for d in docs]

    def for_appointment(self, appointment_key: str) -> list[OutboxItem]:
        """Every item of one appointment (one single-partition query)."""
        with translated_errors():
            docs = self._container.query_items(
                "SELECT * FROM c WHERE c.appointmentKey = @key AND c.type = 'text'",
                parameters=[{"name": "@key", "value": appointment_key}],
                partition_key=appointment_key,
            )
            return [OutboxItem.from_doc(d) for d in docs]

    def awaiting_report(self, *, sent_since: datetime, sent_before: datetime, limit: int = 500) -> list[OutboxItem]:
        """Items ``sent`` in ``[sent_since, sent_before]`` without any delivery status (one indexed query)."""
        with translated_errors():
            docs = self._container.query_items(
                "SELECT TOP @limit * FROM c WHERE c.type = 'text' AND c.state = 'sent' AND "
                "c.sent_utc >= @since AND c.sent_utc <= @before AND IS_NULL(c.delivery_status)",
                parameters=[
                    {"name": "@limit", "value": limit},
                    {"name": "@since", "value": iso(sent_since)},
                    {"name": "@before", "value": iso(sent_before)},
                ],
                enable_cross_partition_query=True,
            )
            return [OutboxItem.from_doc(d) for d in docs]
