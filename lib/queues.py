"""The one place queue messages are produced and decoded.

The Functions host decodes queue messages as base64 by default (``host.json``
``extensions.queues.messageEncoding``), while ``azure-storage-queue`` sends text unencoded unless told
otherwise (azure-sdk-for-python#10029). Every producer and every consumer outside the host (the dev
runner, operator commands) goes through this module so both sides agree.

Messages carry IDs only, never PHI: ``{"id": ..., "bucket" | "appointmentKey": ...}`` plus an optional
``correlationId``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lib.settings import Settings

SMS_OUTBOX_QUEUE = "sms-outbox"
VISIT_EVENTS_QUEUE = "visit-events"
CALL_RECORDS_QUEUE = "call-records"


def poison_queue(name: str) -> str:
    """The host's poison queue of ``name``: ``<name>-poison``."""
    return f"{name}-poison"


def encode(message: Mapping[str, Any]) -> str:
    """The JSON text of a message (the base64 step is the SDK's encode policy)."""
    return json.dumps(dict(message), separators=(",", ":"), sort_keys=True)


def decode(body: bytes | str) -> dict[str, Any]:
    """Parse a message body as the host hands it to a function (already base64-decoded).

    Raises:
        ValueError: the body is not a JSON object.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("queue message is not a JSON object")
    return value


class QueueProducer:
    """Sends messages to the app's queues with the base64 encode policy, creating queues on first use.

    Args:
        settings: uses ``AzureWebJobsStorage`` (connection string) or its ``__queueServiceUri`` with
            managed identity.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, Any] = {}

    def _client(self, queue: str) -> Any:
        client = self._clients.get(queue)
        if client is not None:
            return client
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        policies = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
        }
        if self._settings.storage_connection:
            client = QueueClient.from_connection_string(self._settings.storage_connection, queue, **policies)
        elif self._settings.storage_queue_uri:
            from azure.identity import DefaultAzureCredential

            client = QueueClient(
                self._settings.storage_queue_uri, queue, credential=DefaultAzureCredential(), **policies
            )
        else:
            raise RuntimeError("no queue storage configured: set AzureWebJobsStorage")
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        self._clients[queue] = client
        return client

    def send(self, queue: str, message: Mapping[str, Any], *, visibility_timeout: int | None = None) -> None:
        """Enqueue ``message`` on ``queue`` (with the current ``correlationId`` unless it has one);
        ``visibility_timeout`` delays it (seconds)."""
        from lib.observability.correlation import with_correlation

        self._client(queue).send_message(encode(with_correlation(message)), visibility_timeout=visibility_timeout)

    def client(self, queue: str) -> Any:
        """The configured ``QueueClient`` (operator commands and tests: peek, receive, clear)."""
        return self._client(queue)
