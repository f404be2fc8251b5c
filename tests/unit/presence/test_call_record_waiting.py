"""Which call record a look waits for, without services: the look of a second call waits for that call's record
even when the first call's is there, and a record that never comes does not throw away the ones that did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lib.clock import FixedClock
from lib.models import Appointment, Meeting
from lib.presence.call_records import CallRecordService
from lib.teams.call_records import RecordSummary

START = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
JOIN_URL = "https://teams.example/l/meetup-join/1"


class _Appointments:
    def get(self, key: str) -> Appointment:
        return Appointment("env-1", "4455", "booked", START, START + timedelta(minutes=30), 30, "UTC",
                           meeting=Meeting("m-1", JOIN_URL, "org-1", "vv1-x"))


class _NoPresence:
    def get(self, key: str) -> None:
        return None


class _Client:
    """The first call (15:00-15:10) has its record; the second call's (15:50-16:00) is not made yet."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def find_all(self, **_: Any) -> list[RecordSummary]:
        return [RecordSummary("rec-1", START, START + timedelta(minutes=10))]

    def get(self, record_id: str) -> dict[str, Any]:
        self.read.append(record_id)
        return {"version": 1, "startDateTime": "2026-03-03T15:00:00Z", "endDateTime": "2026-03-03T15:10:00Z",
                "sessions": []}


class _Quality:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    def put(self, doc: dict[str, Any]) -> None:
        self.docs.append(doc)


class _Events:
    def for_appointment(self, key: str) -> list[Any]:
        return []


def _service(now: datetime) -> tuple[CallRecordService, _Client, _Quality]:
    client, quality = _Client(), _Quality()
    service = CallRecordService(appointments=_Appointments(), presence=_NoPresence(), client=client,  # type: ignore[arg-type]
                                roster=None, visit_events=_Events(), quality=quality, queues=None,  # type: ignore[arg-type]
                                clock=FixedClock(now))
    return service, client, quality


SECOND_CALL_ENDED = START + timedelta(hours=1)


def test_the_look_of_a_second_call_waits_for_its_record():
    service, client, quality = _service(SECOND_CALL_ENDED + timedelta(minutes=2))
    outcome = service.settle("env-1|4455", call_ended=SECOND_CALL_ENDED)
    assert (outcome.outcome, outcome.retry_in) == ("retry", 900)
    assert client.read == [] and quality.docs == []


def test_the_first_calls_look_settles_with_the_record_there():
    service, client, quality = _service(START + timedelta(minutes=12))
    assert service.settle("env-1|4455", call_ended=START + timedelta(minutes=10)).outcome == "settled"
    assert client.read == ["rec-1"] and quality.docs[-1]["calls"][0]["id"] == "rec-1"


def test_a_record_that_never_comes_does_not_throw_away_the_ones_there():
    service, client, quality = _service(SECOND_CALL_ENDED + timedelta(hours=25))
    assert service.settle("env-1|4455", call_ended=SECOND_CALL_ENDED).outcome == "settled"
    assert quality.docs[-1]["status"] == "settled" and client.read == ["rec-1"]
