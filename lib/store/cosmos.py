"""Cosmos DB access: one client per process, container handles, and SDK-error translation.

Uses the real ``azure-cosmos`` SDK everywhere. Locally it talks to the Cosmos-compatible server, whose
bundled certificate expired in 2021, so ``COSMOS_EMULATOR=1`` switches verification off for this client only.

The SDK's ``CosmosClient`` reads the database account while it is *constructed*: building it in a process that
starts while the store is unreachable raises a connection error outside any request's error handling. So the
client is built on the store's first call instead (:class:`CosmosStore`), under :func:`translated_errors` like
every other call: each trigger then sees :class:`~lib.store.errors.StoreUnavailable` and answers as it does when
the store fails later (HL7 ``AE`` + 503, the patient's "service busy" page, ``STORE_UNAVAILABLE``), and a
failed construction is not remembered, so the next call tries again and the process recovers by itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos import exceptions as cosmos_errors

from lib.settings import Settings
from lib.store.errors import AlreadyExists, ConcurrencyConflict, StoreError, StoreUnavailable
from lib.store.schema import CONTAINERS

_TRANSIENT_STATUS = {408, 429, 449, 500, 502, 503, 504}

# The time budget of one store call (docs/hl7-intake.md, "When the store hangs"). Every face that answers a
# waiting client (the HL7 intake, whose interface engines give up after 30 to 60 s; the launch, join and portal
# pages) and the timers and queue triggers share one client, and each already retries at its own level (the
# engine resends an AE, a person reloads, a timer runs again next minute, a queue message comes back), so a store
# that does not answer fails the call quickly rather than being waited on: the SDK's defaults (65 s read
# timeout, then retried up to three times, and up to 30 s of waiting on throttling) held an HL7 request 65 s.
#: Seconds to open a connection to Cosmos DB (SDK default 5).
STORE_CONNECT_TIMEOUT = 3
#: Seconds to wait for an answer once the request is sent (SDK default 65); a point operation takes
#: milliseconds, and a query page is cut by Cosmos DB itself after about 5 s of work. The setting
#: ``COSMOS_READ_TIMEOUT_SECONDS`` (``Settings.cosmos_read_timeout``) replaces it; the local profiles set 60.
STORE_READ_TIMEOUT = 5
#: Read time-outs are not retried by the SDK (each caller's own retry decides; default 3 retries).
STORE_READ_RETRIES = 0
#: Most seconds spent waiting on throttling (429) retries in one call (SDK default 30).
STORE_THROTTLE_WAIT = 5
STORE_CLIENT_OPTIONS: dict[str, Any] = {
    "connection_timeout": STORE_CONNECT_TIMEOUT, "read_timeout": STORE_READ_TIMEOUT,
    "retry_read": STORE_READ_RETRIES, "retry_backoff_max": STORE_THROTTLE_WAIT,
}


@contextmanager
def translated_errors() -> Iterator[None]:
    """Turn Cosmos SDK exceptions into :mod:`lib.store.errors` (``NotFound`` is left to callers).

    Raises:
        AlreadyExists: HTTP 409.
        ConcurrencyConflict: HTTP 412 (ETag mismatch).
        StoreUnavailable: throttling, server errors, timeouts and connection failures.
        StoreError: any other store failure (the status code is in the message, never the document).
    """
    try:
        yield
    except cosmos_errors.CosmosResourceExistsError as exc:
        raise AlreadyExists("document already exists") from exc
    except cosmos_errors.CosmosAccessConditionFailedError as exc:
        raise ConcurrencyConflict("document changed since it was read") from exc
    except cosmos_errors.CosmosResourceNotFoundError:
        raise
    except cosmos_errors.CosmosHttpResponseError as exc:
        if exc.status_code in _TRANSIENT_STATUS:
            raise StoreUnavailable(f"Cosmos DB answered {exc.status_code}") from exc
        raise StoreError(f"Cosmos DB answered {exc.status_code}") from exc
    except (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError) as exc:
        # ServiceRequestError also wraps DNS failures and refused connections; the timeouts are subclasses.
        raise StoreUnavailable(f"Cosmos DB unreachable: {type(exc).__name__}") from exc
    except ClientAuthenticationError as exc:  # the managed identity's token endpoint did not answer (Azure)
        raise StoreUnavailable(f"Cosmos DB credential unavailable: {type(exc).__name__}") from exc


class CosmosStore:
    """The database and its containers, shared by the repositories.

    Args:
        connect: builds the ``CosmosClient`` (it contacts the account); called on the first store call, and
            again on the next one when it failed.
        database: database name.
    """

    def __init__(self, connect: Callable[[], CosmosClient], database: str) -> None:
        self._connect = connect
        self._database_name = database
        self._connected: tuple[CosmosClient, Any] | None = None
        self._lock = threading.Lock()
        self._containers: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> CosmosStore:
        """The account named by the settings (key locally, managed identity in Azure); nothing is contacted
        until the first store call.

        The call budget is :data:`STORE_CLIENT_OPTIONS`; ``client_options`` go to ``CosmosClient`` over it
        (e.g. a longer ``read_timeout`` in seconds for a benchmark against the slow local server).
        """
        credential: Any
        if settings.cosmos_key:
            credential = settings.cosmos_key
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        options: dict[str, Any] = {**STORE_CLIENT_OPTIONS, "read_timeout": settings.cosmos_read_timeout,
                                   "transport": _transport(settings.cosmos_endpoint, emulator=settings.cosmos_emulator)}
        if ca_bundle := os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
            options["connection_verify"] = ca_bundle  # what requests would have read from the environment per call
        if settings.cosmos_emulator:
            # Local only: the Cosmos-compatible server's bundled certificate expired in 2021. The warning
            # urllib3 would print on every request says what this line already says.
            import warnings

            from urllib3.exceptions import InsecureRequestWarning

            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            options["connection_verify"] = False
            options["enable_endpoint_discovery"] = False
        endpoint = settings.cosmos_endpoint

        def connect() -> CosmosClient:
            return CosmosClient(endpoint, credential=credential, **{**options, **client_options})

        return cls(connect, settings.cosmos_database)

    def _client_and_database(self) -> tuple[CosmosClient, Any]:
        """The client and database proxy, built now if no call built them yet.

        Raises:
            StoreUnavailable: the account cannot be reached (nothing is remembered: the next call tries again).
            StoreError: the account refused us (e.g. a wrong key).
        """
        connected = self._connected
        if connected is not None:
            return connected
        with translated_errors():  # built outside the lock: a hanging store must not queue every caller
            client = self._connect()
        with self._lock:
            if self._connected is None:
                self._connected = (client, client.get_database_client(self._database_name))
            return self._connected

    @property
    def client(self) -> CosmosClient:
        """The ``CosmosClient``, connecting first when needed (the local benchmarks delete their database with it).

        Raises:
            StoreUnavailable, StoreError: as :meth:`_client_and_database`.
        """
        return self._client_and_database()[0]

    @property
    def database(self) -> Any:
        """The SDK's ``DatabaseProxy``, connecting first when needed (raises as :attr:`client`)."""
        return self._client_and_database()[1]

    def container_proxy(self, name: str) -> Any:
        """The SDK's ``ContainerProxy`` for ``name`` (cached), connecting first when needed.

        Raises:
            StoreUnavailable, StoreError: as :meth:`_client_and_database`.
        """
        proxy = self._containers.get(name)
        if proxy is None:
            proxy = self.database.get_container_client(name)
            with self._lock:
                proxy = self._containers.setdefault(name, proxy)
        return proxy

    def container(self, name: str) -> Any:
        """A handle on container ``name`` that repositories keep: it connects on its first call
        (:class:`Container`), so building a repository never contacts the store."""
        return Container(self, name)

    def warm_up(self) -> int:
        """Fetch every container's properties now (the SDK caches them per client and would otherwise fetch
        each on its first use, inside a request). Returns how many containers were read; one that does not
        exist yet is skipped (its first use fails as it would have).

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        read = 0
        with translated_errors():
            for spec in CONTAINERS:
                try:
                    self.container_proxy(spec.name).read()
                    read += 1
                except cosmos_errors.CosmosResourceNotFoundError:
                    continue
        return read

    def ensure_schema(self) -> None:
        """Create the database and every container of :data:`CONTAINERS` if missing.

        For local servers and tests; in Azure, Bicep creates them (data-plane RBAC cannot).
        """
        with translated_errors():
            self.client.create_database_if_not_exists(self._database_name)
            for spec in CONTAINERS:
                kwargs: dict[str, Any] = {}
                if spec.default_ttl is not None:
                    kwargs["default_ttl"] = spec.default_ttl
                self.database.create_container_if_not_exists(
                    id=spec.name, partition_key=PartitionKey(path=spec.partition_key), **kwargs
                )


class Container:
    """Container ``name`` of ``store``: every attribute is the SDK ``ContainerProxy``'s (``read_item``,
    ``query_items``...), looked up when used, so the store is contacted on the first call, not when a
    repository is built. Getting the attribute raises ``StoreUnavailable`` while the store cannot be reached.
    """

    def __init__(self, store: CosmosStore, name: str) -> None:
        self._store = store
        self._name = name

    @property
    def id(self) -> str:
        """The container's name (known without contacting the store)."""
        return self._name

    def __getattr__(self, attribute: str) -> Any:  # called only for what this object does not hold itself
        if attribute.startswith("_"):  # our own fields, before __init__ set them (copy, pickle)
            raise AttributeError(attribute)
        return getattr(self._store.container_proxy(self._name), attribute)


# Single-partition queries also name their partition key in the WHERE clause: Cosmos DB is indifferent,
# and the local Cosmos-compatible server only honours the partition key when it appears in the filter.


def _transport(endpoint: str, *, emulator: bool) -> Any:
    """The azure-core transport of the process's Cosmos client: one ``requests`` session whose proxy settings
    are read from the environment once, here.

    With ``trust_env`` (the default) ``requests`` reads the proxy, ``no_proxy``, netrc and CA-bundle
    variables again on every call: about a sixth of a store call's client time, for values that do not change
    while the process runs (a netrc entry would even replace the Cosmos ``Authorization`` header). The
    CA bundle is passed as ``connection_verify`` by :meth:`CosmosStore.from_settings`.

    Locally (``emulator``) every TLS connection also shares one pre-built SSL context that does not verify,
    exactly like ``connection_verify=False`` (the local server's certificate expired in 2021): building a
    context per connection, loading the system CA store, cost about 60 ms per new connection.
    """
    import ssl

    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(endpoint))
    session.trust_env = False
    if emulator:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        class _SharedContextAdapter(HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                kwargs["ssl_context"] = context
                super().init_poolmanager(*args, **kwargs)

        session.mount("https://", _SharedContextAdapter())
    return RequestsTransport(session=session, session_owner=False)


def if_match(etag: str | None) -> dict[str, Any]:
    """Keyword arguments for an ETag-guarded write (``If-Match``), or none when ``etag`` is ``None``."""
    if etag is None:
        return {}
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def strip_system(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` without Cosmos system properties (``_rid``, ``_etag``, ``_ts``...)."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def read_or_none(container: Any, item_id: str, partition_key: str) -> dict[str, Any] | None:
    """Point-read one document; ``None`` when it does not exist.

    Raises:
        StoreUnavailable, StoreError: see :func:`translated_errors`.
    """
    with translated_errors():
        try:
            return container.read_item(item=item_id, partition_key=partition_key)
        except cosmos_errors.CosmosResourceNotFoundError:
            return None


def read_many(container: Any, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Read many documents in one round trip per physical partition (Cosmos DB ReadMany; the SDK turns a
    list of ``(id, partition key)`` into one query per partition range). Missing documents are left out.

    Raises:
        StoreUnavailable, StoreError: see :func:`translated_errors`.
    """
    unique = list(dict.fromkeys(items))
    if not unique:
        return []
    with translated_errors():
        return list(container.read_items(unique))


def write_over(container: Any, current: dict[str, Any] | None, body: dict[str, Any]) -> None:
    """Create ``body`` when ``current`` (the document as read) is ``None``, else replace it only if it is
    unchanged since that read (``If-Match`` on its ``_etag``).

    Raises:
        AlreadyExists: someone created it after our read.
        ConcurrencyConflict: someone changed it after our read.
    """
    with translated_errors():
        if current is None:
            container.create_item(body)
        else:
            container.replace_item(item=body["id"], body=body, **if_match(current.get("_etag")))


def delete_if_exists(container: Any, item_id: str, partition_key: str) -> bool:
    """Delete one document; ``False`` when it was already gone."""
    with translated_errors():
        try:
            container.delete_item(item=item_id, partition_key=partition_key)
            return True
        except cosmos_errors.CosmosResourceNotFoundError:
            return False
