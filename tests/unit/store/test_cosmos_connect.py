"""The Cosmos client is built on the store's first call, every way it fails there is ``StoreUnavailable``, and
a failed connect is not remembered (the next call tries again)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
)

from lib.store.cosmos import CosmosStore
from lib.store.errors import StoreUnavailable


class _Client:
    """What the store uses of ``CosmosClient``: ``get_database_client`` -> ``get_container_client``."""

    def get_database_client(self, name: str) -> Any:
        class _Database:
            id = name

            def get_container_client(self, container: str) -> Any:
                class _Container:
                    def read_item(self, *, item: str, partition_key: str) -> dict[str, str]:
                        return {"id": item, "db": name, "container": container}

                return _Container()

        return _Database()


def _connect_after(failures: list[Exception]) -> tuple[list[int], Any]:
    calls = [0]

    def connect() -> _Client:
        calls[0] += 1
        if failures:
            raise failures.pop(0)
        return _Client()

    return calls, connect


def test_building_the_store_and_its_container_handles_contacts_nothing():
    calls, connect = _connect_after([])
    store = CosmosStore(connect, "db")
    container = store.container("environments")
    assert calls == [0] and container.id == "environments"
    assert container.read_item(item="a", partition_key="a") == {"id": "a", "db": "db", "container": "environments"}
    store.container("links").read_item(item="b", partition_key="b")
    assert calls == [1]  # one client per process once connected


@pytest.mark.parametrize("failure", [
    ServiceRequestError("connection refused"),           # nothing listens / firewall
    ServiceRequestError("Failed to resolve 'x.documents.azure.com'"),  # DNS
    ServiceRequestTimeoutError("connect timed out"),
    ServiceResponseError("read timed out"),
    ConnectionResetError("reset by peer"),
    TimeoutError("timed out"),
    ClientAuthenticationError("ManagedIdentityCredential: no response from the IMDS endpoint"),
])
def test_a_failed_connect_is_store_unavailable_and_is_tried_again_on_the_next_call(failure: Exception):
    calls, connect = _connect_after([failure])
    store = CosmosStore(connect, "db")
    container = store.container("visits")
    with pytest.raises(StoreUnavailable):
        container.read_item(item="a", partition_key="a")
    assert container.read_item(item="a", partition_key="a")["id"] == "a"
    assert calls == [2]
