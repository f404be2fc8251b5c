"""The audit trail of the portal (container ``audit``, partition ``/environmentId``): who changed what, when,
with the configuration before and after. Entries never hold a secret (the configuration has none: certificates
are public, keys live in Key Vault) and are never changed or deleted by the app."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lib.models import iso
from lib.store.cosmos import CosmosStore, read_or_none, translated_errors

#: Entries per page: the default, and the most one request may ask for.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

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


class AuditQuery(BaseModel):
    """Which entries a page of the audit trail shows (query parameters of ``GET /api/config/audit`` and of the
    portal's page): one environment or all, a date range (``from`` inclusive, ``to`` inclusive; a date means
    that whole UTC day), ``limit`` entries, older than the cursor ``before`` (from the previous page's "Older")."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    environmentId: str | None = Field(default=None, min_length=1, max_length=64)
    since: str | None = Field(default=None, alias="from", max_length=40)
    until: str | None = Field(default=None, alias="to", max_length=40)
    limit: int = Field(default=PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    before: str | None = Field(default=None, max_length=2000)

    @classmethod
    def parse(cls, params: dict[str, str]) -> AuditQuery:
        """From query parameters (empty values are absent).

        Raises:
            AuditQueryRefused: a parameter is unknown or not valid (the message names it).
        """
        try:
            query = cls.model_validate({k: v for k, v in params.items() if v != ""})
        except ValidationError as exc:
            raise AuditQueryRefused([_problem(e) for e in exc.errors()]) from None
        if query.before is not None:
            Cursor.decode(query.before)
        bad = [_MESSAGES[name] for name, value in (("from", query.since), ("to", query.until))
               if value is not None and _when(value) is None]
        if bad:
            raise AuditQueryRefused(bad)
        low, high = query.bounds()
        if low and high and low >= high:
            raise AuditQueryRefused(["from: must not be after to"])
        return query

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """``[low, high)`` as instants (UTC)."""
        return (_instant(_when(self.since), end=False) if self.since else None,
                _instant(_when(self.until), end=True) if self.until else None)


class AuditQueryRefused(ValueError):
    """A query parameter of the audit trail is not valid; ``problems`` say which and how."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_MESSAGES = {"limit": f"limit: a whole number of entries, 1 to {MAX_PAGE_SIZE}",
             "from": "from: a date (2026-01-31) or an ISO date-time (2026-01-31T08:00:00Z)",
             "to": "to: a date (2026-01-31) or an ISO date-time (2026-01-31T08:00:00Z)",
             "before": "before: use the link of the previous page (Older)",
             "environmentId": "environmentId: an environment ID"}


def _problem(error: Any) -> str:
    name = str(error["loc"][0]) if error["loc"] else "query"
    if error["type"] == "extra_forbidden":
        return f"{name}: unknown parameter (environmentId, from, to, limit, before)"
    return _MESSAGES.get(name, f"{name}: {error['msg']}")


def _when(text: str) -> datetime | date | None:
    """A date (``2026-01-31``: that whole UTC day) or an ISO date-time; ``None`` when it is neither."""
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _instant(value: datetime | date | None, *, end: bool) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        at = value if value.tzinfo else value.replace(tzinfo=UTC)
        return at + timedelta(microseconds=1) if end else at
    start = datetime.combine(value, time(), tzinfo=UTC)
    return start + timedelta(days=1) if end else start


@dataclass(frozen=True)
class Cursor:
    """Where the next (older) page starts: entries at ``at`` or earlier, except ``seen`` (the IDs at exactly
    ``at`` already shown). Opaque to callers (base64url JSON)."""

    at: str
    seen: tuple[str, ...]

    def encode(self) -> str:
        raw = json.dumps({"at": self.at, "seen": list(self.seen)}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Raises: AuditQueryRefused: not a cursor this app wrote."""
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            at, seen = data["at"], data["seen"]
            datetime.fromisoformat(at)
            if not (isinstance(seen, list) and len(seen) <= MAX_PAGE_SIZE and all(isinstance(i, str) for i in seen)):
                raise ValueError
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            raise AuditQueryRefused([_MESSAGES["before"]]) from None
        return cls(at, tuple(seen))


@dataclass(frozen=True)
class AuditPage:
    """One page, newest first; ``older``: the cursor of the next page, ``None`` on the last one."""

    entries: list[AuditEntry]
    older: str | None


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

    def for_environment(self, environment_id: str, *, limit: int = PAGE_SIZE) -> list[AuditEntry]:
        """The newest ``limit`` entries of one environment, newest first (one partition)."""
        return self.page(AuditQuery(environmentId=environment_id, limit=limit)).entries

    def recent(self, *, limit: int = PAGE_SIZE) -> list[AuditEntry]:
        """The newest ``limit`` entries of every environment, newest first."""
        return self.page(AuditQuery(limit=limit)).entries

    def page(self, query: AuditQuery) -> AuditPage:
        """One page of entries, newest first: a ``TOP`` query ordered by ``at`` on the index (one partition
        when ``query`` names an environment), so its cost follows the page size, not the trail's length.
        Older pages continue below the previous page's last entry (:class:`Cursor`)."""
        cursor = Cursor.decode(query.before) if query.before else None
        low, high = query.bounds()
        where, params = [], [{"name": "@n", "value": query.limit + 1 + (len(cursor.seen) if cursor else 0)}]
        if query.environmentId:
            where.append("c.environmentId = @e")
            params.append({"name": "@e", "value": query.environmentId})
        if low:
            where.append("c.at >= @low")
            params.append({"name": "@low", "value": iso(low)})
        if high:
            where.append("c.at < @high")
            params.append({"name": "@high", "value": iso(high)})
        if cursor:
            where.append("c.at <= @before")
            params.append({"name": "@before", "value": cursor.at})
        # Only fixed clauses are joined; every value is a parameter.
        sql = "SELECT TOP @n * FROM c" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY c.at DESC"  # noqa: S608
        scope: dict[str, Any] = ({"partition_key": query.environmentId} if query.environmentId
                                 else {"enable_cross_partition_query": True})
        with translated_errors():
            docs = list(self._container.query_items(sql, parameters=params, **scope))
        seen = set(cursor.seen) if cursor else set()
        fresh = [d for d in docs if not (cursor and d["at"] == cursor.at and d["id"] in seen)]
        entries = [AuditEntry.from_doc(d) for d in fresh[:query.limit]]
        if len(fresh) <= query.limit or not entries:
            return AuditPage(entries, None)
        last = fresh[query.limit - 1]["at"]
        at_last = [d["id"] for d in fresh[:query.limit] if d["at"] == last]
        if cursor and cursor.at == last:
            at_last = [*cursor.seen, *at_last]
        return AuditPage(entries, Cursor(last, tuple(at_last)).encode())
