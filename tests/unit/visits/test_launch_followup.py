"""The launch's follow-up (lib/visits/launch_followup.py): a new meeting's click record and subscription leave the
launch as one queue message, are applied once per message however often it comes, and are done inline when the
queue refuses the message."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from lib.models import Appointment
from lib.queues import LAUNCH_FOLLOWUP_QUEUE, MalformedMessage, encode
from lib.visits.events import VisitEventRecorder
from lib.visits.launch import launch_attempt
from lib.visits.launch_followup import FollowUp, LaunchFollowUp
from lib.visits.pages import Redirect
from tests.unit.visits import fakes
from tests.unit.visits.test_launch import CSN, NOW, World, cookie_of


class Watches:
    """Records the visits whose meeting was subscribed to."""

    def __init__(self) -> None:
        self.watched: list[str] = []

    def watch(self, appointment: Appointment, *, source: str = "auto") -> None:
        assert appointment.meeting is not None and source == "auto"
        self.watched.append(appointment.key)


class DownQueue:
    def send(self, queue: str, message: Any, *, visibility_timeout: int | None = None) -> None:
        raise ConnectionError("queue service down")


def followup_world(queue: Any = None) -> tuple[World, Watches, LaunchFollowUp, Any]:
    watches = Watches()
    queue = queue if queue is not None else fakes.Queue()
    world = World()
    events = VisitEventRecorder(visit_events=world.events, queues=world.queue, clock=world.clock)  # type: ignore[arg-type]
    followup = LaunchFollowUp(queues=queue, appointments=world.appointments, events=events,  # type: ignore[arg-type]
                              presence=watches)
    world.service._followup = followup
    return world, watches, followup, queue


def launch(world: World) -> tuple[Redirect, str]:
    result = world.begin()
    state = world.authorize_params(result)["state"]  # type: ignore[arg-type]
    return world.service.complete({"code": "c", "state": state}, cookie_of(result)), state


def test_a_launch_into_a_new_meeting_queues_one_message_and_stores_no_click_before_the_redirect():
    world, watches, _, queue = followup_world()
    redirect, state = launch(world)

    assert redirect.location == "https://teams.example.org/l/meetup-join/m1"
    assert world.events.docs == {} and watches.watched == []  # nothing of it on the launch's path
    ((name, message),) = queue.sent
    assert name == LAUNCH_FOLLOWUP_QUEUE
    assert message == {"appointmentKey": f"env1|{CSN}", "watch": True, "source": "auto",
                       "click": {"participantId": "E1001", "attempt": launch_attempt(state), "at": NOW.isoformat()}}
    assert state not in encode(message)  # the OAuth state itself never leaves the launch


def test_the_message_stores_the_click_at_the_launch_time_and_subscribes_once_however_often_it_comes():
    world, watches, followup, queue = followup_world()
    launch(world)
    ((_, message),) = queue.sent
    world.clock.set(NOW + timedelta(minutes=3))  # the trigger runs later

    for _ in range(2):  # the queue delivers at least once
        assert followup.handle(FollowUp.from_message(encode(message))) == "done"

    (event,) = world.events.docs.values()
    assert (event.type, event.role, event.participant_id, event.writeback, event.at_utc) == (
        "clinician_launched", "provider", "E1001", "none", NOW)
    assert watches.watched == [f"env1|{CSN}", f"env1|{CSN}"]  # PresenceSubscriptions.watch is create-once


def test_when_the_queue_refuses_the_message_the_click_and_subscription_happen_at_once():
    world, watches, _, _ = followup_world(DownQueue())
    redirect, _ = launch(world)

    assert redirect.location == "https://teams.example.org/l/meetup-join/m1"
    (event,) = world.events.docs.values()
    assert event.type == "clinician_launched" and watches.watched == [f"env1|{CSN}"]


def test_a_relaunch_into_the_stored_meeting_records_its_click_at_once_and_queues_nothing():
    world, watches, _, queue = followup_world()
    launch(world)
    queue.sent.clear()
    launch(world)

    assert queue.sent == [] and watches.watched == []
    (event,) = world.events.docs.values()  # the second launch's click; the first one waits in its message
    assert event.type == "clinician_launched"


def test_a_message_for_a_deleted_visit_is_done_without_effect():
    world, watches, followup, _ = followup_world()
    gone = FollowUp("env1|404", True, None)
    assert followup.handle(gone) == "gone" and watches.watched == [] and world.events.docs == {}


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"watch": true}', b'{"appointmentKey": "no-separator"}',
    b'{"appointmentKey": "env1|1", "click": {"participantId": "E1"}}',
    b'{"appointmentKey": "env1|1", "watch": true, "source": "carrier-pigeon"}',
    b'{"appointmentKey": "env1|1", "click": {"participantId": "E1", "attempt": "a", "at": "yesterday"}}',
    b'{"appointmentKey": "env1|1", "click": {"participantId": "E1", "attempt": "a", "at": "2026-03-03T19:00:00"}}',
])
def test_a_malformed_message_is_refused_for_the_poison_queue(body):
    with pytest.raises(MalformedMessage):
        FollowUp.from_message(body)
