"""EHR user -> Entra object ID (container ``users``, partition key ``/id`` = ``{environmentId}|{ehrUserId}``).

Written after a clinician's first Microsoft 365 sign-in (a later issue), read to choose the organizer of a
visit's Teams meeting. Holds no name and no e-mail: only the two IDs and when the mapping was made. A clinician
who signs in with another Entra account (a second account of the same person) gets the new one as the
organizer; the earlier ones (at most :data:`EARLIER_ACCOUNTS`) are kept in ``earlierEntraObjectIds`` so the
meeting roster still knows that account as the same clinician (:meth:`UserRepository.by_entra_object_id`).

Reads are cached per process, bounded in size and age (a clinician launching visit after visit costs one
read per few minutes): a mapping for ``CACHE_SECONDS``, the absence of one for ``UNKNOWN_CACHE_SECONDS``. The
IDs come from EHR-signed id_tokens, not from anonymous input. A mapping written here is seen at once by this
process; another instance may use the previous answer until its entry ages out (a clinician who just signed
in there may be asked once more, or have one meeting organized by the fallback organizer).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import TTLCache

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


#: Earlier Entra accounts of one clinician still recognised in the meeting roster.
EARLIER_ACCOUNTS = 4

#: How long this process trusts a mapping it read, and the absence of one (seconds); how many it keeps.
CACHE_SECONDS = 120.0
UNKNOWN_CACHE_SECONDS = 30.0
CACHE_SIZE = 1024


class UserRepository:
    """Reads and writes :class:`UserMapping` documents (reads cached, see the module docstring)."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("users")
        self._lock = threading.Lock()
        self._found: TTLCache[str, UserMapping] = TTLCache(CACHE_SIZE, CACHE_SECONDS)
        self._unknown: TTLCache[str, bool] = TTLCache(CACHE_SIZE, UNKNOWN_CACHE_SECONDS)

    def get(self, environment_id: str, ehr_user_id: str) -> UserMapping | None:
        """The mapping of one clinician, or ``None``."""
        key = user_key(environment_id, ehr_user_id)
        with self._lock:
            hit = self._found.get(key)
            if hit is not None or key in self._unknown:
                return hit
        doc = read_or_none(self._container, key, key)
        mapping = UserMapping.from_doc(doc) if doc else None
        with self._lock:
            if mapping is not None:
                self._found[key] = mapping
            else:
                self._unknown[key] = True
        return mapping

    def put(self, mapping: UserMapping) -> None:
        """Create or replace a mapping (last sign-in wins; an earlier, different account is kept as one of the
        clinician's ``earlierEntraObjectIds``)."""
        key = user_key(mapping.environment_id, mapping.ehr_user_id)
        with translated_errors():
            current = read_or_none(self._container, key, key) or {}
            earlier = [current["entraObjectId"]] if current.get("entraObjectId") else []
            earlier += [oid for oid in current.get("earlierEntraObjectIds") or [] if isinstance(oid, str)]
            earlier = list(dict.fromkeys(o for o in earlier if o != mapping.entra_object_id))[:EARLIER_ACCOUNTS]
            self._container.upsert_item({**mapping.to_doc(), "earlierEntraObjectIds": earlier})
        with self._lock:
            self._unknown.pop(key, None)
            self._found[key] = mapping

    def by_entra_object_id(self, environment_id: str, entra_object_id: str) -> UserMapping | None:
        """The clinician of ``environment_id`` with Entra object ID ``entra_object_id`` as its current or one of its
        earlier accounts (roster -> EHR user), or ``None``; a current mapping wins over an earlier one. A
        cross-partition query over the small ``users`` container."""
        with translated_errors():
            docs = list(self._container.query_items(
                "SELECT * FROM c WHERE c.environmentId = @env AND (c.entraObjectId = @oid"
                " OR ARRAY_CONTAINS(c.earlierEntraObjectIds, @oid))",
                parameters=[{"name": "@env", "value": environment_id}, {"name": "@oid", "value": entra_object_id}],
                enable_cross_partition_query=True,
            ))
        if not docs:
            return None
        best = max(docs, key=lambda d: (d.get("entraObjectId") == entra_object_id, d.get("updated_utc") or ""))
        return UserMapping.from_doc(best)
