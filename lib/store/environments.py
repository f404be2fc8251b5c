"""Environment configuration (container ``environments``): small, read-mostly, cached per process."""

from __future__ import annotations

import time
from typing import Any

from lib.models import EnvironmentConfig
from lib.store.cosmos import CosmosStore, read_or_none, translated_errors


class ConfigurationConflict(Exception):
    """A configuration change would make two environments ambiguous. The message says which."""


class EnvironmentRepository:
    """Reads and writes :class:`EnvironmentConfig` documents.

    Reads are cached for ``cache_seconds`` so a burst of HL7 messages or launches costs one point read.
    """

    def __init__(self, store: CosmosStore, *, cache_seconds: float = 30.0) -> None:
        self._container = store.container("environments")
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, EnvironmentConfig | None]] = {}

    def get(self, environment_id: str, *, fresh: bool = False) -> EnvironmentConfig | None:
        """The environment with this ID, or ``None`` when it is not configured (``fresh``: skip the cache)."""
        hit = self._cache.get(environment_id)
        if hit and not fresh and time.monotonic() - hit[0] < self._cache_seconds:
            return hit[1]
        doc = read_or_none(self._container, environment_id, environment_id)
        config = EnvironmentConfig.from_doc(doc) if doc else None
        self._cache[environment_id] = (time.monotonic(), config)
        return config

    def put(self, config: EnvironmentConfig) -> None:
        """Create or replace an environment (admin portal, local seeding).

        Raises:
            ConfigurationConflict: another environment already lists one of its FHIR base URLs (a launch is
                routed by its ``iss``, so each URL must name exactly one environment).
        """
        for other in self.all():
            shared = set(other.fhir_base_urls) & set(config.fhir_base_urls)
            if other.id != config.id and shared:
                raise ConfigurationConflict(
                    f"FHIR base URL {sorted(shared)[0]} is already configured for environment '{other.id}'"
                )
        with translated_errors():
            self._container.upsert_item(config.to_doc())
        self._cache.pop(config.id, None)

    def all(self) -> list[EnvironmentConfig]:
        """Every configured environment (a handful per hospital)."""
        with translated_errors():
            docs: list[dict[str, Any]] = list(
                self._container.query_items("SELECT * FROM c", enable_cross_partition_query=True)
            )
        return [EnvironmentConfig.from_doc(d) for d in docs]

    def find_by_fhir_base_url(self, iss: str) -> EnvironmentConfig | None:
        """The environment whose approved FHIR base URLs contain ``iss`` exactly, or ``None``."""
        for config in self.all():
            if iss in config.fhir_base_urls:
                return config
        return None
