"""Cosmos DB access: one client per process, container handles, and SDK-error translation.

Uses the real ``azure-cosmos`` SDK everywhere. Locally it talks to the Cosmos-compatible server, whose
bundled certificate expired in 2021, so ``COSMOS_EMULATOR=1`` switches verification off for this client only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos import exceptions as cosmos_errors

from lib.settings import Settings
from lib.store.errors import AlreadyExists, ConcurrencyConflict, StoreError, StoreUnavailable
from lib.store.schema import CONTAINERS

_TRANSIENT_STATUS = {408, 429, 449, 500, 502, 503, 504}


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
        raise StoreUnavailable(f"Cosmos DB unreachable: {type(exc).__name__}") from exc


class CosmosStore:
    """The database and its containers, shared by the repositories.

    Args:
        client: a ready ``CosmosClient``.
        database: database name.
    """

    def __init__(self, client: CosmosClient, database: str) -> None:
        self._db = client.get_database_client(database)
        self._client = client
        self._containers: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> CosmosStore:
        """Open the account named by the settings (key locally, managed identity in Azure).

        ``client_options`` go to ``CosmosClient`` as they are (e.g. ``read_timeout`` in seconds for a
        benchmark against the slow local server).
        """
        credential: Any
        if settings.cosmos_key:
            credential = settings.cosmos_key
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        options: dict[str, Any] = {"transport": _transport(settings.cosmos_endpoint, emulator=settings.cosmos_emulator)}
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
        client = CosmosClient(settings.cosmos_endpoint, credential=credential, **{**options, **client_options})
        return cls(client, settings.cosmos_database)

    def container(self, name: str) -> Any:
        """The ``ContainerProxy`` for ``name`` (cached)."""
        proxy = self._containers.get(name)
        if proxy is None:
            proxy = self._containers[name] = self._db.get_container_client(name)
        return proxy

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
                    self.container(spec.name).read()
                    read += 1
                except cosmos_errors.CosmosResourceNotFoundError:
                    continue
        return read

    def ensure_schema(self) -> None:
        """Create the database and every container of :data:`CONTAINERS` if missing.

        For local servers and tests; in Azure, Bicep creates them (data-plane RBAC cannot).
        """
        with translated_errors():
            self._client.create_database_if_not_exists(self._db.id)
            for spec in CONTAINERS:
                kwargs: dict[str, Any] = {}
                if spec.default_ttl is not None:
                    kwargs["default_ttl"] = spec.default_ttl
                self._db.create_container_if_not_exists(
                    id=spec.name, partition_key=PartitionKey(path=spec.partition_key), **kwargs
                )


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
