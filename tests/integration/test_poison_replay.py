"""``./dev ops queue poison``: every work queue's poison messages are listed and replayed, and the replayed work
is done once even when the message comes back twice (a replay whose delete was lost, two operators).

Each poisoned message is put in ``<queue>-poison`` as the host leaves it (the same base64 body), the replay
goes through the real command line (``local.ops``), the real queue trigger runs the replayed message from
Azurite, and the test checks what the trigger's work left: the Graph stand-in's subscriptions and the stored
click, Epic's connection statuses, the report document, the ACS stand-in's texts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from lib.models import Appointment
from lib.operations.queues import queue_client
from lib.queues import decode, encode, poison_queue
from local import ops
from tests.integration.test_presence import (  # noqa: F401 (module fixtures: the dev runner, URLs, environment)
    CLIN,
    PAT,
    control,
    drain,
    env,
    epic_calls,
    new_visit,
    per_participant,
    runner,
    script,
    urls,
)

pytestmark = pytest.mark.integration


def run_ops(app: Any, capsys: Any, *argv: str) -> tuple[int, Any, str]:
    code = ops.run(list(argv), services=app)
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def poison(app: Any, queue: str, body: dict[str, Any] | str) -> str:
    """Leave ``body`` in ``<queue>-poison`` as the host does after 5 failed attempts; returns its message ID."""
    from azure.core.exceptions import ResourceExistsError

    client = queue_client(app.settings, poison_queue(queue))
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    return str(client.send_message(body if isinstance(body, str) else encode(body)).id)


def deliver(app: Any, queue: str, trigger: Any, belongs: Callable[[dict[str, Any]], bool]) -> int:
    """Run the real queue ``trigger`` on the visible messages of ``queue`` that ``belongs`` picks (others are
    left for their owners); returns how many it ran."""
    client = queue_client(app.settings, queue)
    handler = trigger.build().get_user_function()
    handled = 0
    for _ in range(20):  # other tests' messages stay hidden for 3 s, so each round sees new ones
        received = list(client.receive_messages(max_messages=32, visibility_timeout=3))
        if not received:
            break
        for message in received:
            if not belongs(decode(message.content)):
                continue
            handler(QueueMessage(id=message.id, body=message.content.encode(),
                                 dequeue_count=message.dequeue_count))
            client.delete_message(message)
            handled += 1
    return handled


def in_poison(app: Any, queue: str, env_id: str) -> list[str]:
    """The IDs of the poison messages of ``env_id`` left in ``<queue>-poison``."""
    return [m["messageId"] for m in _listed(app, queue, env_id)]


def _listed(app: Any, queue: str, env_id: str) -> list[dict[str, Any]]:
    from lib.operations.queue_poison import list_poison

    return [m.to_json() for m in list_poison(app, queue, env_id)]


def replay_twice(app: Any, capsys: Any, queue: str, env_id: str, body: dict[str, Any],
                 then: Callable[[], None]) -> None:
    """Replay ``body`` from the poison queue and run ``then`` (the trigger); then the same again, as a lost
    delete or a second operator leaves a second copy of the message."""
    for _ in range(2):
        message_id = poison(app, queue, body)
        code, result, _ = run_ops(app, capsys, "queue", "poison", "replay", "--queue", queue, "--all", "--env", env_id)
        assert code == 0 and result == {message_id: "requeued"}
        assert in_poison(app, queue, env_id) == []
        then()


def test_a_poisoned_launch_followup_is_listed_replayed_and_subscribes_the_visit_once(
        app: Any, env: Any, urls: dict[str, str], capsys: Any) -> None:  # noqa: F811
    from functions.launch_followup import launch_followup
    from lib.store.graph_subscriptions import subscription_doc_id
    from lib.visits.launch_followup import FollowUp, LaunchClick

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    appointment = app.repos.appointments.create(Appointment(env.id, str(uuid.uuid4().int % 10**9), "booked", start,
                                                            start + timedelta(minutes=30), 30, "America/New_York"))
    appointment = app.meetings.ensure(env, appointment, watch=False)  # as a launch does: the follow-up subscribes
    click = LaunchClick("E1001", uuid.uuid4().hex, datetime.now(UTC).replace(microsecond=0))
    body = FollowUp(appointment.key, True, click, "corr-poison-1").to_message()
    message_id = poison(app, "launch-followup", body)

    code, listed, _ = run_ops(app, capsys, "queue", "poison", "list", "--queue", "launch-followup", "--env", env.id)
    assert code == 0 and [m["messageId"] for m in listed] == [message_id]
    assert listed[0]["queue"] == "launch-followup-poison" and listed[0]["appointmentKey"] == appointment.key
    assert listed[0]["replay"] == f"./dev ops queue poison replay --queue launch-followup --message {message_id}"
    code, everything, _ = run_ops(app, capsys, "queue", "poison", "list", "--env", env.id)  # every queue's
    assert [m["messageId"] for m in everything] == [message_id]
    assert app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key)) is None  # the lost work

    code, result, _ = run_ops(app, capsys, "queue", "poison", "replay", "--queue", "launch-followup", "--message",
                              message_id)
    assert code == 0 and result == {message_id: "requeued"}
    picked = lambda b: b.get("appointmentKey") == appointment.key  # noqa: E731
    assert deliver(app, "launch-followup", launch_followup, picked) == 1
    sub = app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))
    assert sub is not None and sub.state == "active" and sub.graph_id

    code, again, err = run_ops(app, capsys, "queue", "poison", "replay", "--queue", "launch-followup", "--message",
                               message_id)  # replayed already: nothing sent, and it says so
    assert code == 1 and again == {message_id: "missing"}
    assert err.startswith(f"ops: no message {message_id} in launch-followup-poison (replayed already")
    assert deliver(app, "launch-followup", launch_followup, picked) == 0

    def run_trigger() -> None:
        assert deliver(app, "launch-followup", launch_followup, picked) == 1

    replay_twice(app, capsys, "launch-followup", env.id, body, run_trigger)  # the same message back twice more
    graph = [s for s in control(urls, "graph", "GET", "subscriptions") if s.get("resource") == sub.resource]
    assert len(graph) == 1 and app.presence_subscriptions._repo.get(sub.id).graph_id == sub.graph_id
    clicks = [e for e in app.repos.visit_events.for_appointment(appointment.key) if e.type == "clinician_launched"]
    assert [(e.participant_id, e.at_utc) for e in clicks] == [("E1001", click.at_utc)]


def test_a_poisoned_after_meeting_read_is_replayed_and_writes_the_missed_attendance_to_epic_once(
        app: Any, env: Any, urls: dict[str, str], capsys: Any) -> None:  # noqa: F811
    from functions.call_records import call_records

    appointment = new_visit(app, env)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    def at(minute: int) -> str:
        return (t + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")

    script(urls, appointment, [{"action": "start", "at": at(0)}, {"action": "join", "participant": CLIN, "at": at(0)}])
    script(urls, appointment, [{"action": "join", "participant": PAT, "at": at(1)},  # both notifications lost
                               {"action": "leave", "participant": PAT, "at": at(4)}], delivery="drop")
    script(urls, appointment, [{"action": "leave", "participant": CLIN, "at": at(6)}, {"action": "end", "at": at(6)}])
    app.queues.client("call-records").clear_messages()  # the roster's own look: this visit's is the poisoned one
    drain(app, appointment.key)
    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"]}

    picked = lambda b: b.get("appointmentKey") == appointment.key  # noqa: E731
    def run_trigger() -> None:
        assert deliver(app, "call-records", call_records, picked) == 1
        drain(app, appointment.key)  # the write-back of what the call record added

    replay_twice(app, capsys, "call-records", env.id, {"appointmentKey": appointment.key}, run_trigger)

    assert per_participant(epic_calls(urls, appointment.appointment_id)) == {"E1001": ["1", "2"],
                                                                              "patient": ["1", "2"]}
    added = [e for e in app.repos.visit_events.for_appointment(appointment.key) if e.source == "call_record"]
    assert sorted(e.type for e in added) == ["connected", "disconnected"]


def test_a_poisoned_report_update_is_replayed_and_recorded_once(app: Any, env: Any, capsys: Any) -> None:  # noqa: F811
    from functions.reports import report_update
    from lib.store.reports import ReportVisitRepository

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    appointment = app.repos.appointments.create(Appointment(env.id, str(uuid.uuid4().int % 10**9), "booked", start,
                                                            start + timedelta(minutes=30), 30, "America/New_York"))
    reports = ReportVisitRepository(app.store)
    assert reports.get(appointment.key) is None
    picked = lambda b: b.get("appointmentKey") == appointment.key  # noqa: E731
    versions = []

    def run_trigger() -> None:
        assert deliver(app, "report-updates", report_update, picked) == 1
        versions.append(reports.get(appointment.key)["version"])

    replay_twice(app, capsys, "report-updates", env.id, {"type": "appointment", "appointmentKey": appointment.key},
                 run_trigger)
    assert versions == [1, 1]  # recorded by the first, unchanged by the second


def test_a_poisoned_confirmation_text_is_replayed_and_sent_once(
        app: Any, env: Any, capsys: Any, clock: Any, service_settings: dict[str, str]) -> None:  # noqa: F811
    from functions.reminders import sms_outbox
    from lib.models import appointment_key
    from local.siu_builder import siu
    from tests.support.calls import msa, post_hl7
    from tests.support.standins import AcsStandin

    now = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # Sunday noon in New York: no quiet hours
    clock.set(now)
    csn = str(uuid.uuid4().int % 10**9)
    start = now + timedelta(days=4)
    key = appointment_key(env.id, csn)
    assert msa(post_hl7(env.id, siu("S12", csn=csn, start=start, control_id=uuid.uuid4().hex[:12],
                                    sent=now, phone="(201)555-0165")))[1] == "AA"
    confirmation = [i for i in app.repos.outbox.for_appointment(key) if i.state == "pending" and i.due_utc <= now]
    assert len(confirmation) == 1
    text_id = confirmation[0].id
    # The host poisoned the confirmation's message: the intake's copy is not delivered.
    deliver(app, "sms-outbox", _Nothing(), lambda b: b.get("id") == text_id)
    acs = AcsStandin(service_settings)
    assert acs.texts(env.id) == []

    picked = lambda b: b.get("id") == text_id  # noqa: E731
    replay_twice(app, capsys, "sms-outbox", env.id, {"id": text_id},
                 lambda: deliver(app, "sms-outbox", sms_outbox, picked) == 1 or pytest.fail("not delivered"))
    assert [t["tag"] for t in acs.texts(env.id)] == [text_id]
    assert app.repos.outbox.get(text_id).state == "sent"


class _Nothing:
    """A trigger that does nothing: the intake's own message is taken off the queue unread."""

    def build(self) -> Any:
        return self

    def get_user_function(self) -> Callable[[QueueMessage], None]:
        return lambda message: None


def test_a_message_its_trigger_cannot_read_is_listed_with_why_and_never_replayed(
        app: Any, env: Any, capsys: Any) -> None:  # noqa: F811
    bad_click = poison(app, "launch-followup", {"appointmentKey": f"{env.id}|123", "click": {"attempt": "a"}})
    bad_update = poison(app, "report-updates", {"type": "unknown", "appointmentKey": f"{env.id}|123"})
    listed = {m["messageId"]: m for m in _listed(app, "launch-followup", env.id) + _listed(app, "report-updates",
                                                                                           env.id)}
    assert listed[bad_click]["replay"].startswith("malformed (click without participantId, attempt and at)")
    assert listed[bad_update]["replay"].startswith("malformed (unknown report update type)")

    for queue, message_id in (("launch-followup", bad_click), ("report-updates", bad_update)):
        code, result, err = run_ops(app, capsys, "queue", "poison", "replay", "--queue", queue, "--all", "--env",
                                    env.id)
        assert code == 1 and result == {message_id: "malformed"}
        assert f"message {message_id} left in {queue}-poison: its trigger cannot read it" in err
        assert in_poison(app, queue, env.id) == [message_id]  # still there, visible at once
    for queue, message_id in (("launch-followup", bad_click), ("report-updates", bad_update)):
        _delete(app, queue, message_id)


def _delete(app: Any, queue: str, message_id: str) -> None:
    client = queue_client(app.settings, poison_queue(queue))
    for message in client.receive_messages(max_messages=32, visibility_timeout=5):
        if message.id == message_id:
            client.delete_message(message)
        else:
            client.update_message(message.id, message.pop_receipt, visibility_timeout=0)


@pytest.mark.parametrize("queue", ["visit-events", "visit-events-poison"])
def test_the_write_back_poison_is_not_replayed_here_and_the_command_says_which_one_does(
        app: Any, capsys: Any, queue: str) -> None:
    code, result, err = run_ops(app, capsys, "queue", "poison", "replay", "--queue", queue, "--all")
    assert code == 1 and result is None
    assert err.startswith(f"ops: {queue}-poison is not replayed here: use ")
