"""Short-lived portal records (container ``portal_operations``, partition ``/id``, per-item ``ttl``): the
approver's pending Epic sign-in, the proof of a finished sign-in, and phone-number purchases in progress.

Each document has ``type`` and ``expires`` (ISO UTC); a record read after ``expires`` counts as absent (the local
Cosmos-compatible server does not enforce TTL). Consuming deletes with ``If-Match``, so one caller wins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from azure.cosmos import exceptions as cosmos_errors

from lib.models import iso
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import ConcurrencyConflict


class OperationStore:
    """Create, read, replace and consume portal records."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("portal_operations")

    def create(self, doc_id: str, kind: str, body: dict[str, Any], *, now: datetime, ttl_seconds: int) -> None:
        """Store a new record ``{"id", "type", "expires", "ttl", **body}``."""
        from datetime import timedelta

        doc = {**body, "id": doc_id, "type": kind, "created": iso(now),
               "expires": iso(now + timedelta(seconds=ttl_seconds)), "ttl": ttl_seconds}
        with translated_errors():
            self._container.create_item(doc)

    def get(self, doc_id: str, kind: str, *, now: datetime) -> dict[str, Any] | None:
        """The record, or ``None`` when unknown, of another type, or expired."""
        if not doc_id or len(doc_id) > 128:
            return None
        doc = read_or_none(self._container, doc_id, doc_id)
        if not doc or doc.get("type") != kind or datetime.fromisoformat(doc["expires"]) <= now:
            return None
        return doc

    def replace(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Write ``doc`` over its stored version if unchanged since read; returns the new version.

        Raises:
            ConcurrencyConflict: someone else changed it first.
        """
        with translated_errors():
            return self._container.replace_item(item=doc["id"], body={k: v for k, v in doc.items()
                                                                      if not k.startswith("_")},
                                                **if_match(doc.get("_etag")))

    def consume(self, doc: dict[str, Any]) -> bool:
        """Delete ``doc`` if unchanged since read; ``True`` for the one caller that deleted it."""
        try:
            with translated_errors():
                self._container.delete_item(item=doc["id"], partition_key=doc["id"], **if_match(doc.get("_etag")))
            return True
        except (cosmos_errors.CosmosResourceNotFoundError, ConcurrencyConflict):
            return False

    def of_type(self, kind: str, *, now: datetime) -> list[dict[str, Any]]:
        """Every unexpired record of ``kind`` (a handful: purchases in progress)."""
        with translated_errors():
            docs = list(self._container.query_items("SELECT * FROM c WHERE c.type = @t",
                                                    parameters=[{"name": "@t", "value": kind}],
                                                    enable_cross_partition_query=True))
        return [d for d in docs if datetime.fromisoformat(d["expires"]) > now]
