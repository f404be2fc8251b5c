"""ACS message ID -> outbox item (container ``sms_messages``, pk ``/id`` = the ACS ``messageId``).

Delivery reports (Event Grid ``Microsoft.Communication.SMSDeliveryReportReceived``) name the message by its
ACS ``messageId`` only; the outbox is partitioned by due hour, so this small lookup turns a report into a
point read. Documents hold no phone number and expire (``ttl``) after Event Grid's retry window.
"""

from __future__ import annotations

from datetime import timedelta

from lib.store.cosmos import CosmosStore, read_or_none, translated_errors

#: Event Grid retries a delivery for up to 24 hours (``eventTimeToLiveInMinutes`` 1440); ACS may report
#: a few days late. Cosmos ``ttl`` in seconds.
MESSAGE_TTL = int(timedelta(days=7).total_seconds())


class SmsMessageRepository:
    """Remember and look up which outbox item an ACS message ID belongs to."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("sms_messages")

    def put(self, message_id: str, outbox_id: str, bucket: str) -> None:
        """Record ``message_id`` -> (``outbox_id``, ``bucket``); repeating it is harmless."""
        with translated_errors():
            self._container.upsert_item({"id": message_id, "outboxId": outbox_id, "bucket": bucket, "ttl": MESSAGE_TTL})

    def get(self, message_id: str) -> tuple[str, str] | None:
        """``(outbox_id, bucket)`` of ``message_id``, or ``None``."""
        doc = read_or_none(self._container, message_id, message_id)
        return (doc["outboxId"], doc["bucket"]) if doc else None
