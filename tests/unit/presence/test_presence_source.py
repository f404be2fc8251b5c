"""Choosing a visit's presence source without services: a refused subscription plans the read after the meeting
(when, which message), a queue failure leaves it for the timer, and the attendance-report client's paging."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lib.clock import FixedClock
from lib.models import Appointment, Meeting
from lib.presence.subscriptions import PresenceSubscriptions
from lib.store.graph_subscriptions import GraphSubscription
from lib.teams.attendance_reports import AttendanceReportsClient, AttendanceReportsError
from lib.teams.subscriptions import SubscriptionError

NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
START = NOW + timedelta(hours=2)


class _Repo:
    def __init__(self) -> None:
        self.docs: dict[str, GraphSubscription] = {}

    def create_once(self, sub: GraphSubscription) -> tuple[GraphSubscription, bool]:
        if sub.id in self.docs:
            return self.docs[sub.id], False
        self.docs[sub.id] = sub
        return sub, True

    def get(self, doc_id: str) -> GraphSubscription | None:
        return self.docs.get(doc_id)

    def due(self, now: datetime, renew_before: datetime) -> list[GraphSubscription]:
        return [s for s in self.docs.values() if s.state == "pending"]  # what the timer's query returns here

    def update(self, sub: GraphSubscription, **changes: Any) -> GraphSubscription:
        self.docs[sub.id] = dataclasses.replace(sub, **changes)
        return self.docs[sub.id]


class _RefusingGraph:
    calls = 0

    def create(self, **_: Any) -> Any:
        self.calls += 1
        raise SubscriptionError("graph_http_403_ExtensionError", not_permitted=True)


class _Queues:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, str], int]] = []
        self.fail = fail

    def send(self, queue: str, message: dict[str, str], *, visibility_timeout: int = 0) -> None:
        if self.fail:
            raise OSError("queue down")
        self.sent.append((queue, message, visibility_timeout))


@dataclasses.dataclass
class _Certificate:
    certificate_b64: str = "MII="
    certificate_id: str = "vv-1"


def _visit(start: datetime = START) -> Appointment:
    return Appointment("env-1", "4455", "booked", start, start + timedelta(minutes=30), 30, "UTC",
                       meeting=Meeting("m-1", "https://teams.example/l/meetup-join/1", "org-1", "vv1-x"))


def _service(queues: _Queues, graph: Any = None) -> tuple[PresenceSubscriptions, _Repo]:
    repo = _Repo()
    return PresenceSubscriptions(repo=repo, graph=graph or _RefusingGraph(), certificate=_Certificate(),  # type: ignore[arg-type]
                                 public_base_url="https://vv.example", clock=FixedClock(NOW), queues=queues), repo


@pytest.mark.parametrize(("source", "message"), [
    ("auto", {"appointmentKey": "env-1|4455", "read": "call_record", "then": "attendance_report"}),
    ("notifications", {"appointmentKey": "env-1|4455"}),
])
def test_a_subscription_refused_as_not_permitted_plans_the_read_after_the_scheduled_end(source, message):
    queues = _Queues()
    service, _ = _service(queues)
    stored = service.watch(_visit(), source=source)
    assert (stored.state, stored.last_error) == ("not_allowed", "graph_http_403_ExtensionError")
    expected_delay = (START + timedelta(minutes=35) - NOW).total_seconds()  # scheduled end + 5 minutes
    assert queues.sent == [("call-records", message, int(expected_delay))]


def test_an_environment_reading_attendance_reports_never_calls_graph():
    queues, graph = _Queues(), _RefusingGraph()
    service, _ = _service(queues, graph)
    stored = service.watch(_visit(), source="attendance_report")
    assert (stored.state, stored.graph_id, graph.calls) == ("not_used", None, 0)
    assert [m for _, m, _ in queues.sent] == [{"appointmentKey": "env-1|4455", "read": "attendance_report"}]


def test_a_visit_weeks_away_is_queued_at_the_queues_longest_delay():
    queues = _Queues()
    service, _ = _service(queues)
    service.watch(_visit(NOW + timedelta(days=30)), source="attendance_report")
    assert queues.sent[0][2] == int((timedelta(days=7) - timedelta(minutes=1)).total_seconds())


def test_a_queue_failure_leaves_the_subscription_pending_for_the_timer():
    queues = _Queues(fail=True)
    service, repo = _service(queues)
    stored = service.watch(_visit(), source="auto")
    assert (stored.state, stored.last_error) == ("pending", "after_meeting_not_queued")
    queues.fail = False
    assert service.run_due()["failed"] == 1  # the timer: refused again, planned this time
    (doc,) = repo.docs.values()
    assert doc.state == "not_allowed" and len(queues.sent) == 1


class _Response:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self._body = body
        self.headers = headers or {}
        self.content = b"x"

    def json(self) -> Any:
        return self._body


class _Http:
    def __init__(self, *answers: _Response) -> None:
        self.answers = list(answers)
        self.urls: list[str] = []

    def get(self, url: str, **_: Any) -> _Response:
        self.urls.append(url)
        return self.answers.pop(0)


class _Tokens:
    def token(self) -> str:
        return "t"


def test_the_client_follows_next_links_on_graphs_host_only():
    base = "https://graph.example/v1.0"
    http = _Http(_Response(200, {"value": [{"id": "a"}], "@odata.nextLink": f"{base}/next?$skiptoken=1"}),
                 _Response(200, {"value": [{"id": "b"}], "@odata.nextLink": "https://elsewhere.example/x"}))
    client = AttendanceReportsClient(base_url=base, tokens=_Tokens(), http=http)  # type: ignore[arg-type]
    assert [r["id"] for r in client.reports("org 1", "m/1") or []] == ["a", "b"]
    assert http.urls == [f"{base}/users/org%201/onlineMeetings/m%2F1/attendanceReports", f"{base}/next?$skiptoken=1"]


@pytest.mark.parametrize(("answer", "transient", "not_permitted", "retry_after"), [
    (_Response(429, headers={"Retry-After": "120"}), True, False, 120),
    (_Response(503), True, False, None),
    (_Response(403, {"error": {"code": "Forbidden"}}), False, True, None),
    (_Response(400, {"error": {"code": "BadRequest"}}), False, False, None),
])
def test_the_client_says_what_a_failure_means(answer, transient, not_permitted, retry_after):
    client = AttendanceReportsClient(base_url="https://g.example/v1.0", tokens=_Tokens(), http=_Http(answer))  # type: ignore[arg-type]
    with pytest.raises(AttendanceReportsError) as raised:
        client.records("o", "m", "r")
    assert (raised.value.transient, raised.value.not_permitted, raised.value.retry_after) == (
        transient, not_permitted, retry_after)


def test_a_report_not_ready_is_none():
    client = AttendanceReportsClient(base_url="https://g.example/v1.0", tokens=_Tokens(),  # type: ignore[arg-type]
                                     http=_Http(_Response(404, {"error": {"code": "NotFound"}})))
    assert client.reports("o", "m") is None


def test_a_call_records_message_keeps_the_end_of_the_call_it_looks_for():
    from lib.presence.after_meeting import AfterMeetingWork

    ended = datetime(2026, 3, 3, 16, 10, tzinfo=UTC)
    work = AfterMeetingWork("env-1|4455", call_ended_utc=ended)
    assert work.message() == {"appointmentKey": "env-1|4455", "callEndedUtc": "2026-03-03T16:10:00+00:00"}
    assert AfterMeetingWork.parse(work.message()) == work
    assert AfterMeetingWork.parse({"appointmentKey": "env-1|4455"}).call_ended_utc is None


@pytest.mark.parametrize("value", ["yesterday", "2026-03-03T16:10:00", 12])
def test_a_call_records_message_with_an_unreadable_call_end_goes_to_the_poison_queue(value):
    from lib.presence.after_meeting import AfterMeetingWork

    with pytest.raises(ValueError, match="callEndedUtc"):
        AfterMeetingWork.parse({"appointmentKey": "env-1|4455", "callEndedUtc": value})
