"""Malformed queue messages through the dev runner (issue 16): valid base64 that is not what the trigger
reads goes to the poison queue and is counted (``vv.queue.malformed``, alert ``malformed-queue-messages``),
never dropped with only a log line."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import time
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError

from lib.observability import metrics
from lib.operations.queues import queue_client
from local.devrunner import DevRunner

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def private_app():
    """A private copy of ``function_app`` (``azure-functions`` indexes an app object only once)."""
    spec = importlib.util.spec_from_file_location("function_app_queue_faults", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.mark.parametrize("queue", ["sms-outbox", "visit-events", "visit-events-poison"])
def test_a_malformed_message_goes_on_to_the_poison_queue_and_is_counted(app, tmp_path, queue):
    host = json.loads((ROOT / "host.json").read_text())
    host["extensions"]["queues"]["visibilityTimeout"] = "00:00:00"  # retry at once: 5 attempts in seconds
    (tmp_path / "host.json").write_text(json.dumps(host))
    marker = uuid.uuid4().hex
    bodies = [json.dumps({"unexpected": marker}), f"not json {marker}", json.dumps([marker])]  # no "id" field
    work, poison = queue_client(app.settings, queue), queue_client(app.settings, f"{queue}-poison")
    # visit-events-poison has a trigger of its own, which fails on the same message and passes it on within
    # seconds: the message is looked for there too (not dropped either way).
    onward = queue_client(app.settings, f"{queue}-poison-poison") if queue == "visit-events" else None
    ends = [c for c in (poison, onward) if c is not None]
    for client in (work, *ends):
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
    for body in bodies:
        work.send_message(body)
    before = metrics.total(metrics.QUEUE_MALFORMED, queue=queue)
    runner = DevRunner(private_app(), port=0, host_json=tmp_path / "host.json", timers=False, queues=True)
    found: list[str] = []
    with runner:
        deadline = time.monotonic() + 90
        while len(found) < len(bodies) and time.monotonic() < deadline:
            found += [body for end in ends for body in _take_marked(end, marker)]
            time.sleep(0.3)
    assert sorted(found) == sorted(bodies)
    assert metrics.total(metrics.QUEUE_MALFORMED, queue=queue) - before == 5 * len(bodies)


def _take_marked(poison, marker: str) -> list[str]:
    """Receive every visible message of ``poison`` (not only the first 32 a peek shows: other tests poison
    messages too) and delete the ones carrying ``marker``; the others are visible again a second later."""
    taken = []
    for message in poison.receive_messages(messages_per_page=32, visibility_timeout=1):
        if marker in message.content:
            taken.append(message.content)
            poison.delete_message(message)
    return taken
