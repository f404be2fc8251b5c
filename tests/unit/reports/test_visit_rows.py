"""Visit rows from the meeting roster: start, end, duration, peak, lobby wait and outcome, to the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lib.reports.inputs import ParticipantEvent
from lib.reports.visits import attendance, outcome, row_times

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def ev(n: int, kind: str, role: str, who: str, minutes: float) -> ParticipantEvent:
    return ParticipantEvent(f"e{n}", kind, role, who, T0 + timedelta(minutes=minutes))  # type: ignore[arg-type]


VISIT = [
    ev(1, "lobby", "patient", "patient", 0),
    ev(2, "joined", "clinician", "E1001", 4.5),
    ev(3, "joined", "patient", "patient", 5),          # admitted: lobby wait 5 min
    ev(4, "joined", "interpreter", "interp:1", 10),    # peak 3
    ev(5, "left", "interpreter", "interp:1", 20),
    ev(6, "left", "patient", "patient", 30),
    ev(7, "left", "clinician", "E1001", 31),           # last one out: end
]


def test_start_is_when_clinician_and_patient_are_first_both_in_and_end_is_when_the_last_left() -> None:
    att = attendance(VISIT)
    assert att.start_utc == T0 + timedelta(minutes=5)
    assert att.end_utc == T0 + timedelta(minutes=31)
    assert att.duration_seconds == 26 * 60
    assert att.peak_participants == 3
    assert att.lobby_wait_seconds == 300
    assert att.clinicians == ("E1001",)


def test_duplicated_and_shuffled_events_give_the_same_row() -> None:
    shuffled = list(reversed(VISIT)) + VISIT[:3]
    assert row_times(attendance(shuffled)) == row_times(attendance(VISIT))


def test_patient_dropping_and_rejoining_keeps_the_first_start_and_the_last_leave() -> None:
    events = [*VISIT[:3], ev(10, "left", "patient", "patient", 8), ev(11, "joined", "patient", "patient", 9),
              ev(12, "left", "patient", "patient", 40), ev(13, "left", "clinician", "E1001", 41)]
    att = attendance(events)
    assert (att.start_utc, att.end_utc, att.duration_seconds) == (T0 + timedelta(minutes=5),
                                                                  T0 + timedelta(minutes=41), 36 * 60)


def test_someone_still_in_the_meeting_means_no_end_yet() -> None:
    att = attendance(VISIT[:4])
    assert att.start_utc is not None and att.end_utc is None and att.duration_seconds is None


def test_patient_admitted_without_lobby_has_no_lobby_wait() -> None:
    att = attendance([ev(1, "joined", "clinician", "E1", 0), ev(2, "joined", "patient", "patient", 2)])
    assert att.lobby_wait_seconds is None and att.start_utc == T0 + timedelta(minutes=2)


def row(**values: object) -> dict[str, object]:
    base = {"status": "booked", "scheduled_start_utc": T0.isoformat(),
            "scheduled_end_utc": (T0 + timedelta(minutes=30)).isoformat()}
    base.update(values)
    return base


LATER = T0 + timedelta(hours=3)


def test_outcomes_one_side_never_joining_is_named_not_dropped() -> None:
    clinician_only = row_times(attendance([ev(1, "joined", "clinician", "E1", 0), ev(2, "left", "clinician", "E1", 9)]))
    patient_only = row_times(attendance([ev(1, "lobby", "patient", "patient", 0),
                                         ev(2, "left", "patient", "patient", 12)]))
    assert outcome(row(**clinician_only), LATER) == "patient_never_joined"
    assert outcome(row(**patient_only), LATER) == "clinician_never_joined"
    assert outcome(row(**row_times(attendance(VISIT))), LATER) == "completed"
    assert outcome(row(), LATER) == "nobody_joined"


def test_outcome_follows_epic_status_when_nobody_was_together() -> None:
    assert outcome(row(status="cancelled"), LATER) == "cancelled"
    assert outcome(row(status="deleted"), LATER) == "cancelled"
    assert outcome(row(status="noshow"), LATER) == "no_show"


def test_a_visit_not_over_yet_is_scheduled_until_an_hour_after_its_end() -> None:
    clinician_waiting = row(**row_times(attendance([ev(1, "joined", "clinician", "E1", 0)])))
    assert outcome(clinician_waiting, T0 + timedelta(minutes=89)) == "scheduled"
    assert outcome(clinician_waiting, T0 + timedelta(minutes=90)) == "patient_never_joined"


def test_both_came_but_never_at_the_same_time() -> None:
    apart = row_times(attendance([
        ev(1, "lobby", "patient", "patient", 0), ev(2, "left", "patient", "patient", 10),
        ev(3, "joined", "clinician", "E1", 15), ev(4, "left", "clinician", "E1", 20),
    ]))
    assert outcome(row(**apart), LATER) == "never_together"


def test_stored_visit_events_map_to_presence_and_clicks_do_not() -> None:
    from lib.store.visit_events import VisitEvent

    def stored(kind: str, role: str, who: str) -> VisitEvent:
        return VisitEvent(id=f"{kind}-{role}", appointment_key="env|A1", environment_id="env", appointment_id="A1",
                          type=kind, role=role, participant_id=who, at_utc=T0)  # type: ignore[arg-type]

    joined = ParticipantEvent.from_visit_event(stored("connected", "provider", "E1001"))
    assert joined == ParticipantEvent("connected-provider", "joined", "clinician", "E1001", T0)
    lobby = ParticipantEvent.from_visit_event(stored("in_lobby", "patient", "patient"))
    assert lobby is not None and (lobby.kind, lobby.role) == ("lobby", "patient")
    assert ParticipantEvent.from_visit_event(stored("device_test_passed", "patient", "patient")) is None
    assert ParticipantEvent.from_visit_event(stored("clinician_launched", "provider", "E1001")) is None
