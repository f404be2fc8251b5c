"""ACS message ID -> outbox item (container ``sms_messages``, pk ``/id`` = the ACS ``messageId``).

Delivery reports (Event Grid ``Microsoft.Communication.SMSDeliveryReportReceived``) name the message by its
ACS ``messageId`` only; this small lookup gives the outbox ID, whose visit partition is part of it, so a
report costs two point reads. Documents hold no phone number and expire (``ttl``) after Event Grid's retry window.
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

    def put(self, message_id: str, outbox_id: str) -> None:
        """Record ``message_id`` -> ``outbox_id``; repeating it is harmless."""
        with translated_errors():
            self._container.upsert_item({"id": message_id, "outboxId": outbox_id, "ttl": MESSAGE_TTL})

    def get(self, message_id: str) -> str | None:
        """The outbox ID of ``message_id``, or ``None``."""
        doc = read_or_none(self._container, message_id, message_id)
        return doc["outboxId"] if doc else None
