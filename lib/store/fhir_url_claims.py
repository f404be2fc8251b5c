"""Claims on FHIR base URLs (container ``fhir_url_claims``, partition ``/id``): one document per normalised URL
naming the one environment that holds it, so "each URL belongs to one environment" holds when two admins save at
the same moment, and a SMART launch is routed by a point read of its ``iss``.

A claim is *created* (create-only: of two racing creates exactly one wins) before the environment document that
lists the URL is written, and released when the URL leaves the environment or the write that needed it failed.
The local Cosmos-compatible server has no atomic batch across documents (and the claim and the environment live
in different partitions anyway), so a process can die between the two writes. Such a claim is *stale*: the
environment it names does not list the URL. A stale claim older than :data:`LEASE` is taken over (ETag-guarded,
so of two takers one wins); a younger one is treated as a save still in progress. A URL can therefore never stay
claimed by nobody for longer than the lease.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.cosmos import exceptions as cosmos_errors

from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import AlreadyExists, ConcurrencyConflict

#: How long a claim whose environment does not (yet) list the URL counts as a save in progress.
LEASE = timedelta(seconds=60)
_ATTEMPTS = 4


class UrlTaken(Exception):
    """The URL is claimed by ``holder`` (``pending``: by a save of ``holder`` that is in progress or did not
    finish less than :data:`LEASE` ago)."""

    def __init__(self, url: str, holder: str, *, pending: bool) -> None:
        super().__init__(url)
        self.url, self.holder, self.pending = url, holder, pending


def normalised(url: str) -> str:
    """``url`` as compared for uniqueness: scheme and host lowercase, the default port and a trailing slash
    dropped (the path keeps its case: servers may distinguish it)."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    netloc = host if port is None or (scheme, port) in (("https", 443), ("http", 80)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def claim_id(url: str) -> str:
    """The claim document's ID for ``url`` (a hash: a URL's ``/`` is not allowed in a Cosmos ID)."""
    return hashlib.sha256(normalised(url).encode("utf-8")).hexdigest()


class FhirUrlClaims:
    """Creates, reads and releases URL claims.

    Args:
        store: the Cosmos store.
        lists: ``(environment_id, url) -> bool``: whether the stored environment lists ``url`` now (read fresh).
        wall: the current time (UTC), for the lease.
    """

    def __init__(self, store: CosmosStore, *, lists: Callable[[str, str], bool],
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._container = store.container("fhir_url_claims")
        self._lists = lists
        self._wall = wall

    def holder(self, url: str) -> str | None:
        """The environment ID the claim on ``url`` names (one point read), or ``None``."""
        doc = read_or_none(self._container, claim_id(url), claim_id(url))
        return str(doc["environmentId"]) if doc else None

    def claim(self, url: str, environment_id: str) -> bool:
        """Claim ``url`` for ``environment_id``; ``True`` when this call created (or took over) the claim,
        ``False`` when the environment already held it.

        Raises:
            UrlTaken: another environment holds it, or is being saved with it.
        """
        key = claim_id(url)
        for _ in range(_ATTEMPTS):
            doc = {"id": key, "url": normalised(url), "environmentId": environment_id,
                   "claimedAt": self._wall().isoformat()}
            try:
                with translated_errors():
                    self._container.create_item(doc)
                return True
            except AlreadyExists:
                pass
            found = read_or_none(self._container, key, key)
            if found is None:
                continue  # released between our create and our read: create again
            holder = str(found["environmentId"])
            if holder == environment_id:
                return False
            if self._lists(holder, url):
                raise UrlTaken(url, holder, pending=False)
            if self._wall() - _claimed_at(found) < LEASE:
                raise UrlTaken(url, holder, pending=True)
            try:  # stale: a save that died between its claim and its environment write, or a lost release
                with translated_errors():
                    self._container.replace_item(item=key, body=doc, **if_match(str(found["_etag"])))
                return True
            except ConcurrencyConflict:
                continue  # someone else took it over or released it: look again
        raise UrlTaken(url, "?", pending=True)

    def release(self, url: str, environment_id: str) -> None:
        """Drop the claim of ``environment_id`` on ``url`` unless the stored environment lists the URL (then the
        claim is right: e.g. a racing save of the same environment that won). Safe to call twice."""
        key = claim_id(url)
        found = read_or_none(self._container, key, key)
        if found is None or found["environmentId"] != environment_id or self._lists(environment_id, url):
            return
        try:
            with translated_errors():
                self._container.delete_item(item=key, partition_key=key, **if_match(str(found["_etag"])))
        except (ConcurrencyConflict, cosmos_errors.CosmosResourceNotFoundError):
            return  # changed or dropped meanwhile: no longer ours to drop


def _claimed_at(doc: dict[str, Any]) -> datetime:
    try:
        at = datetime.fromisoformat(str(doc.get("claimedAt")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)
