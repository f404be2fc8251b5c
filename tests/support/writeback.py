"""Running the real write-back and launch follow-up triggers on one visit's queue messages, and reading what Epic
received."""

from __future__ import annotations

from typing import Any

import requests


def drain_writeback(app: Any, appointment_key: str) -> list[dict[str, Any]]:
    """Run the real ``writeback`` trigger on this visit's messages from Azurite's ``visit-events`` queue."""
    from azure.functions.queue import QueueMessage

    from functions.writeback import writeback
    from lib.queues import decode

    client = app.queues.client("visit-events")
    handled = []
    for message in client.receive_messages(max_messages=32, visibility_timeout=2):
        body = decode(message.content)
        if body.get("appointmentKey") != appointment_key:
            continue
        writeback.build().get_user_function()(QueueMessage(id=message.id, body=message.content.encode(),
                                                           dequeue_count=message.dequeue_count))
        client.delete_message(message)
        handled.append(body)
    return handled


def drain_launch_followup(app: Any, appointment_key: str) -> int:
    """Run the real ``launch_followup`` trigger on this visit's messages from Azurite's ``launch-followup`` queue;
    returns how many were handled."""
    from azure.functions.queue import QueueMessage

    from functions.launch_followup import launch_followup
    from lib.queues import LAUNCH_FOLLOWUP_QUEUE, decode

    client = app.queues.client(LAUNCH_FOLLOWUP_QUEUE)
    handled = 0
    for message in client.receive_messages(max_messages=32, visibility_timeout=2):
        if decode(message.content).get("appointmentKey") != appointment_key:
            continue
        launch_followup.build().get_user_function()(QueueMessage(id=message.id, body=message.content.encode(),
                                                                 dequeue_count=message.dequeue_count))
        client.delete_message(message)
        handled += 1
    return handled


def epic_status_calls(epic_url: str, ca: str, conference_id: str) -> list[dict[str, Any]]:
    """The ``SetExternalConnectionStatus`` calls the Epic stand-in received for one conference ID."""
    calls = requests.get(f"{epic_url}/_standin/connection-status", verify=ca, timeout=10).json()
    return [c for c in calls if c["ConferenceID"] == conference_id]
