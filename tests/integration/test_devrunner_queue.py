"""Dev runner queue triggers against Azurite: encoding, retries and the poison queue.

Uses the test profile's Azurite (``local/services.py``, ports moved by ``LOCAL_PORT_OFFSET``), so parallel runs
with different offsets never share a port; each test has its own queues.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from local.devrunner import DevRunner
from tests.unit import devrunner_sample_app as sample

pytestmark = pytest.mark.integration

MAX_DEQUEUE = 4  # not the default 5, so the test proves host.json is read


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def azurite(service_settings: dict[str, str]) -> str:
    """The connection string of the test profile's Azurite (its ports follow ``LOCAL_PORT_OFFSET``); every test
    works in queues of its own name."""
    return service_settings["AzureWebJobsStorage"]


def make_runner(connection: str, tmp_path: Path, queue: str, poison_trigger_queue: str,
                encoding: str = "base64") -> DevRunner:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0", "extensions": {"queues": {
        "maxDequeueCount": MAX_DEQUEUE, "visibilityTimeout": "00:00:00", "batchSize": 4,
        "maxPollingInterval": "00:00:01", "messageEncoding": encoding,
    }}}))
    environ = {"AzureWebJobsStorage": connection, "SAMPLE_QUEUE": queue,
               "SAMPLE_POISON_QUEUE": poison_trigger_queue}
    return DevRunner(sample.app, port=0, host_json=host_json, environ=environ, timers=False)


def new_queue_name() -> str:
    return f"devrunner-{uuid.uuid4().hex[:12]}"


def base64_client(connection: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        connection, name,
        message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy(),
    )


def queue_length(connection: str, name: str) -> int:
    return QueueClient.from_connection_string(connection, name).get_queue_properties().approximate_message_count


@pytest.fixture(autouse=True)
def clean_sample() -> Iterator[None]:
    sample.reset()
    yield
    sample.reset()


def test_base64_message_is_delivered_and_deleted(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    with make_runner(azurite, tmp_path, queue, f"unused-{queue}"):
        producer = base64_client(azurite, queue)
        wait_for(lambda: _exists(azurite, queue))  # the runner creates the queue
        producer.send_message('{"id": "o-1", "text": "héllo"}')
        wait_for(lambda: len(sample.QUEUE_BODIES) == 1)
        wait_for(lambda: queue_length(azurite, queue) == 0)
    assert [('{"id": "o-1", "text": "héllo"}'.encode(), 1)] == sample.QUEUE_BODIES


def test_failing_message_is_retried_then_poisoned_with_original_body(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    producer = base64_client(azurite, queue)
    producer.create_queue()
    producer.send_message("please fail")
    with make_runner(azurite, tmp_path, queue, f"unused-{queue}"):
        wait_for(lambda: _exists(azurite, f"{queue}-poison") and queue_length(azurite, f"{queue}-poison") == 1)
        time.sleep(1.5)  # no further attempt may follow
    assert [(b"please fail", n) for n in range(1, MAX_DEQUEUE + 1)] == sample.QUEUE_BODIES
    assert queue_length(azurite, queue) == 0
    poisoned = base64_client(azurite, f"{queue}-poison").receive_messages()
    assert [m.content for m in poisoned] == ["please fail"]


def test_poison_queue_with_a_trigger_is_polled(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    producer = base64_client(azurite, queue)
    producer.create_queue()
    producer.send_message("fail loudly")
    with make_runner(azurite, tmp_path, queue, f"{queue}-poison"):
        wait_for(lambda: sample.POISON_BODIES == [b"fail loudly"])
    assert len(sample.QUEUE_BODIES) == MAX_DEQUEUE


def test_plain_text_message_is_poisoned_without_invocation(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    plain = QueueClient.from_connection_string(azurite, queue)  # default policy: no base64
    plain.create_queue()
    plain.send_message("not base64!")
    with make_runner(azurite, tmp_path, queue, f"unused-{queue}"):
        wait_for(lambda: _exists(azurite, f"{queue}-poison") and queue_length(azurite, f"{queue}-poison") == 1)
    assert sample.QUEUE_BODIES == []
    raw = QueueClient.from_connection_string(azurite, f"{queue}-poison").receive_messages()
    assert [m.content for m in raw] == ["not base64!"]


def test_message_encoding_none(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    plain = QueueClient.from_connection_string(azurite, queue)
    plain.create_queue()
    plain.send_message("plain text")
    with make_runner(azurite, tmp_path, queue, f"unused-{queue}", encoding="none"):
        wait_for(lambda: sample.QUEUE_BODIES == [(b"plain text", 1)])


def _exists(connection: str, name: str) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        QueueClient.from_connection_string(connection, name).get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True
