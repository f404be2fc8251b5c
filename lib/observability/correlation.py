"""The correlation ID of the current request or queue message (a context variable).

Each trigger sets it from what came in (the ``x-correlation-id`` request header, the ``correlationId`` of
a queue message) or makes a new one; logging stamps it on every record (``correlation_id``), queue
producers put it in the messages they send (:func:`with_correlation`), outbound HTTP calls send it as
``x-correlation-id`` (:func:`outbound_headers`). A correlation ID is a short token (letters, digits,
``-_.``, at most 64 characters), never PHI.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "HEADER", "azure_core_policy", "current", "is_valid", "new_id", "outbound_headers", "scope", "with_correlation",
]

HEADER = "x-correlation-id"
MESSAGE_FIELD = "correlationId"

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def is_valid(value: object) -> bool:
    """True for a sane correlation token: 1..64 characters of letters, digits and ``-_.``."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return False
    return all(c.isascii() and (c.isalnum() or c in "-_.") for c in value)


def new_id() -> str:
    """A fresh correlation ID (32 hex characters)."""
    return uuid.uuid4().hex


def current() -> str | None:
    """The correlation ID of the work in progress, or ``None`` outside any :func:`scope`."""
    return _current.get()


@contextmanager
def scope(correlation_id: str | None = None) -> Iterator[str]:
    """Run a block under ``correlation_id`` (a new one when it is missing or malformed); yields the ID."""
    value = correlation_id if is_valid(correlation_id) else new_id()
    token = _current.set(value)
    try:
        yield value  # type: ignore[misc]
    finally:
        _current.reset(token)


def with_correlation(message: Mapping[str, Any]) -> dict[str, Any]:
    """``message`` with ``correlationId`` set to the current ID unless it already carries one."""
    result = dict(message)
    value = _current.get()
    if value and not result.get(MESSAGE_FIELD):
        result[MESSAGE_FIELD] = value
    return result


def outbound_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus ``x-correlation-id`` (the current ID) unless present or outside any scope."""
    result = dict(headers or {})
    value = _current.get()
    if value and not any(name.lower() == HEADER for name in result):
        result[HEADER] = value
    return result


def azure_core_policy() -> Any:
    """An azure-core pipeline policy adding ``x-correlation-id`` (the current ID) to every request of a
    client built with ``per_call_policies=[azure_core_policy()]`` (the ACS SMS client). Imports azure-core
    on call."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class CorrelationHeaderPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            value = _current.get()
            if value and HEADER not in request.http_request.headers:
                request.http_request.headers[HEADER] = value

    return CorrelationHeaderPolicy()
