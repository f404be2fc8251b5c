"""SMART App Launch step 3, "Discover authorization endpoints" (STU 2.2, app-launch.html#step-3-discover-
authorization-endpoints; document format: conformance.html#using-well-known).

``GET {iss}/.well-known/smart-configuration``; when that is missing or unusable, fall back to the FHIR
CapabilityStatement ``GET {iss}/metadata`` and its ``oauth-uris`` extension (the pre-2021 Epic way; Epic asks
for the ``Epic-Client-ID`` header there, since the endpoints can be overridden per client).

Security: this module is only ever called with an ``iss`` that matched an approved environment exactly
(the allowlist check happens first, in :mod:`lib.visits.launch`). Endpoints on another origin than ``iss``
are refused, so a tampered discovery document cannot send our client assertion elsewhere.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lib.smart.errors import LaunchError
from lib.smart.transport import HttpClient, TransportError, json_or_none, same_origin

log = logging.getLogger(__name__)

OAUTH_URIS_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
DEFAULT_TTL_SECONDS = 3600.0
MAX_TTL_SECONDS = 24 * 3600.0
_MAX_AGE = re.compile(r"max-age=(\d+)")


@dataclass(frozen=True)
class SmartConfiguration:
    """What the app needs from an EHR's discovery document.

    Attributes:
        fhir_base_url: the ``iss`` this configuration belongs to.
        authorization_endpoint, token_endpoint: absolute https URLs on the origin of ``fhir_base_url``.
        capabilities: SMART capability strings (``launch-ehr``, ``authorize-post``, ``permission-v2``...).
        code_challenge_methods: PKCE methods offered; empty when the document does not say (metadata).
        issuer: OpenID Connect issuer, when given (``sso-openid-connect``).
        jwks_uri: the EHR's JWKS URL for id_token signatures, when given.
        grant_types: ``grant_types_supported``.
        source: ``smart-configuration`` or ``metadata``.
        response_iss_required: ``authorization_response_iss_parameter_supported`` (RFC 9207 §3): the server
            puts ``iss`` on every authorization response, so a callback without one is refused.
    """

    fhir_base_url: str
    authorization_endpoint: str
    token_endpoint: str
    capabilities: frozenset[str] = frozenset()
    code_challenge_methods: tuple[str, ...] = ()
    issuer: str | None = None
    jwks_uri: str | None = None
    grant_types: tuple[str, ...] = ()
    source: str = "smart-configuration"
    response_iss_required: bool = False

    @property
    def supports_authorize_post(self) -> bool:
        """Whether the authorize endpoint takes a form POST (capability ``authorize-post``)."""
        return "authorize-post" in self.capabilities

    @property
    def prefers_v2_scopes(self) -> bool:
        """Whether to ask for SMART v2 scopes (``.rs``): only when v2 is offered and v1 is not."""
        return "permission-v2" in self.capabilities and "permission-v1" not in self.capabilities


def parse_smart_configuration(iss: str, doc: Any) -> SmartConfiguration:
    """Build a :class:`SmartConfiguration` from a ``.well-known/smart-configuration`` JSON document.

    Raises:
        LaunchError: ``DISCOVERY_INVALID`` when endpoints are missing, not https, on another origin, or
            PKCE S256 is not offered (conformance.html: ``code_challenge_methods_supported`` must hold S256).
    """
    if not isinstance(doc, dict):
        raise LaunchError("DISCOVERY_INVALID", "The smart-configuration document is not a JSON object.")
    methods = tuple(str(m) for m in doc.get("code_challenge_methods_supported") or ())
    if methods and "S256" not in methods:
        raise LaunchError("DISCOVERY_INVALID", "The EHR does not offer PKCE S256 (code_challenge_methods_supported).")
    config = SmartConfiguration(
        fhir_base_url=iss,
        authorization_endpoint=_str(doc.get("authorization_endpoint")),
        token_endpoint=_str(doc.get("token_endpoint")),
        capabilities=frozenset(str(c) for c in doc.get("capabilities") or ()),
        code_challenge_methods=methods,
        issuer=_str(doc.get("issuer")) or None,
        jwks_uri=_str(doc.get("jwks_uri")) or None,
        grant_types=tuple(str(g) for g in doc.get("grant_types_supported") or ()),
        source="smart-configuration",
        response_iss_required=doc.get("authorization_response_iss_parameter_supported") is True,
    )
    check_endpoints(config)
    return config


def parse_capability_statement(iss: str, doc: Any) -> SmartConfiguration:
    """Build a :class:`SmartConfiguration` from a FHIR CapabilityStatement's ``oauth-uris`` extension.

    Raises:
        LaunchError: ``DISCOVERY_INVALID`` when the extension or its ``authorize``/``token`` URIs are missing.
    """
    uris: dict[str, str] = {}
    if isinstance(doc, dict) and doc.get("resourceType") == "CapabilityStatement":
        for rest in doc.get("rest") or ():
            for ext in ((rest or {}).get("security") or {}).get("extension") or ():
                if (ext or {}).get("url") != OAUTH_URIS_EXTENSION:
                    continue
                for sub in ext.get("extension") or ():
                    if isinstance(sub, dict) and sub.get("url") and sub.get("valueUri"):
                        uris[str(sub["url"])] = str(sub["valueUri"])
    if "authorize" not in uris or "token" not in uris:
        raise LaunchError("DISCOVERY_INVALID", "The CapabilityStatement has no oauth-uris authorize/token extension.")
    config = SmartConfiguration(
        fhir_base_url=iss,
        authorization_endpoint=uris["authorize"],
        token_endpoint=uris["token"],
        capabilities=frozenset({"launch-ehr"}),
        source="metadata",
    )
    check_endpoints(config)
    return config


def check_endpoints(config: SmartConfiguration) -> None:
    """Refuse endpoints that are not https or not on the origin (scheme, host, port) of the ``iss``.

    Raises:
        LaunchError: ``DISCOVERY_INVALID``.
    """
    named = {"authorization_endpoint": config.authorization_endpoint, "token_endpoint": config.token_endpoint}
    if config.jwks_uri:
        named["jwks_uri"] = config.jwks_uri
    for name, url in named.items():
        if not url:
            raise LaunchError("DISCOVERY_INVALID", f"The discovery document has no {name}.")
        if not url.lower().startswith("https://") or not same_origin(url, config.fhir_base_url):
            raise LaunchError(
                "DISCOVERY_INVALID",
                f"The discovery document's {name} is not an https URL on the FHIR base URL's host; refused.",
            )


class SmartDiscovery:
    """Fetches and caches :class:`SmartConfiguration` per ``(iss, client_id)``.

    Args:
        http: outbound HTTP client.
        ttl_seconds: cache lifetime when the response has no ``Cache-Control: max-age`` (capped at one day).
        monotonic: clock for the cache (tests).
    """

    def __init__(
        self,
        http: HttpClient,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, SmartConfiguration]] = {}

    def discover(self, iss: str, client_id: str) -> SmartConfiguration:
        """The SMART configuration of ``iss`` (an approved FHIR base URL), from cache when fresh.

        Raises:
            LaunchError: ``DISCOVERY_FAILED`` (nothing usable answered) or ``DISCOVERY_INVALID``.
        """
        key = (iss, client_id)
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > self._monotonic():
                return hit[1]
        config, ttl = self._fetch(iss, client_id)
        with self._lock:
            self._cache[key] = (self._monotonic() + ttl, config)
        return config

    def forget(self, iss: str, client_id: str) -> None:
        """Drop the cached configuration (after the EHR refused our requests, endpoints may have moved)."""
        with self._lock:
            self._cache.pop((iss, client_id), None)

    def _fetch(self, iss: str, client_id: str) -> tuple[SmartConfiguration, float]:
        headers = {"Accept": "application/json", "Epic-Client-ID": client_id}
        base = iss.rstrip("/")
        try:
            response = self._http.get(f"{base}/.well-known/smart-configuration", headers=headers)
            if response.status_code == 200 and isinstance(json_or_none(response), dict):
                return parse_smart_configuration(iss, response.json()), self._ttl_of(response)
            log.info("smart-configuration unusable (HTTP %s); trying metadata", response.status_code)
            response = self._http.get(f"{base}/metadata", headers={**headers, "Accept": "application/fhir+json"})
        except TransportError as exc:
            raise LaunchError("DISCOVERY_FAILED", f"The EHR's discovery endpoints are unreachable ({exc.kind}).") \
                from exc
        if response.status_code != 200 or not isinstance(json_or_none(response), dict):
            raise LaunchError("DISCOVERY_FAILED", f"The EHR's metadata answered HTTP {response.status_code}.")
        return parse_capability_statement(iss, response.json()), self._ttl_of(response)

    def _ttl_of(self, response: Any) -> float:
        """``max-age`` of the response (capped), else the default TTL (also for ``no-store``: discovery
        documents change rarely, and a launch must not pay two extra round trips each time)."""
        match = _MAX_AGE.search(response.headers.get("Cache-Control", "") or "")
        if match:
            return min(float(match.group(1)), MAX_TTL_SECONDS)
        return self._ttl


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
