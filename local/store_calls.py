"""Counting store round trips for the benchmarks: every HTTP request the process sends to Cosmos DB.

The count is taken on the wire (``requests.Session.send``, which the ``azure-cosmos`` transport uses), so it
includes what a count of repository calls would miss: the SDK's own metadata requests (database account,
container properties, partition key ranges), the one query per partition range of a ReadMany, retries.
Numbers for benchmarks, never assertions in tests.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests


def _kind(request: requests.PreparedRequest) -> str:
    """``query``, ``batch``, ``write``, ``read`` or ``metadata`` (anything but a document)."""
    path = urllib.parse.urlsplit(request.url or "").path.rstrip("/")
    headers = {k.lower(): v for k, v in request.headers.items()}
    if "/docs" not in path:
        return "metadata"
    if headers.get("x-ms-documentdb-isquery", "").lower() == "true":
        return "query"
    if headers.get("x-ms-cosmos-is-batch-request", "").lower() == "true":
        return "batch"
    if request.method == "GET":
        return "read"
    return "write"


class StoreCallCounter:
    """Counts requests to ``endpoint`` (the Cosmos DB URL) while :meth:`installed` is active.

    ``calls`` counts by kind (see :func:`_kind`); :attr:`total` is their sum.
    """

    def __init__(self, endpoint: str) -> None:
        self._netloc = urllib.parse.urlsplit(endpoint).netloc
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Every request counted since the last :meth:`reset`."""
        with self._lock:
            return sum(self.calls.values())

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self.calls.clear()

    def snapshot(self) -> dict[str, int]:
        """The counts by kind, sorted by name."""
        with self._lock:
            return dict(sorted(self.calls.items()))

    @contextmanager
    def installed(self) -> Iterator[StoreCallCounter]:
        """Count while inside the ``with`` block (wraps ``requests.Session.send`` for this process)."""
        original = requests.Session.send
        counter = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            if urllib.parse.urlsplit(request.url or "").netloc == counter._netloc:
                with counter._lock:
                    counter.calls[_kind(request)] += 1
            return original(session, request, **kwargs)

        requests.Session.send = send  # type: ignore[method-assign]
        try:
            yield self
        finally:
            requests.Session.send = original  # type: ignore[method-assign]
