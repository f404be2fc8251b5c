"""EHR user -> Entra object ID (container ``users``, partition key ``/id`` = ``{environmentId}|{ehrUserId}``).

Written after a clinician's first Microsoft 365 sign-in (a later issue), read to choose the organizer of a
visit's Teams meeting. Holds no name and no e-mail: only the two IDs and when the mapping was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.models import iso, parse_iso, safe_key
from lib.store.cosmos import CosmosStore, read_or_none, translated_errors


def user_key(environment_id: str, ehr_user_id: str) -> str:
    """The document ID: ``{environmentId}|{ehrUserId}``."""
    return safe_key(environment_id, ehr_user_id)


@dataclass(frozen=True)
class UserMapping:
    """One clinician's mapping; ``entra_object_id`` is the Entra ID user object ID (a GUID)."""

    environment_id: str
    ehr_user_id: str
    entra_object_id: str
    updated_utc: datetime

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document."""
        return {
            "id": user_key(self.environment_id, self.ehr_user_id),
            "environmentId": self.environment_id,
            "ehrUserId": self.ehr_user_id,
            "entraObjectId": self.entra_object_id,
            "updated_utc": iso(self.updated_utc),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> UserMapping:
        """Build from a stored document."""
        return cls(
            environment_id=doc["environmentId"],
            ehr_user_id=doc["ehrUserId"],
            entra_object_id=doc["entraObjectId"],
            updated_utc=parse_iso(doc["updated_utc"]),  # type: ignore[arg-type]
        )


class UserRepository:
    """Reads and writes :class:`UserMapping` documents."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("users")

    def get(self, environment_id: str, ehr_user_id: str) -> UserMapping | None:
        """The mapping of one clinician, or ``None``."""
        key = user_key(environment_id, ehr_user_id)
        doc = read_or_none(self._container, key, key)
        return UserMapping.from_doc(doc) if doc else None

    def put(self, mapping: UserMapping) -> None:
        """Create or replace a mapping (last sign-in wins)."""
        with translated_errors():
            self._container.upsert_item(mapping.to_doc())

    def by_entra_object_id(self, environment_id: str, entra_object_id: str) -> UserMapping | None:
        """The clinician of ``environment_id`` with Entra object ID ``entra_object_id`` (roster -> EHR user), or
        ``None``. A cross-partition query over the small ``users`` container."""
        with translated_errors():
            docs = list(self._container.query_items(
                "SELECT * FROM c WHERE c.environmentId = @env AND c.entraObjectId = @oid",
                parameters=[{"name": "@env", "value": environment_id}, {"name": "@oid", "value": entra_object_id}],
                enable_cross_partition_query=True,
            ))
        if not docs:
            return None
        return UserMapping.from_doc(max(docs, key=lambda d: d.get("updated_utc") or ""))
