"""The SMS outbox (container ``outbox``, partition key ``/bucket`` = due hour in UTC).

An item is created before anything is sent; its state then moves only through ETag-guarded replaces, so
two timers or a redelivered queue message cannot both send it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from lib.models import OutboxItem, iso
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import AlreadyExists


class OutboxRepository:
    """Create, read, transition and query :class:`OutboxItem` documents."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("outbox")

    def create_once(self, item: OutboxItem) -> tuple[OutboxItem, bool]:
        """Create ``item`` unless an item with its ID exists; returns ``(stored item, created?)``."""
        try:
            with translated_errors():
                doc = self._container.create_item(item.to_doc())
            return OutboxItem.from_doc(doc), True
        except AlreadyExists:
            existing = self.get(item.id, item.bucket)
            if existing is None:  # deleted between the two calls: try once more
                return self.create_once(item)
            return existing, False

    def get(self, item_id: str, bucket: str) -> OutboxItem | None:
        """Point-read one item, or ``None``."""
        doc = read_or_none(self._container, item_id, bucket)
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
        self, bucket: str, now: datetime, *, stale_before: datetime | None = None, limit: int = 200
    ) -> list[OutboxItem]:
        """Pending items of one bucket due at or before ``now``, and (when ``stale_before`` is given) items
        left in ``sending`` since before ``stale_before`` (a worker died mid-send). One single-partition query.
        """
        with translated_errors():
            docs = self._container.query_items(
                "SELECT TOP @limit * FROM c WHERE c.bucket = @bucket AND "
                "((c.state = 'pending' AND c.due_utc <= @now) OR (c.state = 'sending' AND c.claimed_utc <= @stale)) "
                "ORDER BY c.due_utc",
                parameters=[
                    {"name": "@limit", "value": limit},
                    {"name": "@bucket", "value": bucket},
                    {"name": "@now", "value": iso(now)},
                    # An empty string sorts before every ISO instant: no stale item matches.
                    {"name": "@stale", "value": iso(stale_before) or ""},
                ],
                partition_key=bucket,
            )
            return [OutboxItem.from_doc(d) for d in docs]

    def count_pending(self, bucket: str) -> int:
        """How many items of ``bucket`` are still pending or sending (whatever their due time)."""
        with translated_errors():
            rows = list(
                self._container.query_items(
                    "SELECT VALUE COUNT(1) FROM c WHERE c.bucket = @bucket AND "
                    "(c.state = 'pending' OR c.state = 'sending')",
                    parameters=[{"name": "@bucket", "value": bucket}],
                    partition_key=bucket,
                )
            )
        return int(rows[0]) if rows else 0

    def find(self, item_id: str) -> OutboxItem | None:
        """One item by ID when its bucket is not known (cross-partition; only for delivery reports of sends
        whose outcome was unknown, so no message ID was recorded)."""
        with translated_errors():
            docs = list(
                self._container.query_items(
                    "SELECT * FROM c WHERE c.id = @id",
                    parameters=[{"name": "@id", "value": item_id}],
                    enable_cross_partition_query=True,
                )
            )
        return OutboxItem.from_doc(docs[0]) if docs else None

    def for_appointment(self, appointment_key: str) -> list[OutboxItem]:
        """Every item of one appointment (cross-partition; used by reports and tests, not hot paths)."""
        with translated_errors():
            docs = self._container.query_items(
                "SELECT * FROM c WHERE c.appointmentKey = @key",
                parameters=[{"name": "@key", "value": appointment_key}],
                enable_cross_partition_query=True,
            )
            return [OutboxItem.from_doc(d) for d in docs]

    def awaiting_report(self, bucket: str, *, sent_before: datetime, limit: int = 500) -> list[OutboxItem]:
        """Items of one bucket ``sent`` before ``sent_before`` without any delivery status (single-partition)."""
        with translated_errors():
            docs = self._container.query_items(
                "SELECT TOP @limit * FROM c WHERE c.bucket = @bucket AND c.state = 'sent' AND "
                "c.sent_utc <= @before AND IS_NULL(c.delivery_status)",
                parameters=[
                    {"name": "@limit", "value": limit},
                    {"name": "@bucket", "value": bucket},
                    {"name": "@before", "value": iso(sent_before)},
                ],
                partition_key=bucket,
            )
            return [OutboxItem.from_doc(d) for d in docs]
