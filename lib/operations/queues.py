"""Queue access for operators and health checks: properties, peek, receive, re-enqueue.

Clients use the same base64 encode/decode policy as :mod:`lib.queues` (the host's), and the same
storage settings (``AzureWebJobsStorage`` connection string locally, ``__queueServiceUri`` with the
managed identity in Azure). Unlike :class:`lib.queues.QueueProducer` they never create a queue, and
take azure-core options (``retry_total``, ``connection_timeout``...) so a health check stays short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.queues import (
    CALL_RECORDS_QUEUE,
    LAUNCH_FOLLOWUP_QUEUE,
    SMS_OUTBOX_QUEUE,
    VISIT_EVENTS_QUEUE,
    decode,
    encode,
    poison_queue,
)
from lib.settings import Settings

REPORT_UPDATES_QUEUE = "report-updates"

#: The queues an operator watches: the work queues and the host's poison queues, including the poison queue
#: of the trigger that reads ``visit-events-poison`` (a message it cannot read ends there).
WATCHED_QUEUES = (
    SMS_OUTBOX_QUEUE,
    VISIT_EVENTS_QUEUE,
    poison_queue(SMS_OUTBOX_QUEUE),
    poison_queue(VISIT_EVENTS_QUEUE),
    poison_queue(poison_queue(VISIT_EVENTS_QUEUE)),
    REPORT_UPDATES_QUEUE,
    poison_queue(REPORT_UPDATES_QUEUE),
    CALL_RECORDS_QUEUE,
    poison_queue(CALL_RECORDS_QUEUE),
    LAUNCH_FOLLOWUP_QUEUE,
    poison_queue(LAUNCH_FOLLOWUP_QUEUE),
)


def queue_client(settings: Settings, queue: str, **options: Any) -> Any:
    """A ``QueueClient`` for ``queue`` with the base64 policies; ``options`` go to the SDK client.

    Raises:
        RuntimeError: no queue storage is configured.
    """
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    policies = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
    if settings.storage_connection:
        return QueueClient.from_connection_string(settings.storage_connection, queue, **policies, **options)
    if settings.storage_queue_uri:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
        return QueueClient(settings.storage_queue_uri, queue, credential=credential, **policies, **options)
    raise RuntimeError("no queue storage configured: set AzureWebJobsStorage")


def queue_service_client(settings: Settings, *, parallel_reads: int | None = None, **options: Any) -> Any:
    """A ``QueueServiceClient`` for the app's storage: every queue it hands out (``get_queue_client``) shares
    its connection pool and credential. ``options`` go to the SDK client.

    ``parallel_reads``: how many requests the caller sends at the same time. The SDK's pool keeps 10
    connections; more callers at once would each open one and have it dropped afterwards, so the next round
    connects again. Given, the pool keeps that many (then ``connection_timeout`` and ``read_timeout`` go to the
    transport, since the SDK leaves a given transport's settings alone).

    Raises:
        RuntimeError: no queue storage is configured.
    """
    from azure.storage.queue import QueueServiceClient

    if parallel_reads is not None:
        options["transport"] = _pooled_transport(parallel_reads, options.pop("connection_timeout", None),
                                                 options.pop("read_timeout", None))
    if settings.storage_connection:
        return QueueServiceClient.from_connection_string(settings.storage_connection, **options)
    if settings.storage_queue_uri:
        from azure.identity import DefaultAzureCredential

        return QueueServiceClient(settings.storage_queue_uri, credential=DefaultAzureCredential(), **options)
    raise RuntimeError("no queue storage configured: set AzureWebJobsStorage")


def _pooled_transport(connections: int, connection_timeout: float | None, read_timeout: float | None) -> Any:
    """An azure-core requests transport whose session keeps ``connections`` connections per host, with the
    SDK's own session settings otherwise (no urllib3 retries: the pipeline's retry policy decides)."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=connections,
                          max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    timeouts = {key: value for key, value in (("connection_timeout", connection_timeout),
                                              ("read_timeout", read_timeout)) if value is not None}
    return RequestsTransport(session=session, session_owner=True, **timeouts)


def depth(client: Any) -> int:
    """The approximate number of messages in the queue; 0 when the queue does not exist yet."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        return 0


@dataclass(frozen=True)
class PeekedMessage:
    """One queue message as an operator sees it: IDs only (our messages carry no PHI).

    ``body`` is the decoded JSON object, or ``None`` when the message is not one of ours (then
    ``malformed`` is True and the body is not shown).
    """

    message_id: str
    dequeue_count: int
    inserted_utc: str | None
    body: dict[str, Any] | None

    @property
    def malformed(self) -> bool:
        """True when the body is not a JSON object."""
        return self.body is None


def _decoded(content: Any) -> dict[str, Any] | None:
    try:
        return decode(content)
    except (ValueError, UnicodeDecodeError, TypeError):
        return None


def peek(client: Any, *, limit: int = 32) -> list[PeekedMessage]:
    """Up to ``limit`` (at most 32, the service's cap) messages, without changing them."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        messages = client.peek_messages(max_messages=max(1, min(limit, 32)))
    except ResourceNotFoundError:
        return []
    return [
        PeekedMessage(
            message_id=m.id,
            dequeue_count=int(m.dequeue_count or 0),
            inserted_utc=m.inserted_on.isoformat() if m.inserted_on else None,
            body=_decoded(m.content),
        )
        for m in messages
    ]


def send(client: Any, message: dict[str, Any]) -> None:
    """Enqueue ``message`` (JSON, base64 on the wire), creating the queue when missing."""
    from azure.core.exceptions import ResourceExistsError

    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    client.send_message(encode(message))
