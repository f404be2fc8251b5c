"""Environment configuration (container ``environments``): small, read-mostly, cached per process.

The caches are bounded in size and age (``cachetools.TTLCache``): a configured environment is kept for
``cache_seconds``; an ID that is *not* configured is remembered only in a small separate cache (a
misconfigured interface hammering one wrong URL costs one read per few seconds, while a flood of random IDs
cannot grow memory: the oldest entries make room). The list of all environments, which routes a SMART launch
by its ``iss``, is one cache entry read with one query per ``cache_seconds``.

A change made through :meth:`EnvironmentRepository.put` is seen at once by this process; other instances
see it within ``cache_seconds``.

A document that cannot even be read as an :class:`EnvironmentConfig` (a field of the wrong shape written straight
into the store) is never cached: :meth:`EnvironmentRepository.get` raises
:class:`lib.stored_settings.UnusableSetting` for it, the lists leave it out (one broken document must not stop
every other environment's launches) and :meth:`EnvironmentRepository.unreadable` names it for the portal's
warning. Settings that read but break their rules are found by :func:`lib.stored_settings.check_usable`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from lib.models import EnvironmentConfig
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.stored_settings import UnusableSetting

log = logging.getLogger(__name__)

#: Most environments kept per process (a hospital has a handful; more only on a shared test server).
CACHE_SIZE = 256
#: Unknown IDs remembered at once, and for how long (seconds).
UNKNOWN_CACHE_SIZE = 64
UNKNOWN_CACHE_SECONDS = 5.0


class ConfigurationConflict(Exception):
    """A configuration change would make two environments ambiguous. The message says which."""


class EnvironmentRepository:
    """Reads and writes :class:`EnvironmentConfig` documents.

    Reads are cached for ``cache_seconds`` (``0`` = no cache) so a burst of HL7 messages or launches costs
    one point read. ``monotonic`` (seconds) is the caches' clock.
    Decisions that stop an effect (the SMS dispatcher, right before a send) read with ``fresh=True``: a
    change saved by another instance (SMS switched off) applies before the next send, not a cache later.
    """

    def __init__(self, store: CosmosStore, *, cache_seconds: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._container = store.container("environments")
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        age = max(cache_seconds, 1e-9)
        self._found: TTLCache[str, EnvironmentConfig] = TTLCache(CACHE_SIZE, age, timer=monotonic)
        self._unknown: TTLCache[str, bool] = TTLCache(
            UNKNOWN_CACHE_SIZE, min(UNKNOWN_CACHE_SECONDS, age), timer=monotonic)
        self._everything: TTLCache[str, list[EnvironmentConfig]] = TTLCache(1, age, timer=monotonic)
        self._unreadable: list[_Unreadable] = []

    def cached(self) -> tuple[int, int]:
        """How many configured and unknown environment IDs this process remembers now."""
        with self._lock:
            return self._found.currsize, self._unknown.currsize

    def get(self, environment_id: str, *, fresh: bool = False) -> EnvironmentConfig | None:
        """The environment with this ID, or ``None`` when it is not configured (``fresh``: read the store,
        not the cache, and refresh the cache).

        Raises:
            UnusableSetting: the stored document cannot be read as a configuration (not cached).
        """
        if self._cache_seconds > 0 and not fresh:
            with self._lock:
                hit = self._found.get(environment_id)
                if hit is not None or environment_id in self._unknown:
                    return hit
        doc = read_or_none(self._container, environment_id, environment_id)
        config = _parsed(doc) if doc else None
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
        return _parsed(doc), str(doc["_etag"])

    def put(self, config: EnvironmentConfig, *, version: str | None = None) -> None:
        """Create or replace an environment (admin portal, local seeding). With ``version`` (from
        :meth:`read_versioned`), the replace is ETag-guarded (``If-Match``): it succeeds only if nobody saved
        the environment since that version was read.

        Raises:
            ConfigurationConflict: another environment already lists one of its FHIR base URLs (a launch is
                routed by its ``iss``, so each URL must name exactly one environment).
            ConcurrencyConflict: ``version`` is no longer the stored one (nothing was written).
        """
        for other in self._read_all():
            shared = set(other.fhir_base_urls) & set(config.fhir_base_urls)
            if other.id != config.id and shared:
                raise ConfigurationConflict(
                    f"FHIR base URL {sorted(shared)[0]} is already configured for environment '{other.id}'"
                )
        with translated_errors():
            if version is None:
                self._container.upsert_item(config.to_doc())
            else:
                self._container.replace_item(item=config.id, body=config.to_doc(), **if_match(version))
        self.forget(config.id)

    def forget(self, environment_id: str) -> None:
        """Drop what this process cached about ``environment_id`` (and the list of all environments)."""
        with self._lock:
            self._found.pop(environment_id, None)
            self._unknown.pop(environment_id, None)
            self._everything.clear()

    def all(self) -> list[EnvironmentConfig]:
        """Every configured environment (a handful per hospital), read fresh."""
        return self._read_all()

    def ids(self) -> list[str]:
        """The ID of every configured environment: a projection, so certificates and settings are not read (the
        readiness check counts them on every probe)."""
        with translated_errors():
            return [str(i) for i in self._container.query_items("SELECT VALUE c.id FROM c",
                                                                 enable_cross_partition_query=True)]

    def preload(self) -> list[EnvironmentConfig]:
        """Read up to :data:`CACHE_SIZE` environments into the cache (one query; the warm-up at instance
        start) and return them. Bounded, like the cache: a store holding more (a shared test server) is not
        read whole at start."""
        with translated_errors():
            docs: list[dict[str, Any]] = list(self._container.query_items(
                "SELECT TOP @n * FROM c", parameters=[{"name": "@n", "value": CACHE_SIZE}],
                enable_cross_partition_query=True))
        configs = _readable(docs)[0]
        if self._cache_seconds > 0:
            with self._lock:
                for config in configs:
                    self._found[config.id] = config
        return configs

    def find_by_fhir_base_url(self, iss: str) -> EnvironmentConfig | None:
        """The environment whose approved FHIR base URLs contain ``iss`` exactly, or ``None``.

        Reads the list of environments at most once per ``cache_seconds`` (one cache entry, whatever the
        ``iss`` values asked for).

        Raises:
            UnusableSetting: ``iss`` is listed by an environment whose document cannot be read.
        """
        for config in self._cached_all():
            if iss in config.fhir_base_urls:
                return config
        for broken in self._unreadable:
            if iss in broken.fhir_base_urls:
                raise broken.problem
        return None

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

    def unreadable(self) -> list[UnusableSetting]:
        """The environments whose documents could not be read as configurations at the last full read (of
        :meth:`all`, or of the launch routing's list), each as the error naming it."""
        with self._lock:
            return [broken.problem for broken in self._unreadable]

    def _read_all(self) -> list[EnvironmentConfig]:
        with translated_errors():
            docs: list[dict[str, Any]] = list(
                self._container.query_items("SELECT * FROM c", enable_cross_partition_query=True)
            )
        configs, broken = _readable(docs)
        with self._lock:
            self._unreadable = broken
        return configs


class _Unreadable:
    """A stored document that is not a configuration: its ID, the URLs it lists, and why it cannot be read."""

    def __init__(self, doc: dict[str, Any], problem: UnusableSetting) -> None:
        urls = doc.get("fhir_base_urls")
        self.fhir_base_urls = tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else ()
        self.problem = problem


def _parsed(doc: dict[str, Any]) -> EnvironmentConfig:
    """``doc`` as a configuration.

    Raises:
        UnusableSetting: a field has a shape no configuration has (the first field named in the error, when
            it names one, else ``settings``).
    """
    try:
        return EnvironmentConfig.from_doc(doc)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        text = str(exc)
        named = [name for name in EnvironmentConfig.__dataclass_fields__ if text.startswith(name)]
        setting = max(named, key=len) if named else "settings"
        message = "a stored field has a shape no setting has: correct or remove the document in the store"
        if setting != "settings":
            message = text[len(setting):].lstrip(" :") or message
        raise UnusableSetting(setting, message[:200], environment_id=str(doc.get("id", ""))[:64]) from None


def _readable(docs: list[dict[str, Any]]) -> tuple[list[EnvironmentConfig], list[_Unreadable]]:
    """The documents that read as configurations, and those that do not (each logged, by ID and setting)."""
    configs: list[EnvironmentConfig] = []
    broken: list[_Unreadable] = []
    for doc in docs:
        try:
            configs.append(_parsed(doc))
        except UnusableSetting as exc:
            log.warning("environment %s cannot be read (setting %s): correct it in the portal",
                        exc.environment_id, exc.setting)
            broken.append(_Unreadable(doc, exc))
    return configs, broken
