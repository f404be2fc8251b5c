"""Store errors the services act on, independent of the Cosmos SDK's exception classes."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of store errors."""


class StoreUnavailable(StoreError):
    """Transient: the store is down, unreachable or throttling (HTTP 429/503, connection error).

    The caller should make its sender retry (HL7 ``AE`` / HTTP 503, queue redelivery).
    """


class AlreadyExists(StoreError):
    """A create found a document with the same ID (HTTP 409): someone else did it first."""


class ConcurrencyConflict(StoreError):
    """An ETag-guarded write lost the race (HTTP 412): re-read and decide again."""
