"""Attendance report -> participant events, without services: identities by ID only (the roster's rules),
intervals -> connects and disconnects, the after-meeting queue messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from lib.presence.after_meeting import AfterMeetingWork
from lib.presence.attendance_reports import participant_events, roster_identity, stays
from lib.presence.roster import RosterService

KEY = "env-1|4455"
CLINICIAN_OID = "5b3f1c0e-8a9d-4c1e-9f00-0000000000c1"
UNMAPPED_OID = "5b3f1c0e-8a9d-4c1e-9f00-0000000000c2"
PATIENT_ACS = "8:acs:11111111-2222-3333-4444-555555555555_0000001a-aaaa"


@dataclass
class _Mapping:
    ehr_user_id: str


@dataclass
class _Issued:
    appointment_key: str
    role: str


class _Users:
    def by_entra_object_id(self, environment_id: str, oid: str) -> _Mapping | None:
        return _Mapping("E1001") if (environment_id, oid) == ("env-1", CLINICIAN_OID) else None


class _Identities:
    patients: tuple[str, ...] = (PATIENT_ACS,)

    def get(self, acs_id: str) -> _Issued | None:
        return _Issued(KEY, "patient") if acs_id in self.patients else None


def _classify(identities: _Identities | None = None) -> Any:
    roster = RosterService(presence=None, visit_events=None, users=_Users(),  # type: ignore[arg-type]
                           identities=identities or _Identities(),  # type: ignore[arg-type]
                           queues=None, clock=None)  # type: ignore[arg-type]
    return lambda identity: roster.classify("env-1", KEY, identity, False)


def _record(identity: dict[str, Any], *intervals: tuple[str | None, str | None], email: str | None = None) -> dict:
    return {"id": "r", "emailAddress": email, "role": "Attendee", "totalAttendanceInSeconds": 0,
            "identity": identity, "attendanceIntervals": [
                {"joinDateTime": j, "leaveDateTime": left, "durationInSeconds": 0} for j, left in intervals]}


@pytest.mark.parametrize(("identity", "expected"), [
    ({"id": CLINICIAN_OID, "displayName": "Dr A", "tenantId": "t"}, {"user": {"id": CLINICIAN_OID}}),
    ({"@odata.type": "#microsoft.graph.communicationsUserIdentity", "id": "x-1", "displayName": "B"},
     {"user": {"id": "x-1"}}),
    ({"@odata.type": "#microsoft.graph.azureCommunicationServicesUserIdentity", "id": "opaque", "displayName": "P"},
     {"azureCommunicationServicesUser": {"id": "opaque"}}),
    ({"id": PATIENT_ACS, "displayName": "Pat"}, {"azureCommunicationServicesUser": {"id": PATIENT_ACS}}),
    ({"id": "guest-7", "displayName": "Uncle Bob", "tenantId": None}, {"guest": {"id": "guest-7"}}),
    ({"displayName": "No id"}, {}),
    (None, {}),
])
def test_a_records_identity_keeps_only_its_id_in_the_rosters_shape(identity, expected):
    assert roster_identity(identity) == expected


def test_records_become_each_participants_connects_and_disconnects_by_id_only():
    records = [
        _record({"id": CLINICIAN_OID, "displayName": "Dr Real Name"}, ("2026-03-03T19:00:05.1234567Z",
                                                                        "2026-03-03T19:30:00Z"),
                email="dr@example.org"),
        _record({"id": PATIENT_ACS, "displayName": "Patient Name"}, ("2026-03-03T19:01:00Z", "2026-03-03T19:04:00Z"),
                ("2026-03-03T19:06:00Z", "2026-03-03T19:29:00Z")),
        _record({"id": UNMAPPED_OID, "displayName": "Staff"}, ("2026-03-03T19:10:00Z", None)),
        _record({"id": "guest-7", "displayName": "Uncle Bob"}, (None, "2026-03-03T19:20:00Z")),
    ]
    found = stays(records, _classify())
    events = [(who.role, who.participant_id, kind, at.isoformat()) for who, kind, at in participant_events(found)]
    other = next(s.who for s in found.values() if s.who.role == "other")
    assert events == [
        ("provider", "E1001", "connected", "2026-03-03T19:00:05.123456+00:00"),
        ("provider", "E1001", "disconnected", "2026-03-03T19:30:00+00:00"),
        ("patient", "patient", "connected", "2026-03-03T19:01:00+00:00"),
        ("patient", "patient", "disconnected", "2026-03-03T19:04:00+00:00"),
        ("patient", "patient", "connected", "2026-03-03T19:06:00+00:00"),
        ("patient", "patient", "disconnected", "2026-03-03T19:29:00+00:00"),
        ("other", other.participant_id, "connected", "2026-03-03T19:10:00+00:00"),  # no leave time: join only
    ]  # the guest's interval without a join time is skipped
    assert other.participant_id == f"other:{other.key}" and UNMAPPED_OID not in other.participant_id
    assert "Name" not in repr(found) and "example.org" not in repr(found)


def test_the_same_session_in_two_reports_counts_once_and_intervals_sort():
    late = ("2026-03-03T20:00:00Z", "2026-03-03T20:05:00Z")
    early = ("2026-03-03T19:00:00Z", "2026-03-03T19:05:00Z")
    found = stays([_record({"id": CLINICIAN_OID}, late), _record({"id": CLINICIAN_OID}, early, late)], _classify())
    (stay,) = found.values()
    assert [(a.hour, b.hour) for a, b in stay.intervals] == [(19, 19), (20, 20)]


def test_the_patients_two_devices_are_one_stay_connected_once_disconnected_once():
    second_device = "8:acs:11111111-2222-3333-4444-555555555555_0000001a-cccc"
    identities = _Identities()
    identities.patients = (PATIENT_ACS, second_device)
    found = stays([_record({"id": PATIENT_ACS}, ("2026-03-03T19:01:00Z", "2026-03-03T19:20:00Z")),
                   _record({"id": second_device}, ("2026-03-03T19:10:00Z", "2026-03-03T19:29:00Z"))],
                  _classify(identities))
    assert [(who.participant_id, kind, at.minute) for who, kind, at in participant_events(found)] == [
        ("patient", "connected", 1), ("patient", "disconnected", 29)]


def test_an_acs_identity_of_another_visit_is_not_this_visits_patient():
    other_visit = "8:acs:99999999-2222-3333-4444-555555555555_0000001a-bbbb"
    (stay,) = stays([_record({"id": other_visit}, ("2026-03-03T19:00:00Z", "2026-03-03T19:01:00Z"))],
                    _classify()).values()
    assert stay.who.role == "other"


@pytest.mark.parametrize("work", [
    AfterMeetingWork(KEY),
    AfterMeetingWork(KEY, "call_record", "attendance_report"),
    AfterMeetingWork(KEY, "attendance_report"),
])
def test_after_meeting_messages_round_trip(work):
    assert AfterMeetingWork.parse(work.message()) == work


def test_the_rosters_call_records_message_still_reads_the_call_record():
    assert AfterMeetingWork.parse({"appointmentKey": KEY}) == AfterMeetingWork(KEY, "call_record", None)


@pytest.mark.parametrize("body", [{}, {"appointmentKey": "no-bar"}, {"appointmentKey": KEY, "read": "roster"},
                                  {"appointmentKey": KEY, "then": "call_record"}])
def test_unreadable_after_meeting_messages_are_refused(body):
    with pytest.raises(ValueError):
        AfterMeetingWork.parse(body)
