"""Environment configuration (container ``environments``): small, read-mostly, cached per process.

The caches are bounded in size and age (``cachetools.TTLCache``): a configured environment is kept for
``cache_seconds``; an ID that is *not* configured is remembered only in a small separate cache (a
misconfigured interface hammering one wrong URL costs one read per few seconds, while a flood of random IDs
cannot grow memory: the oldest entries make room). The list of all environments, which routes a SMART launch
by its ``iss``, is one cache entry read with one query per ``cache_seconds``.

A change made through :meth:`EnvironmentRepository.put` is seen at once by this process; other instances
see it within ``cache_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cachetools import TTLCache

from lib.models import EnvironmentConfig
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import AlreadyExists, StoreError
from lib.store.fhir_url_claims import LEASE, FhirUrlClaims, UrlTaken, normalised

#: Most environments kept per process (a hospital has a handful; more only on a shared test server).
CACHE_SIZE = 256
#: Unknown IDs remembered at once, and for how long (seconds).
UNKNOWN_CACHE_SIZE = 64
UNKNOWN_CACHE_SECONDS = 5.0

log = logging.getLogger(__name__)


class ConfigurationConflict(Exception):
    """A configuration change would make two environments ambiguous: ``url`` is held by environment ``holder``
    (``pending``: a save of ``holder`` with it is in progress). The message is a sentence for the admin."""

    def __init__(self, url: str, holder: str, *, pending: bool = False) -> None:
        self.url, self.holder, self.pending = url, holder, pending
        if pending:
            text = (f"{url}: is being saved for environment '{holder}' at this moment (or was, by a save that did "
                    f"not finish in the last {int(LEASE.total_seconds())} seconds); each URL belongs to one "
                    "environment. Check that environment, then try again in a minute.")
        else:
            text = (f"{url}: is already used by environment '{holder}' (a launch is routed by its URL, so each URL "
                    "belongs to one environment)")
        super().__init__(text)


class EnvironmentExists(AlreadyExists):
    """An environment with this ID is already stored (a create is create-only: nothing was overwritten)."""


class EnvironmentRepository:
    """Reads and writes :class:`EnvironmentConfig` documents.

    Reads are cached for ``cache_seconds`` (``0`` = no cache) so a burst of HL7 messages or launches costs
    one point read. ``monotonic`` (seconds) is the caches' clock.
    Decisions that stop an effect (the SMS dispatcher, right before a send) read with ``fresh=True``: a
    change saved by another instance (SMS switched off) applies before the next send, not a cache later.
    """

    def __init__(self, store: CosmosStore, *, cache_seconds: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._container = store.container("environments")
        self._claims = FhirUrlClaims(store, lists=self._lists, wall=wall)
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        age = max(cache_seconds, 1e-9)
        self._found: TTLCache[str, EnvironmentConfig] = TTLCache(CACHE_SIZE, age, timer=monotonic)
        self._unknown: TTLCache[str, bool] = TTLCache(
            UNKNOWN_CACHE_SIZE, min(UNKNOWN_CACHE_SECONDS, age), timer=monotonic)
        self._everything: TTLCache[str, list[EnvironmentConfig]] = TTLCache(1, age, timer=monotonic)
        # Launch routing: normalised URL -> the environment ID its claim names ("" = no claim).
        self._routes: TTLCache[str, str] = TTLCache(CACHE_SIZE, age, timer=monotonic)
        self._unrouted: TTLCache[str, bool] = TTLCache(
            UNKNOWN_CACHE_SIZE, min(UNKNOWN_CACHE_SECONDS, age), timer=monotonic)

    def cached(self) -> tuple[int, int]:
        """How many configured and unknown environment IDs this process remembers now."""
        with self._lock:
            return self._found.currsize, self._unknown.currsize

    def get(self, environment_id: str, *, fresh: bool = False) -> EnvironmentConfig | None:
        """The environment with this ID, or ``None`` when it is not configured (``fresh``: read the store,
        not the cache, and refresh the cache)."""
        if self._cache_seconds > 0 and not fresh:
            with self._lock:
                hit = self._found.get(environment_id)
                if hit is not None or environment_id in self._unknown:
                    return hit
        doc = read_or_none(self._container, environment_id, environment_id)
        config = EnvironmentConfig.from_doc(doc) if doc else None
        if self._cache_seconds > 0:
            with self._lock:
                if config is not None:
                    self._found[environment_id] = config
                else:
                    self._unknown[environment_id] = True
        return config

    def read_versioned(self, environment_id: str) -> tuple[EnvironmentConfig, str] | None:
        """The stored environment and its version (the document's ``_etag``), read fresh; ``None`` when it is
        not configured. An edit passes the version back to :meth:`put` so a save over someone else's is refused."""
        doc = read_or_none(self._container, environment_id, environment_id)
        if not doc:
            return None
        return EnvironmentConfig.from_doc(doc), str(doc["_etag"])

    def create(self, config: EnvironmentConfig) -> None:
        """Store a new environment, create-only: of two creates of one ID exactly one succeeds. Its FHIR base
        URLs are claimed first (:mod:`lib.store.fhir_url_claims`); the claims are released when the create fails.

        Raises:
            EnvironmentExists: an environment with this ID is stored (nothing was written).
            ConfigurationConflict: another environment holds one of its URLs (nothing was written).
        """
        claimed = self._claim(config, held=set())
        try:
            with translated_errors():
                self._container.create_item(config.to_doc())
        except AlreadyExists:
            self._release(claimed, config.id)
            raise EnvironmentExists(config.id) from None
        except BaseException:
            self._release(claimed, config.id)
            raise
        self.forget(config.id)

    def put(self, config: EnvironmentConfig, *, version: str | None = None) -> None:
        """Create or replace an environment (admin portal, local seeding). With ``version`` (from
        :meth:`read_versioned`), the replace is ETag-guarded (``If-Match``): it succeeds only if nobody saved
        the environment since that version was read. URLs it adds are claimed first; URLs it drops are released
        after the write.

        Raises:
            ConfigurationConflict: another environment already holds one of the URLs it adds (a launch is routed
                by its ``iss``, so each URL must name exactly one environment).
            ConcurrencyConflict: ``version`` is no longer the stored one (nothing was written).
        """
        previous = read_or_none(self._container, config.id, config.id)
        held = set(previous.get("fhir_base_urls") or ()) if previous else set()
        added = {normalised(u) for u in config.fhir_base_urls} - {normalised(u) for u in held}
        for other in self._read_all():  # environments saved before claims existed hold no claim
            shared = {u for u in other.fhir_base_urls if normalised(u) in added}
            if other.id != config.id and shared:
                raise ConfigurationConflict(sorted(shared)[0], other.id)
        claimed = self._claim(config, held=held)
        try:
            with translated_errors():
                if version is None:
                    self._container.upsert_item(config.to_doc())
                else:
                    self._container.replace_item(item=config.id, body=config.to_doc(), **if_match(version))
        except BaseException:
            self._release(claimed, config.id)
            raise
        self._release([u for u in held if u not in config.fhir_base_urls], config.id)
        self.forget(config.id)

    def _claim(self, config: EnvironmentConfig, *, held: set[str]) -> list[str]:
        """Claim every URL of ``config``; the ones this call claimed. A URL the stored environment already
        ``held`` keeps working even when another environment's claim names it (a state saved before claims
        existed): the conflict is logged, not raised, so the environment can still be disabled or edited."""
        claimed: list[str] = []
        for url in config.fhir_base_urls:
            try:
                if self._claims.claim(url, config.id):
                    claimed.append(url)
            except UrlTaken as exc:
                if url in held:
                    log.warning("fhir url claim held by another environment environment=%s holder=%s",
                                config.id, exc.holder)
                    continue
                self._release(claimed, config.id)
                raise ConfigurationConflict(url, exc.holder, pending=exc.pending) from None
            except BaseException:
                self._release(claimed, config.id)
                raise
        return claimed

    def _release(self, urls: list[str], environment_id: str) -> None:
        """Release claims after a failed or finished write; best effort (a claim left behind is stale and is
        taken over after the lease)."""
        for url in urls:
            try:
                self._claims.release(url, environment_id)
            except StoreError as exc:
                log.warning("fhir url claim not released environment=%s error=%s", environment_id,
                            type(exc).__name__)
        with self._lock:
            for url in urls:
                self._routes.pop(normalised(url), None)

    def _lists(self, environment_id: str, url: str) -> bool:
        """Whether the stored environment lists ``url`` (normalised), read fresh."""
        doc = read_or_none(self._container, environment_id, environment_id)
        return bool(doc) and normalised(url) in {normalised(u) for u in doc.get("fhir_base_urls") or ()}

    def forget(self, environment_id: str) -> None:
        """Drop what this process cached about ``environment_id`` (and the list of all environments)."""
        with self._lock:
            self._found.pop(environment_id, None)
            self._unknown.pop(environment_id, None)
            self._everything.clear()
            self._routes.clear()
            self._unrouted.clear()

    def all(self) -> list[EnvironmentConfig]:
        """Every configured environment (a handful per hospital), read fresh."""
        return self._read_all()

    def ids(self) -> list[str]:
        """The ID of every configured environment: a projection, so certificates and settings are not read (the
        readiness check counts them on every probe)."""
        with translated_errors():
            return [str(i) for i in self._container.query_items("SELECT VALUE c.id FROM c",
                                                                 enable_cross_partition_query=True)]

    def certificates(self) -> dict[str, list[str]]:
        """Every environment's ID and its stored HL7 certificates: a projection (the readiness check reports
        certificates close to expiry on every probe, without reading the rest of the configuration)."""
        with translated_errors():
            rows = self._container.query_items("SELECT c.id, c.hl7_certificates FROM c",
                                               enable_cross_partition_query=True)
            return {str(r["id"]): list(r.get("hl7_certificates") or ()) for r in rows}

    def preload(self) -> list[EnvironmentConfig]:
        """Read up to :data:`CACHE_SIZE` environments into the cache (one query; the warm-up at instance
        start) and return them. Bounded, like the cache: a store holding more (a shared test server) is not
        read whole at start."""
        with translated_errors():
            docs: list[dict[str, Any]] = list(self._container.query_items(
                "SELECT TOP @n * FROM c", parameters=[{"name": "@n", "value": CACHE_SIZE}],
                enable_cross_partition_query=True))
        configs = [EnvironmentConfig.from_doc(d) for d in docs]
        if self._cache_seconds > 0:
            with self._lock:
                for config in configs:
                    self._found[config.id] = config
        return configs

    def find_by_fhir_base_url(self, iss: str) -> EnvironmentConfig | None:
        """The environment whose approved FHIR base URLs contain ``iss`` exactly, or ``None``.

        Routed by the URL's claim (one point read, cached for ``cache_seconds``; an unclaimed ``iss`` is
        remembered only briefly, in a small cache); an environment saved before claims existed is found in
        the list of environments, read at most once per ``cache_seconds``.
        """
        key = normalised(iss)
        holder = self._route(key, iss)
        if holder:
            config = self.get(holder)
            if config is not None and iss in config.fhir_base_urls:
                return config
        for config in self._cached_all():  # unclaimed, or a stale claim: an environment saved before claims
            if iss in config.fhir_base_urls:
                return config
        return None

    def _route(self, key: str, iss: str) -> str:
        if self._cache_seconds > 0:
            with self._lock:
                hit = self._routes.get(key)
                if hit is not None:
                    return hit
                if key in self._unrouted:
                    return ""
        holder = self._claims.holder(iss) or ""
        if self._cache_seconds > 0:
            with self._lock:
                if holder:
                    self._routes[key] = holder
                else:
                    self._unrouted[key] = True
        return holder

    def _cached_all(self) -> list[EnvironmentConfig]:
        if self._cache_seconds <= 0:
            return self._read_all()
        with self._lock:
            hit = self._everything.get("all")
        if hit is not None:
            return hit
        configs = self._read_all()
        with self._lock:
            self._everything["all"] = configs
        return configs

    def _read_all(self) -> list[EnvironmentConfig]:
        with translated_errors():
            docs: list[dict[str, Any]] = list(
                self._container.query_items("SELECT * FROM c", enable_cross_partition_query=True)
            )
        return [EnvironmentConfig.from_doc(d) for d in docs]
