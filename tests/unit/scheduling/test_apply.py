"""Rules for applying SIU messages to an appointment (lib.scheduling.apply)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from lib.hl7.siu import STATUS_BY_EVENT
from lib.scheduling.apply import apply_message, keeps_phone, order_key

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


_EVENT_OF = {"booked": "S12", "cancelled": "S15", "deleted": "S17", "noshow": "S26"}


@dataclass
class Msg:
    appointment_id: str = "36996"
    status: str = "booked"
    event: str = ""
    start_utc: datetime | None = T0
    end_utc: datetime | None = T0 + timedelta(minutes=30)
    duration_minutes: int | None = 30
    source_time_zone: str | None = "America/Chicago"
    department: str | None = "IM"
    provider_ehr_id: str | None = "400"
    language: str | None = None
    sms_phone_reason: str = "mobile"
    conference_id: str | None = None
    filler_status_hint: str | None = None
    phone_cleared: bool = False
    sms_phone_e164: str | None = "+13125550142"
    placer_id: str | None = None
    filler_id: str | None = None
    visit_number: str | None = None

    def __post_init__(self) -> None:
        if self.event:
            self.status = STATUS_BY_EVENT[self.event]
        else:
            self.event = _EVENT_OF[self.status]


def key(minute: int, control: str = "1") -> str:
    return order_key(datetime(2026, 11, 29, 12, minute, tzinfo=UTC), control)


def test_first_message_creates_revision_1_with_a_random_link_id():
    applied = apply_message(None, Msg(), environment_id="env", key=key(0))
    assert applied.outcome == "created"
    assert applied.after.key == "env|36996"
    assert applied.after.schedule_revision == 1
    assert applied.after.start_utc == T0
    assert len(applied.after.link_id) == 22
    assert "36996" not in applied.after.link_id


def test_reschedule_to_a_new_time_increments_the_revision():
    first = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    moved = apply_message(first, Msg(start_utc=T0 + timedelta(hours=2)), environment_id="env", key=key(1))
    assert moved.outcome == "updated"
    assert moved.time_changed
    assert moved.after.schedule_revision == 2
    assert moved.after.start_utc == T0 + timedelta(hours=2)


def test_modification_without_time_change_keeps_the_revision():
    first = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    modified = apply_message(first, Msg(department="CARD"), environment_id="env", key=key(1))
    assert modified.after.schedule_revision == 1
    assert modified.after.department == "CARD"
    assert not modified.time_changed


def test_s12_older_than_an_applied_s15_is_ignored():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    cancelled = apply_message(booked, Msg(status="cancelled"), environment_id="env", key=key(5)).after
    late = apply_message(cancelled, Msg(status="booked"), environment_id="env", key=key(3))
    assert late.outcome == "stale"
    assert late.after is None


def test_same_message_again_is_a_redelivery_that_changes_nothing():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    again = apply_message(booked, Msg(), environment_id="env", key=key(0))
    assert again.outcome == "redelivered"
    assert again.after is booked


def test_equal_msh7_ties_are_broken_by_msh10():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0, "A")).after
    assert apply_message(booked, Msg(event="S14"), environment_id="env", key=key(0, "B")).outcome == "updated"
    assert apply_message(booked, Msg(event="S14"), environment_id="env", key=key(0, "0")).outcome == "stale"


def test_cancel_without_times_keeps_the_stored_times():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    cancelled = apply_message(
        booked, Msg(status="cancelled", start_utc=None, end_utc=None, duration_minutes=None),
        environment_id="env", key=key(1),
    ).after
    assert cancelled.status == "cancelled"
    assert cancelled.start_utc == T0
    assert cancelled.duration_minutes == 30


def test_newer_s12_after_cancel_books_again_with_a_new_revision():
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    cancelled = apply_message(booked, Msg(status="cancelled"), environment_id="env", key=key(1)).after
    rebooked = apply_message(cancelled, Msg(status="booked"), environment_id="env", key=key(2))
    assert rebooked.after.status == "booked"
    assert rebooked.after.schedule_revision == 2


def test_order_key_compares_instants_not_local_clock_text():
    from zoneinfo import ZoneInfo

    rome = datetime(2026, 11, 29, 13, 0, tzinfo=ZoneInfo("Europe/Rome"))  # 12:00 UTC
    utc = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
    assert order_key(rome, "9") < order_key(utc, "1")


def test_conference_id_is_carried_and_kept_when_a_later_message_omits_it():
    created = apply_message(None, Msg(conference_id="GRP-7"), environment_id="env", key=key(0)).after
    assert created.conference_id == "GRP-7"
    later = apply_message(created, Msg(status="cancelled", conference_id=None), environment_id="env", key=key(5))
    assert later.after.conference_id == "GRP-7"


# ---- MSH-7 ties: how senders number their messages -------------------------------------------------------


def _at(second: int, control: str) -> str:
    return order_key(datetime(2026, 11, 29, 12, 0, second, tzinfo=UTC), control)


@pytest.mark.parametrize(
    ("booking_id", "cancel_id"),
    [
        ("99", "100"),                    # a plain counter crossing a digit
        ("MSG00999", "MSG01000"),         # prefixed, zero-padded
        ("7001234-9", "7001234-10"),      # Epic-style contact serial + sequence
        ("20261129120000999", "202611291200001000"),
    ],
)
def test_a_counter_that_grows_a_digit_still_orders_the_cancel_after_its_booking(booking_id, cancel_id):
    booked = apply_message(None, Msg(), environment_id="env", key=_at(5, booking_id)).after
    cancelled = apply_message(booked, Msg(event="S15"), environment_id="env", key=_at(5, cancel_id))
    assert cancelled.outcome == "updated"
    assert cancelled.after.status == "cancelled"
    # and the reverse arrival: the booking (lower counter) is the older one
    tomb = apply_message(None, Msg(event="S15"), environment_id="env", key=_at(5, cancel_id)).after
    assert apply_message(tomb, Msg(), environment_id="env", key=_at(5, booking_id)).outcome == "stale"


def test_a_counter_orders_a_rebooking_after_the_cancel_in_the_same_second():
    booked = apply_message(None, Msg(), environment_id="env", key=_at(5, "998")).after
    cancelled = apply_message(booked, Msg(event="S15"), environment_id="env", key=_at(5, "999")).after
    rebooked = apply_message(cancelled, Msg(event="S12"), environment_id="env", key=_at(5, "1000"))
    assert rebooked.outcome == "updated"
    assert rebooked.after.status == "booked"


@pytest.mark.parametrize("ending", ["S15", "S17", "S26"])
@pytest.mark.parametrize(
    ("booking_id", "ending_id"),
    [
        ("f3a9c2e1-77b0-4c1e-9a0d-2b6e5d4c3b2a", "0b1c2d3e-4f50-4617-8a9b-cdef01234567"),  # GUIDs, cancel sorts first
        ("0b1c2d3e-4f50-4617-8a9b-cdef01234567", "f3a9c2e1-77b0-4c1e-9a0d-2b6e5d4c3b2a"),  # and last
        ("zq", "ab"),
        ("ab7c", "x9"),
    ],
)
def test_with_random_ids_on_an_msh7_tie_the_message_that_ends_the_visit_wins_in_either_arrival_order(
    ending, booking_id, ending_id
):
    booked = apply_message(None, Msg(), environment_id="env", key=_at(5, booking_id)).after
    ended = apply_message(booked, Msg(event=ending), environment_id="env", key=_at(5, ending_id))
    assert ended.outcome == "updated"
    assert ended.after.status == STATUS_BY_EVENT[ending]
    tomb = apply_message(None, Msg(event=ending), environment_id="env", key=_at(5, ending_id)).after
    for event in ("S12", "S13", "S14"):
        assert apply_message(tomb, Msg(event=event), environment_id="env", key=_at(5, booking_id)).outcome == "stale"


def test_msh7_decides_before_any_msh10_rule():
    booked = apply_message(None, Msg(), environment_id="env", key=_at(6, "zz")).after
    assert apply_message(booked, Msg(event="S15"), environment_id="env", key=_at(5, "zzz")).outcome == "stale"
    cancelled = apply_message(None, Msg(event="S15"), environment_id="env", key=_at(5, "1000")).after
    assert apply_message(cancelled, Msg(), environment_id="env", key=_at(6, "1")).after.status == "booked"


def test_a_key_stored_by_an_earlier_version_is_compared_by_its_parts():
    # The stored text was written by order_key() since the first version; comparing it as text put "...|99"
    # after "...|100".
    stored_text = "2026-11-29T12:00:05.000000|99"
    booked = apply_message(None, Msg(), environment_id="env", key=stored_text).after
    assert booked.order_key == stored_text
    assert apply_message(booked, Msg(event="S15"), environment_id="env", key=_at(5, "100")).outcome == "updated"


# ---- a cancelled, deleted or no-show visit: what each later event does --------------------------------------

ENDINGS = {"S15": "cancelled", "S17": "deleted", "S26": "noshow"}


def _ended(ending: str):
    booked = apply_message(None, Msg(), environment_id="env", key=key(0)).after
    return apply_message(booked, Msg(event=ending), environment_id="env", key=key(1)).after


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("change", ["S13", "S14"])
@pytest.mark.parametrize("hint", [None, "Booked", "Cancelled", "1"])
def test_a_reschedule_or_modification_of_an_ended_visit_stores_the_change_but_never_books_it(ending, change, hint):
    ended = _ended(ending)
    moved_to = T0 + timedelta(hours=3)
    applied = apply_message(
        ended,
        Msg(event=change, start_utc=moved_to, end_utc=moved_to + timedelta(minutes=30), department="CARD",
            filler_status_hint=hint),
        environment_id="env", key=key(2),
    )
    assert applied.outcome == "updated"
    assert applied.kept_ended
    after = applied.after
    assert after.status == ENDINGS[ending]
    assert (after.start_utc, after.department) == (moved_to, "CARD")
    assert after.schedule_revision == ended.schedule_revision  # no new revision: nothing to announce
    assert not applied.time_changed
    assert after.order_key == key(2)
    assert keeps_phone(after, Msg(event=change)) is None


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_newer_s12_books_an_ended_visit_again_with_a_new_revision(ending):
    ended = _ended(ending)
    rebooked = apply_message(ended, Msg(event="S12"), environment_id="env", key=key(2))
    assert rebooked.after.status == "booked"
    assert not rebooked.kept_ended
    assert rebooked.after.schedule_revision == ended.schedule_revision + 1
    assert keeps_phone(rebooked.after, Msg(event="S12")) == "+13125550142"


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("later", sorted(ENDINGS))
def test_a_later_cancel_delete_or_no_show_of_an_ended_visit_takes_its_status_and_keeps_no_number(ending, later):
    ended = _ended(ending)
    applied = apply_message(ended, Msg(event=later), environment_id="env", key=key(2))
    assert applied.after.status == ENDINGS[later]
    assert applied.after.schedule_revision == ended.schedule_revision
    assert keeps_phone(applied.after, Msg(event=later)) is None


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("later", sorted(STATUS_BY_EVENT))
def test_any_event_older_than_the_ending_is_stale(ending, later):
    ended = _ended(ending)
    assert apply_message(ended, Msg(event=later), environment_id="env", key=key(0, "0")).outcome == "stale"


def test_a_modification_before_any_booking_still_creates_the_booked_visit():
    applied = apply_message(None, Msg(event="S14"), environment_id="env", key=key(0))
    assert applied.outcome == "created"
    assert applied.after.status == "booked"
