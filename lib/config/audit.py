"""The audit trail of the portal (container ``audit``, partition ``/environmentId``): who changed what, when,
with the configuration before and after. Entries never hold a secret (the configuration has none: certificates
are public, keys live in Key Vault) and are never changed or deleted by the app."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.models import iso
from lib.store.cosmos import CosmosStore, read_or_none, translated_errors

#: Keys that could hold a secret in a future field: dropped from before/after whatever their level.
SECRET_WORDS = ("secret", "password", "private_key", "access_key", "accesskey", "token")


@dataclass(frozen=True)
class AuditEntry:
    """One change.

    Attributes:
        id: unique ID.
        environment_id: the environment changed (``-`` for changes that belong to none, e.g. a phone number).
        at: when (UTC).
        actor_id, actor_name: the signed-in user (Entra object ID and sign-in name).
        action: what, e.g. ``environment.create``, ``certificate.add``, ``approval.approve``.
        summary: one sentence for people.
        before, after: the configuration (or the part changed) before and after; ``None`` when created/removed.
    """

    id: str
    environment_id: str
    at: datetime
    actor_id: str
    actor_name: str
    action: str
    summary: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document."""
        return {"id": self.id, "environmentId": self.environment_id, "at": iso(self.at), "actorId": self.actor_id,
                "actorName": self.actor_name, "action": self.action, "summary": self.summary,
                "before": without_secrets(self.before), "after": without_secrets(self.after)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> AuditEntry:
        """Build from a stored document."""
        return cls(id=doc["id"], environment_id=doc["environmentId"], at=datetime.fromisoformat(doc["at"]),
                   actor_id=doc["actorId"], actor_name=doc["actorName"], action=doc["action"],
                   summary=doc.get("summary", ""), before=doc.get("before"), after=doc.get("after"))


def without_secrets(value: Any) -> Any:
    """``value`` with every key that names a secret removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items()
                if not any(word in str(k).lower() for word in SECRET_WORDS)}
    if isinstance(value, list | tuple):
        return [without_secrets(v) for v in value]
    return value


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """Top-level keys whose value differs (for the summary line)."""
    before, after = before or {}, after or {}
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


class AuditLog:
    """Appends and lists :class:`AuditEntry` documents."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("audit")

    def record(self, *, environment_id: str, at: datetime, actor_id: str, actor_name: str, action: str,
               summary: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> AuditEntry:
        """Append one entry and return it."""
        entry = AuditEntry(id=uuid.uuid4().hex, environment_id=environment_id, at=at, actor_id=actor_id,
                           actor_name=actor_name, action=action, summary=summary, before=before, after=after)
        with translated_errors():
            self._container.create_item(entry.to_doc())
        return entry

    def get(self, environment_id: str, entry_id: str) -> AuditEntry | None:
        """One entry of one environment (a point read), or ``None``."""
        if not entry_id or len(entry_id) > 64 or not environment_id:
            return None
        doc = read_or_none(self._container, entry_id, environment_id)
        return AuditEntry.from_doc(doc) if doc else None

    def for_environment(self, environment_id: str, *, limit: int = 100) -> list[AuditEntry]:
        """The newest entries of one environment first (one partition)."""
        with translated_errors():
            docs = list(self._container.query_items(
                "SELECT * FROM c WHERE c.environmentId = @e", parameters=[{"name": "@e", "value": environment_id}],
                partition_key=environment_id))
        entries = sorted((AuditEntry.from_doc(d) for d in docs), key=lambda e: e.at, reverse=True)
        return entries[:limit]

    def recent(self, *, limit: int = 100) -> list[AuditEntry]:
        """The newest entries of every environment first (a small container; read by admins only)."""
        with translated_errors():
            docs = list(self._container.query_items("SELECT * FROM c", enable_cross_partition_query=True))
        entries = sorted((AuditEntry.from_doc(d) for d in docs), key=lambda e: e.at, reverse=True)
        return entries[:limit]
