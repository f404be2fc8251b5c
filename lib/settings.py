"""Application settings: the only module in ``lib/`` that reads environment variables.

The names are listed in ``docs/contracts.md``. In Azure they are app settings (some are Key Vault
references); locally they come from ``local.settings.json`` or from ``python -m local.services env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(Exception):
    """A required setting is missing or malformed. The message names the setting, never its value."""


@dataclass(frozen=True)
class Settings:
    """Process-wide configuration, read once.

    Attributes (units and shapes):
        cosmos_endpoint: Cosmos DB account URL, e.g. ``https://acct.documents.azure.com:443/``.
        cosmos_key: account key, or ``None`` in Azure (managed identity through DefaultAzureCredential).
        cosmos_database: database name.
        cosmos_emulator: local only; turns TLS verification off for the Cosmos client only.
        cosmos_transactional_batch: ``COSMOS_TRANSACTIONAL_BATCH`` (default on): write related documents of one
            partition in one transactional batch; ``0`` for a Cosmos-compatible server without batches.
        storage_connection: ``AzureWebJobsStorage`` connection string, or ``None`` with identity.
        storage_queue_uri: ``AzureWebJobsStorage__queueServiceUri`` when identity-based.
        acs_connection_string: ``endpoint=...;accesskey=...`` (local), or ``None`` in Azure.
        acs_endpoint: ACS endpoint used with managed identity.
        public_base_url: the app's public URL without trailing slash (redirect URIs, JWKS, join links).
        link_signing_key: secret bytes that sign SMS join-link tokens (HMAC-SHA256).
        smart_private_keys_file: PEM file holding our RSA signing key(s); the first is the active one.
        smart_private_keys_pem: the same PEM as text (``SMART_PRIVATE_KEYS``, a Key Vault reference in
            Azure); used instead of the file when set.
        graph_tenant_id, graph_client_id: Entra app registration for Microsoft Graph.
        graph_client_cert_file: PEM with private key and certificate (MSAL certificate credential).
        graph_client_cert_pem: the same PEM as text (``GRAPH_CLIENT_CERT``, a Key Vault reference in Azure);
            used instead of the file when set.
        graph_client_cert_previous_pem: the certificate being rotated out (``GRAPH_CLIENT_CERT_PREVIOUS``, an
            optional Key Vault reference): Graph notifications of subscriptions made with it are still decrypted
            until they are renewed with the new one (docs/deploy.md "Rotating the Graph client certificate").
        graph_authority_host: Entra authority host URL.
        graph_base_url: Microsoft Graph base URL including the version segment.
        local_ca_bundle: local only; CA file that clients trust for the local stand-ins.
        dev_clock_file: local only; file whose ISO-8601 content is "now" (tests and the demo).
        hl7_max_bytes: size cap of one HL7 request body, in bytes.
        eventgrid_webhook_key: secret the Event Grid subscription sends as ``?code=`` to ``/api/events/acs``
            (``EVENTGRID_WEBHOOK_KEY``, a Key Vault reference in Azure); unset = the webhook refuses every call.
        acs_resource_id: ARM ID of our ACS resource (``ACS_RESOURCE_ID``); when set, events from any other
            topic are refused.
        hl7_rejected_ttl_days: days a rejected HL7 message is kept for an operator's replay
            (``HL7_REJECTED_TTL_DAYS``, default 30, 1..365).
        cosmos_read_timeout: seconds a store call waits for Cosmos DB's answer (``COSMOS_READ_TIMEOUT_SECONDS``,
            default 5, 1..300; ``lib/store/cosmos.py``, docs/hl7-intake.md "When the store hangs"). The local
            profiles set 60: the single-threaded local Cosmos-compatible server can take seconds on a loaded machine.
        smart_private_keys_production_pem: PEM of the SMART keys of *production* environments
            (``SMART_PRIVATE_KEYS_PRODUCTION``, Key Vault reference); the ``SMART_PRIVATE_KEYS*`` keys serve test
            environments only (Epic: separate non-production and production JWKS URLs and keys).
        smart_private_keys_production_file: the same as a PEM file (``SMART_PRIVATE_KEYS_PRODUCTION_FILE``, local).
        epic_cal_keys: environment ID -> AES key (16 or 32 bytes) of Epic encrypted launch links
            (``EPIC_CAL_KEYS``: JSON ``{"envId": "<base64 key>"}``, Key Vault reference). Optional secrets: an
            unresolved Key Vault reference reads as unset, so only the launches that need them fail.
        easy_auth_enabled: ``WEBSITE_AUTH_ENABLED`` (set by App Service when its authentication module is on): only
            then is the portal's ``X-MS-CLIENT-PRINCIPAL`` header trusted (docs/portal.md "Sign-in and roles").
        easy_auth_client_id: ``WEBSITE_AUTH_CLIENT_ID`` (set by App Service): the audience a principal must carry.
        portal_dev_signin: ``PORTAL_DEV_SIGNIN``: the local development sign-in form of the portal; allowed only
            against the local emulators (``COSMOS_EMULATOR`` with a loopback ``COSMOS_ENDPOINT``), never on App
            Service.
        teams_join_origins: origins of Teams meeting join URLs (``TEAMS_JOIN_ORIGINS``, comma-separated, default
            ``https://teams.microsoft.com``): the authorize POST page's ``form-action`` lists them, since the
            launch's redirect chain ends there.
        launch_rate_limit, guess_rate_limit: per client address and process, in the ``limits`` notation
            (``LAUNCH_RATE_LIMIT`` default ``120/minute``; ``GUESS_RATE_LIMIT`` default ``20/minute`` failed
            state/join-link presentations); docs/launch.md "Rate limits".
        log_id_key: the key of the MSH-10 hash in logs (``lib/observability/safe_ids.py``, HMAC-SHA256):
            ``LOG_ID_KEY`` (base64, at least 32 bytes; a Key Vault reference in Azure), else derived from
            ``LINK_SIGNING_KEY``; stable per deployment so log lines can be matched, secret so a short control ID
            cannot be guessed back from its hash. Empty only when Settings is built in code (tests).
        call_relay_urls: ICE server URLs (``stun:host:port``...) the patient's device test tries, to tell
            whether the browser can reach the media relays (``CALL_RELAY_URLS``, space-separated; empty = not
            checked).
    """

    cosmos_endpoint: str
    cosmos_key: str | None
    cosmos_database: str
    cosmos_emulator: bool
    storage_connection: str | None
    storage_queue_uri: str | None
    acs_connection_string: str | None
    acs_endpoint: str | None
    public_base_url: str
    link_signing_key: bytes
    smart_private_keys_file: Path | None
    smart_private_keys_pem: bytes | None
    graph_tenant_id: str | None
    graph_client_id: str | None
    graph_client_cert_file: Path | None
    graph_client_cert_pem: bytes | None
    graph_client_cert_previous_pem: bytes | None
    graph_authority_host: str
    graph_base_url: str
    local_ca_bundle: Path | None
    dev_clock_file: Path | None
    hl7_max_bytes: int
    eventgrid_webhook_key: str | None = None
    acs_resource_id: str | None = None
    hl7_rejected_ttl_days: int = 30
    cosmos_read_timeout: float = 5.0
    smart_private_keys_production_pem: bytes | None = None
    smart_private_keys_production_file: Path | None = None
    epic_cal_keys: dict[str, bytes] = field(default_factory=dict)
    teams_join_origins: tuple[str, ...] = ("https://teams.microsoft.com",)
    launch_rate_limit: str = "120/minute"
    guess_rate_limit: str = "20/minute"
    call_relay_urls: tuple[str, ...] = ()
    cosmos_transactional_batch: bool = True
    easy_auth_enabled: bool = False
    easy_auth_client_id: str | None = None
    portal_dev_signin: bool = False
    log_id_key: bytes = b""

    @property
    def tls_verify(self) -> bool | str:
        """What outbound HTTP clients pass as ``verify``: the local CA bundle when set, else True."""
        return str(self.local_ca_bundle) if self.local_ca_bundle else True


def _relay_urls(value: str | None) -> tuple[str, ...]:
    """``CALL_RELAY_URLS``: space-separated ``stun:`` / ``turn:`` URLs the device test probes."""
    urls = tuple((value or "").split())
    for url in urls:
        if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
            raise SettingsError(f"setting CALL_RELAY_URLS: {url!r} is not a stun: or turn: URL")
    return urls


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _pem(name: str, value: str | None) -> bytes | None:
    """The PEM document ``value`` of setting ``name`` (a Key Vault reference in Azure), or ``None`` when unset.

    Raises:
        SettingsError: the value is still an unresolved ``@Microsoft.KeyVault(...)`` reference (the app's
            identity cannot read the secret), or it holds no PEM block.
    """
    value = (value or "").strip()
    if not value:
        return None
    if value.startswith("@Microsoft.KeyVault("):
        raise SettingsError(
            f"setting {name} is an unresolved Key Vault reference: check the secret exists and the app's "
            "identity has Key Vault Secrets User on the vault"
        )
    if "-----BEGIN " not in value:
        raise SettingsError(f"setting {name} must hold a PEM document")
    return value.encode()


def _optional_pem(name: str, value: str | None) -> bytes | None:
    """Like :func:`_pem`, but an unresolved Key Vault reference reads as unset (an optional secret)."""
    if (value or "").strip().startswith("@Microsoft.KeyVault("):
        return None
    return _pem(name, value)


def _cal_keys(value: str | None) -> dict[str, bytes]:
    """``EPIC_CAL_KEYS``: JSON object environment ID -> base64 AES key (16 or 32 bytes); unset -> ``{}``.

    Raises:
        SettingsError: not a JSON object of base64 keys of 16 or 32 bytes.
    """
    import base64
    import binascii
    import json

    text = (value or "").strip()
    if not text or text.startswith("@Microsoft.KeyVault("):
        return {}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise SettingsError("setting EPIC_CAL_KEYS must be a JSON object") from exc
    if not isinstance(raw, dict):
        raise SettingsError("setting EPIC_CAL_KEYS must be a JSON object")
    keys: dict[str, bytes] = {}
    for env_id, encoded in raw.items():
        try:
            key = base64.b64decode(str(encoded), validate=True)
        except binascii.Error as exc:
            raise SettingsError("setting EPIC_CAL_KEYS must map environment IDs to base64 keys") from exc
        if len(key) not in (16, 32):
            raise SettingsError("setting EPIC_CAL_KEYS keys must have 16 (AES-128) or 32 (AES-256) bytes")
        keys[str(env_id)] = key
    return keys


@dataclass(frozen=True)
class TelemetrySettings:
    """Logging and telemetry configuration, read apart from :class:`Settings` so that logging can be set up
    even when a required setting is missing.

    Attributes:
        enabled: ``TELEMETRY_ENABLED``: export logs, traces and metrics to Application Insights.
        connection_string: ``APPLICATIONINSIGHTS_CONNECTION_STRING`` (not a secret with local auth off).
        authentication_string: ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` (``Authorization=AAD``: send
            with the managed identity).
    """

    enabled: bool = False
    connection_string: str | None = None
    authentication_string: str | None = None


def load_telemetry_settings(environ: Mapping[str, str] | None = None) -> TelemetrySettings:
    """Read :class:`TelemetrySettings` from ``environ`` (default ``os.environ``); never raises."""
    env = os.environ if environ is None else environ
    return TelemetrySettings(
        enabled=_flag(env.get("TELEMETRY_ENABLED")),
        connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or None,
        authentication_string=env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING") or None,
    )



def _in_range(value: str, kind: type[int] | type[float], bounds: tuple[int, int], *, name: str, unit: str) -> float:
    """``value`` (the setting ``name``, read by the caller so the name stays a literal the Bicep check sees) as
    ``kind``, within ``bounds``.

    Raises:
        SettingsError: not a number of that kind (the message says ``unit``), or out of range.
    """
    try:
        number = kind(value)
    except ValueError as exc:
        raise SettingsError(f"setting {name} must be {unit}") from exc
    low, high = bounds
    if not low <= number <= high:
        raise SettingsError(f"setting {name} must be between {low} and {high}")
    return number

def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``environ`` (default ``os.environ``).

    Raises:
        SettingsError: a required setting (``COSMOS_ENDPOINT``, ``LINK_SIGNING_KEY``, ``PUBLIC_BASE_URL``)
            is missing, or a value has the wrong shape.
    """
    import base64
    import binascii

    env = os.environ if environ is None else environ

    def required(name: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            raise SettingsError(f"setting {name} is required (see docs/contracts.md)")
        return value

    try:
        link_key = base64.b64decode(required("LINK_SIGNING_KEY"), validate=True)
    except binascii.Error as exc:
        raise SettingsError("setting LINK_SIGNING_KEY must be base64") from exc
    if len(link_key) < 32:
        raise SettingsError("setting LINK_SIGNING_KEY must hold at least 32 bytes")
    try:
        max_bytes = int(env.get("HL7_MAX_BYTES", "1048576"))
    except ValueError as exc:
        raise SettingsError("setting HL7_MAX_BYTES must be a whole number of bytes") from exc
    rejected_ttl_days = int(_in_range(env.get("HL7_REJECTED_TTL_DAYS", "30"), int, (1, 365),
                                      name="HL7_REJECTED_TTL_DAYS", unit="a whole number of days"))
    read_timeout = _in_range(env.get("COSMOS_READ_TIMEOUT_SECONDS", "5"), float, (1, 300),
                             name="COSMOS_READ_TIMEOUT_SECONDS", unit="a number of seconds")

    settings = Settings(
        cosmos_endpoint=required("COSMOS_ENDPOINT"),
        cosmos_key=env.get("COSMOS_KEY") or None,
        cosmos_database=env.get("COSMOS_DATABASE", "virtualvisits"),
        cosmos_emulator=_flag(env.get("COSMOS_EMULATOR")),
        storage_connection=env.get("AzureWebJobsStorage") or None,
        storage_queue_uri=env.get("AzureWebJobsStorage__queueServiceUri") or None,
        acs_connection_string=env.get("ACS_CONNECTION_STRING") or None,
        acs_endpoint=env.get("ACS_ENDPOINT") or None,
        public_base_url=required("PUBLIC_BASE_URL").rstrip("/"),
        link_signing_key=link_key,
        smart_private_keys_file=_path(env.get("SMART_PRIVATE_KEYS_FILE")),
        smart_private_keys_pem=_pem("SMART_PRIVATE_KEYS", env.get("SMART_PRIVATE_KEYS")),
        graph_tenant_id=env.get("GRAPH_TENANT_ID") or None,
        graph_client_id=env.get("GRAPH_CLIENT_ID") or None,
        graph_client_cert_file=_path(env.get("GRAPH_CLIENT_CERT_FILE")),
        graph_client_cert_pem=_pem("GRAPH_CLIENT_CERT", env.get("GRAPH_CLIENT_CERT")),
        graph_client_cert_previous_pem=_optional_pem("GRAPH_CLIENT_CERT_PREVIOUS",
                                                     env.get("GRAPH_CLIENT_CERT_PREVIOUS")),
        graph_authority_host=env.get("GRAPH_AUTHORITY_HOST", "https://login.microsoftonline.com").rstrip("/"),
        graph_base_url=env.get("GRAPH_BASE_URL", "https://graph.microsoft.com/v1.0").rstrip("/"),
        local_ca_bundle=_path(env.get("LOCAL_CA_BUNDLE")),
        dev_clock_file=_path(env.get("DEV_CLOCK_FILE")),
        hl7_max_bytes=max_bytes,
        eventgrid_webhook_key=env.get("EVENTGRID_WEBHOOK_KEY") or None,
        acs_resource_id=env.get("ACS_RESOURCE_ID") or None,
        hl7_rejected_ttl_days=rejected_ttl_days,
        cosmos_read_timeout=read_timeout,
        smart_private_keys_production_pem=_optional_pem(
            "SMART_PRIVATE_KEYS_PRODUCTION", env.get("SMART_PRIVATE_KEYS_PRODUCTION")),
        smart_private_keys_production_file=_path(env.get("SMART_PRIVATE_KEYS_PRODUCTION_FILE")),
        epic_cal_keys=_cal_keys(env.get("EPIC_CAL_KEYS")),
        teams_join_origins=tuple(o.strip().rstrip("/") for o in
                                 env.get("TEAMS_JOIN_ORIGINS", "https://teams.microsoft.com").split(",") if o.strip()),
        launch_rate_limit=_rate("LAUNCH_RATE_LIMIT", env.get("LAUNCH_RATE_LIMIT", "120/minute")),
        guess_rate_limit=_rate("GUESS_RATE_LIMIT", env.get("GUESS_RATE_LIMIT", "20/minute")),
        call_relay_urls=_relay_urls(env.get("CALL_RELAY_URLS")),
        cosmos_transactional_batch=(env.get("COSMOS_TRANSACTIONAL_BATCH") or "1").strip().lower()
        not in {"0", "false", "no", "off"},
        easy_auth_enabled=(env.get("WEBSITE_AUTH_ENABLED") or "").strip().lower() == "true",
        easy_auth_client_id=env.get("WEBSITE_AUTH_CLIENT_ID") or None,
        portal_dev_signin=_flag(env.get("PORTAL_DEV_SIGNIN")),
        log_id_key=_log_id_key(env.get("LOG_ID_KEY"), link_key),
    )
    if settings.portal_dev_signin:
        _check_local_only(env, settings.cosmos_endpoint)
    return settings


def _log_id_key(value: str | None, link_key: bytes) -> bytes:
    """``LOG_ID_KEY`` (base64, at least 32 bytes), or, unset (or an unresolved Key Vault reference), a key derived
    from ``LINK_SIGNING_KEY`` for this one purpose (so a deployment without the setting still logs keyed hashes).

    Raises:
        SettingsError: set, but not base64 of at least 32 bytes.
    """
    import base64
    import binascii
    import hashlib
    import hmac

    text = (value or "").strip()
    if not text or text.startswith("@Microsoft.KeyVault("):
        return hmac.new(link_key, b"log-control-ids-v1", hashlib.sha256).digest()
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise SettingsError("setting LOG_ID_KEY must be base64") from exc
    if len(key) < 32:
        raise SettingsError("setting LOG_ID_KEY must hold at least 32 bytes")
    return key


def _check_local_only(env: Mapping[str, str], cosmos_endpoint: str) -> None:
    """``PORTAL_DEV_SIGNIN`` is refused unless the app runs against the local emulators, off App Service.

    Raises:
        SettingsError: naming why.
    """
    from urllib.parse import urlsplit

    host = (urlsplit(cosmos_endpoint).hostname or "").lower()
    if env.get("WEBSITE_INSTANCE_ID") or env.get("WEBSITE_SITE_NAME") or env.get("WEBSITE_AUTH_ENABLED"):
        raise SettingsError("setting PORTAL_DEV_SIGNIN is refused on App Service: use App Service authentication")
    if not _flag(env.get("COSMOS_EMULATOR")) or host not in {"127.0.0.1", "localhost", "::1"}:
        raise SettingsError("setting PORTAL_DEV_SIGNIN is allowed only against the local emulators "
                            "(COSMOS_EMULATOR=1 and a loopback COSMOS_ENDPOINT)")


def _rate(name: str, value: str) -> str:
    """A rate limit in the ``limits`` notation (``120/minute``, ``10/second``).

    Raises:
        SettingsError: the value cannot be read.
    """
    from limits import parse

    try:
        parse(value)
    except ValueError as exc:
        raise SettingsError(f"setting {name} must be a rate such as 120/minute") from exc
    return value.strip()
