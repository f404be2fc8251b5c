"""A join link cannot flood Epic with device tests, nor replace "connected" with a test result mid-visit
(lib/visits/device_test_limits.py): exercised through the real ``POST /api/join/{token}/events`` trigger, the
store and the write-back queue."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from lib.visits.device_test_limits import (
    ENOUGH_WRITTEN,
    IN_MEETING,
    MAX_DEVICE_TEST_WRITEBACKS,
    MAX_DEVICE_TESTS_PER_VISIT,
)
from tests.support.environments import make_environment
from tests.support.join_links import visit_with_join_link

pytestmark = pytest.mark.integration

PASSED = {"speaker": "passed", "microphone": "passed", "camera": "passed", "connection": "passed",
          "test_call": "passed"}
FAILED = {**PASSED, "camera": "failed"}


def post_event(token: str, body: dict[str, Any]) -> func.HttpResponse:
    from functions.join import join_events

    req = func.HttpRequest(method="POST", url=f"http://127.0.0.1/api/join/{token}/events",
                           headers={"content-type": "application/json", "x-forwarded-for": "203.0.113.7"},
                           params={}, route_params={"token": token}, body=json.dumps(body).encode())
    return join_events.build().get_user_function()(req)


def device_test(token: str, attempt: str, steps: dict[str, str] = PASSED) -> func.HttpResponse:
    return post_event(token, {"type": "device_test", "attempt": attempt, "steps": steps})


@pytest.fixture
def visit(app: Any, environment_id: str) -> tuple[Any, str]:
    make_environment(app, environment_id)
    return visit_with_join_link(app, environment_id, str(uuid.uuid4().int)[:9],
                                datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10))


def device_tests(app: Any, key: str) -> list[Any]:
    return [e for e in app.repos.visit_events.for_appointment(key) if e.type.startswith("device_test")]


def test_a_flood_of_device_tests_reaches_epic_a_few_times_then_is_refused(app: Any, visit: tuple[Any, str]):
    appointment, token = visit
    answers = [device_test(token, f"flood-attempt-{i:03d}", PASSED if i % 2 else FAILED)
               for i in range(MAX_DEVICE_TESTS_PER_VISIT + 3)]
    assert [a.status_code for a in answers] == [202] * MAX_DEVICE_TESTS_PER_VISIT + [429] * 3
    refused = json.loads(answers[-1].get_body())
    assert refused["code"] == "TOO_MANY_DEVICE_TESTS" and "at most 10 device tests" in refused["detail"]

    stored = device_tests(app, appointment.key)
    assert len(stored) == MAX_DEVICE_TESTS_PER_VISIT
    to_epic = [e for e in stored if e.writeback == "pending"]
    assert len(to_epic) == MAX_DEVICE_TEST_WRITEBACKS  # queued for Epic: the first three only
    assert {e.writeback_reason for e in stored if e.writeback == "none"} == {ENOUGH_WRITTEN}

    # a resend of a recorded test is answered as the first time, even over the limit, and stores nothing
    again = device_test(token, "flood-attempt-001", PASSED)
    assert again.status_code == 202
    assert json.loads(again.get_body())["eventId"] == json.loads(answers[1].get_body())["eventId"]
    assert len(device_tests(app, appointment.key)) == MAX_DEVICE_TESTS_PER_VISIT


def test_a_device_test_while_the_patient_is_in_the_meeting_is_not_written_to_epic(
        app: Any, visit: tuple[Any, str]):
    from lib.store.visit_events import VisitEvent

    appointment, token = visit
    now = datetime.now(UTC)

    def roster(event_type: str, at: datetime, writeback: str = "pending") -> None:
        app.repos.visit_events.create_once(VisitEvent(
            id=uuid.uuid4().hex, appointment_key=appointment.key, environment_id=appointment.environment_id,
            appointment_id=appointment.appointment_id, type=event_type, role="patient", participant_id="patient",
            at_utc=at, source="roster", writeback=writeback))

    roster("connected", now - timedelta(minutes=3))
    during = device_test(token, "second-device-01")  # a second phone opens the link mid-visit
    assert during.status_code == 202 and json.loads(during.get_body())["writeback"] == "none"
    (held,) = device_tests(app, appointment.key)
    assert held.writeback_reason == IN_MEETING

    roster("disconnected", now - timedelta(minutes=1))
    after = device_test(token, "after-leaving-1", FAILED)
    assert json.loads(after.get_body())["writeback"] == "pending"  # out of the meeting: Epic hears of it

    roster("connected", now, writeback="superseded")  # a "connected" the roster itself took back
    last = device_test(token, "after-leaving-2")
    assert json.loads(last.get_body())["writeback"] == "pending"
