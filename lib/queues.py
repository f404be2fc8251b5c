"""The one place queue messages are produced and decoded.

The Functions host decodes queue messages as base64 by default (``host.json``
``extensions.queues.messageEncoding``), while ``azure-storage-queue`` sends text unencoded unless told
otherwise (azure-sdk-for-python#10029). Every producer and every consumer outside the host (the dev
runner, operator commands) goes through this module so both sides agree.

Messages carry IDs only, never PHI: ``{"id": ...}`` (a text) or ``{"id": ..., "appointmentKey": ...}`` plus an optional
``correlationId``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from lib.settings import Settings

SMS_OUTBOX_QUEUE = "sms-outbox"
VISIT_EVENTS_QUEUE = "visit-events"
CALL_RECORDS_QUEUE = "call-records"
LAUNCH_FOLLOWUP_QUEUE = "launch-followup"


def poison_queue(name: str) -> str:
    """The host's poison queue of ``name``: ``<name>-poison``."""
    return f"{name}-poison"


class MalformedMessage(ValueError):
    """A queue message its trigger cannot read (not JSON, or missing fields). The trigger raises it, so the
    host moves the message to ``<queue>-poison`` after ``maxDequeueCount`` attempts, where the poison
    alert sees it; it is never dropped silently."""


def read_ids(body: bytes | str, *fields: str) -> dict[str, str]:
    """The string ``fields`` of a message body (and ``correlationId`` when it is a string).

    Raises:
        MalformedMessage: the body is not a JSON object, or a field is missing or not a string.
    """
    try:
        value = decode(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"not a JSON object ({type(exc).__name__})") from None
    missing = [f for f in fields if not isinstance(value.get(f), str) or not value[f]]
    if missing:
        raise MalformedMessage(f"missing or non-string field(s): {', '.join(missing)}")
    ids = {f: value[f] for f in fields}
    if isinstance(value.get("correlationId"), str):
        ids["correlationId"] = value["correlationId"]
    return ids


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


class QueueUnavailable(Exception):
    """The queue service did not answer in time, or failed moments ago (the producer waits ``pause``
    seconds before trying again, so a burst of requests does not each wait for a dead service)."""


class QueueProducer:
    """Sends messages to the app's queues with the base64 encode policy, creating a queue when it is missing.

    A send goes straight to the queue (one round trip); only when the service answers that the queue does not
    exist is it created and the message sent again. In Azure the queues exist (Bicep creates them), so the first
    message of an instance costs what every other one does; locally the first send creates each queue.

    The storage SDK's defaults (3 retries 15 s, 18 s and 24 s apart, 20 s connect and 60 s read timeouts)
    kept an HL7 request waiting 85 s when the queue service was down, although every producer has a
    fallback (the reminder timer sends due texts; write-back events are swept). So calls here fail fast:
    ``connect_timeout`` and ``read_timeout`` per attempt, one retry after half a second, and after a failure
    :meth:`send` raises :class:`QueueUnavailable` at once for ``pause`` seconds.

    Args:
        settings: uses ``AzureWebJobsStorage`` (connection string) or its ``__queueServiceUri`` with
            managed identity.
    """

    def __init__(
        self, settings: Settings, *, connect_timeout: float = 2.0, read_timeout: float = 5.0, pause: float = 30.0
    ) -> None:
        self._settings = settings
        self._clients: dict[str, Any] = {}
        self._timeouts = {"connection_timeout": connect_timeout, "read_timeout": read_timeout}
        self._pause = pause
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._created: set[str] = set()

    def prepare(self, *queues: str) -> None:
        """Build the clients of ``queues`` now (no network call): the instance's warm-up."""
        for queue in queues:
            self._client(queue, create=False)

    def _client(self, queue: str, *, create: bool = True) -> Any:
        client = self._clients.get(queue)
        if client is not None:
            if create and queue not in self._created:
                self._create(client, queue)
            return client
        from azure.storage.queue import LinearRetry, QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        policies = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
            "retry_policy": LinearRetry(backoff=0.5, retry_total=1, random_jitter_range=0),
            **self._timeouts,
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
        self._clients[queue] = client
        if create:
            self._create(client, queue)
        return client

    def _create(self, client: Any, queue: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        self._created.add(queue)

    def send(self, queue: str, message: Mapping[str, Any], *, visibility_timeout: int | None = None) -> None:
        """Enqueue ``message`` on ``queue`` (with the current ``correlationId`` unless it has one);
        ``visibility_timeout`` delays it (seconds).

        Raises:
            QueueUnavailable: the queue service failed now or less than ``pause`` seconds ago.
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        from lib.observability.correlation import with_correlation

        with self._lock:
            if time.monotonic() < self._down_until:
                raise QueueUnavailable("the queue service failed moments ago")
        text = encode(with_correlation(message))
        try:
            client = self._client(queue, create=False)
            try:
                client.send_message(text, visibility_timeout=visibility_timeout)
            except ResourceNotFoundError:  # the queue does not exist yet: create it, send again
                self._create(client, queue)
                client.send_message(text, visibility_timeout=visibility_timeout)
        except AzureError as exc:
            with self._lock:
                self._down_until = time.monotonic() + self._pause
            raise QueueUnavailable(f"the queue service did not take the message: {type(exc).__name__}") from exc

    def client(self, queue: str) -> Any:
        """The configured ``QueueClient`` (operator commands and tests: peek, receive, clear)."""
        return self._client(queue)
