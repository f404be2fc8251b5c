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


#: The path prefix of Epic's write-back web service (the stand-in's faults are scripted on it).
WRITEBACK_PREFIX = "/api/epic/2018/Telehealth"


def epic_writeback_environment(app: Any, environment_id: str, settings: dict[str, str], **overrides: Any) -> Any:
    """A test environment whose write-back reaches the Epic stand-in: its FHIR base URL is the stand-in's and our
    client is registered there (the backend token is signed with our keys, served at ``PUBLIC_BASE_URL``: the app
    must be running). It takes the URL over from any other environment; give it back with
    :func:`release_epic_url` when done."""
    import uuid

    from tests.support.environments import make_environment

    client_id = f"vv-{uuid.uuid4().hex[:8]}"
    requests.post(f"{settings['EPIC_STANDIN_URL']}/_standin/clients", verify=settings["REQUESTS_CA_BUNDLE"],
                  timeout=10, json={"client_id": client_id,
                                    "jwks_url": f"{settings['PUBLIC_BASE_URL']}/api/.well-known/jwks.json",
                                    "redirect_uris": [f"{settings['PUBLIC_BASE_URL']}/api/launch/callback"]}
                  ).raise_for_status()
    for other in app.repos.environments.all():  # a launch is routed by its URL: this environment takes it over
        if settings["EPIC_STANDIN_ISS"] in other.fhir_base_urls:
            release_epic_url(app, other.id)
    return make_environment(app, environment_id, fhir_base_urls=(settings["EPIC_STANDIN_ISS"],),
                            epic_client_id=client_id, **overrides)


def release_epic_url(app: Any, environment_id: str) -> None:
    """Remove every FHIR base URL (and their approvals) from a test environment."""
    import dataclasses

    config = app.repos.environments.get(environment_id, fresh=True)
    if config is not None:
        app.repos.environments.put(dataclasses.replace(config, fhir_base_urls=(), approvals={}, approvers={}))


def refused_writeback(app: Any, env: Any, settings: dict[str, str], *, csn: str, participant_id: str = "E1001",
                      role: str = "provider", event_type: str = "connected", status: int = 400) -> Any:
    """A participant event Epic refused for good: the stand-in answers ``status`` once (with its reason in the
    body), the real ``writeback`` trigger handles the event's real queue message. Returns the stored event."""
    from datetime import UTC, datetime, timedelta

    from lib.models import Appointment

    epic, ca = settings["EPIC_STANDIN_URL"], settings["REQUESTS_CA_BUNDLE"]
    requests.post(f"{epic}/_standin/faults", verify=ca, timeout=10,
                  json={"path_prefix": WRITEBACK_PREFIX, "responses": [status]}).raise_for_status()
    try:
        start = datetime.now(UTC).replace(microsecond=0)
        visit = Appointment(env.id, csn, "booked", start, start + timedelta(minutes=30), 30, "America/New_York")
        event = app.visit_events.record(visit, event_type=event_type, role=role, participant_id=participant_id,
                                        attempt="1")
        drain_writeback(app, visit.key)
    finally:
        requests.delete(f"{epic}/_standin/faults", verify=ca, timeout=10)
    return app.repos.visit_events.get(event.appointment_key, event.id)
