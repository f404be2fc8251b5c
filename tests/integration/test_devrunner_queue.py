"""Dev runner queue triggers against Azurite: encoding, retries and the poison queue.

Starts its own in-memory Azurite on 127.0.0.1:10200-10202 and stops it afterwards.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from local.devrunner import DevRunner
from tests.unit import devrunner_sample_app as sample

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_CANDIDATES = [REPO_ROOT / "node_modules/.bin/azurite", Path("/tmp/npmtest/node_modules/.bin/azurite")]
QUEUE_PORT = 10201
CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    f"QueueEndpoint=http://127.0.0.1:{QUEUE_PORT}/devstoreaccount1;"
)
MAX_DEQUEUE = 4  # not the default 5, so the test proves host.json is read


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    executable = next((p for p in AZURITE_CANDIDATES if p.exists()), None)
    if executable is None:
        pytest.skip("azurite is not installed (npm ci)")
    workdir = tmp_path_factory.mktemp("azurite")
    process = subprocess.Popen(
        [str(executable), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--inMemoryPersistence",
         "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
         "--blobPort", "10200", "--queuePort", str(QUEUE_PORT), "--tablePort", "10202"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", QUEUE_PORT), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Azurite did not start") from None
                time.sleep(0.2)
        yield CONNECTION_STRING
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_runner(tmp_path: Path, queue: str, poison_trigger_queue: str, encoding: str = "base64") -> DevRunner:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0", "extensions": {"queues": {
        "maxDequeueCount": MAX_DEQUEUE, "visibilityTimeout": "00:00:00", "batchSize": 4,
        "maxPollingInterval": "00:00:01", "messageEncoding": encoding,
    }}}))
    environ = {"AzureWebJobsStorage": CONNECTION_STRING, "SAMPLE_QUEUE": queue,
               "SAMPLE_POISON_QUEUE": poison_trigger_queue}
    return DevRunner(sample.app, port=0, host_json=host_json, environ=environ, timers=False)


def new_queue_name() -> str:
    return f"devrunner-{uuid.uuid4().hex[:12]}"


def base64_client(name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        CONNECTION_STRING, name,
        message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy(),
    )


def queue_length(name: str) -> int:
    return QueueClient.from_connection_string(CONNECTION_STRING, name).get_queue_properties().approximate_message_count


@pytest.fixture(autouse=True)
def clean_sample() -> Iterator[None]:
    sample.reset()
    yield
    sample.reset()


def test_base64_message_is_delivered_and_deleted(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    with make_runner(tmp_path, queue, f"unused-{queue}"):
        producer = base64_client(queue)
        wait_for(lambda: _exists(queue))  # the runner creates the queue
        producer.send_message('{"id": "o-1", "text": "héllo"}')
        wait_for(lambda: len(sample.QUEUE_BODIES) == 1)
        wait_for(lambda: queue_length(queue) == 0)
    assert [('{"id": "o-1", "text": "héllo"}'.encode(), 1)] == sample.QUEUE_BODIES


def test_failing_message_is_retried_then_poisoned_with_original_body(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    producer = base64_client(queue)
    producer.create_queue()
    producer.send_message("please fail")
    with make_runner(tmp_path, queue, f"unused-{queue}"):
        wait_for(lambda: _exists(f"{queue}-poison") and queue_length(f"{queue}-poison") == 1)
        time.sleep(1.5)  # no further attempt may follow
    assert [(b"please fail", n) for n in range(1, MAX_DEQUEUE + 1)] == sample.QUEUE_BODIES
    assert queue_length(queue) == 0
    poisoned = base64_client(f"{queue}-poison").receive_messages()
    assert [m.content for m in poisoned] == ["please fail"]


def test_poison_queue_with_a_trigger_is_polled(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    producer = base64_client(queue)
    producer.create_queue()
    producer.send_message("fail loudly")
    with make_runner(tmp_path, queue, f"{queue}-poison"):
        wait_for(lambda: sample.POISON_BODIES == [b"fail loudly"])
    assert len(sample.QUEUE_BODIES) == MAX_DEQUEUE


def test_plain_text_message_is_poisoned_without_invocation(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    plain = QueueClient.from_connection_string(CONNECTION_STRING, queue)  # default policy: no base64
    plain.create_queue()
    plain.send_message("not base64!")
    with make_runner(tmp_path, queue, f"unused-{queue}"):
        wait_for(lambda: _exists(f"{queue}-poison") and queue_length(f"{queue}-poison") == 1)
    assert sample.QUEUE_BODIES == []
    raw = QueueClient.from_connection_string(CONNECTION_STRING, f"{queue}-poison").receive_messages()
    assert [m.content for m in raw] == ["not base64!"]


def test_message_encoding_none(azurite: str, tmp_path: Path) -> None:
    queue = new_queue_name()
    plain = QueueClient.from_connection_string(CONNECTION_STRING, queue)
    plain.create_queue()
    plain.send_message("plain text")
    with make_runner(tmp_path, queue, f"unused-{queue}", encoding="none"):
        wait_for(lambda: sample.QUEUE_BODIES == [(b"plain text", 1)])


def _exists(name: str) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        QueueClient.from_connection_string(CONNECTION_STRING, name).get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True
