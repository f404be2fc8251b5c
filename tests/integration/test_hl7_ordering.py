"""Ordering and lifecycle of one visit's HL7 messages, through the HTTP function on the real store.

What a patient or an analyst would check after each sequence: the visit's status, its stored number, its texts
(kind, revision, state), the ACK (MSA, ERR) and the stale-message metric and log line. Rules:
docs/hl7-intake.md "Order of messages".
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import appointment_key
from lib.observability import metrics
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7, segment
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 2, 15, 0, 30, tzinfo=UTC)
SENT = datetime(2027, 3, 2, 14, 30, 5, tzinfo=UTC)  # the second most messages below share
START = datetime(2027, 3, 9, 19, 0, tzinfo=UTC)
PHONE = "(312)555-0164"


@pytest.fixture
def env(app, clock):
    clock.set(NOW)
    return make_environment(app, f"ord-{uuid.uuid4().hex[:8]}")


def message(event: str, control_id: str, *, csn: str, sent: datetime = SENT, msh7: str | None = None,
            version: str = "2.3", **kw: object) -> bytes:
    """An SIU for ``csn``; ``msh7`` replaces MSH-7 as written (``""`` empties it)."""
    raw = siu(event, csn=csn, start=kw.pop("start", START), control_id=control_id, sent=sent, phone=PHONE,
              **kw)  # type: ignore[arg-type]
    head, rest = raw.split(b"\r", 1)
    fields = head.decode().split("|")
    if msh7 is not None:
        fields[6] = msh7
    fields[11] = version
    return "|".join(fields).encode() + b"\r" + rest


def visit(app, env, csn: str):
    key = appointment_key(env.id, csn)
    texts = {f"{i.id.split('|')[-2]}|{i.revision}": i.state for i in app.repos.outbox.for_appointment(key)}
    return app.repos.appointments.get(key), app.repos.contacts.phone(key, now=NOW), texts


def accepted(env, raw: bytes) -> None:
    response = post_hl7(env.id, raw)
    assert msa(response)[1] == "AA", msa(response)


def send_due_texts(app, env, csn: str) -> None:
    """What the queue trigger does with the texts due now (a cancellation notice keeps the number until sent)."""
    for item in app.repos.outbox.for_appointment(appointment_key(env.id, csn)):
        if item.state == "pending" and item.due_utc <= NOW:
            app.dispatcher.send_one(item.id)


def assert_cancelled_for_good(app, env, csn: str, status: str = "cancelled") -> None:
    send_due_texts(app, env, csn)
    stored, phone, texts = visit(app, env, csn)
    assert stored.status == status
    assert phone is None
    assert not [kind for kind, state in texts.items() if kind.startswith("reminder") and state == "pending"]
    assert "booked|2" not in texts


# ---- F4: a tie on MSH-7 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("booking_id", "cancel_id"), [
    ("4410099", "4410100"), ("ADT0999", "ADT1000"), ("88-7-9", "88-7-10"),
])
def test_a_cancel_numbered_after_its_booking_in_the_same_second_cancels(app, env, booking_id, cancel_id):
    csn = f"T{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", booking_id, csn=csn))
    accepted(env, message("S15", cancel_id, csn=csn))
    assert_cancelled_for_good(app, env, csn)


def test_minute_precision_msh7_ties_are_ordered_by_the_counter(app, env):
    csn = f"T{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", "99", csn=csn, msh7="202703020930"))
    accepted(env, message("S14", "100", csn=csn, msh7="202703020930", start=START + timedelta(hours=1)))
    stored, _, texts = visit(app, env, csn)
    assert (stored.status, stored.start_utc, stored.schedule_revision) == ("booked", START + timedelta(hours=1), 2)
    assert "changed|2" in texts
    accepted(env, message("S15", "101", csn=csn, msh7="202703020930"))
    assert_cancelled_for_good(app, env, csn)


@pytest.mark.parametrize("ending", ["S15", "S17", "S26"])
def test_with_random_control_ids_the_ending_message_wins_a_tie_in_either_arrival_order(app, env, ending):
    status = {"S15": "cancelled", "S17": "deleted", "S26": "noshow"}[ending]
    for _ in range(3):
        booking_id, ending_id = str(uuid.uuid4()), str(uuid.uuid4())
        csn = f"R{uuid.uuid4().hex[:8]}"
        accepted(env, message("S12", booking_id, csn=csn))
        accepted(env, message(ending, ending_id, csn=csn))
        assert_cancelled_for_good(app, env, csn, status)

        late = f"L{uuid.uuid4().hex[:8]}"  # the ending first, its booking (same MSH-7) after
        booking_id, ending_id = str(uuid.uuid4()), str(uuid.uuid4())
        accepted(env, message(ending, ending_id, csn=late))
        accepted(env, message("S12", booking_id, csn=late))
        assert_cancelled_for_good(app, env, late, status)


# ---- F5: MSH-7 that cannot order the visit ---------------------------------------------------------------------


@pytest.mark.parametrize(("msh7", "code", "words"), [
    ("", "101", "is missing"),
    ("notatime", "102", "not an HL7 date/time"),
    ("20270302", "102", "not an HL7 date/time"),           # a date only: not to the minute
    ("19000101000000", "102", "before 1980"),
    ("19700101000000", "102", "before 1980"),
    ("20271227093005", "102", "days ahead"),                # 300 days ahead (local New York time)
    ("20270302100700-0500", "102", "6 min ahead"),          # just past the allowance, with an offset
])
def test_an_msh7_that_cannot_order_the_visit_is_refused_at_msh7_and_nothing_is_stored(app, env, msh7, code, words):
    csn = f"F{uuid.uuid4().hex[:8]}"
    response = post_hl7(env.id, message("S12", "5001", csn=csn, msh7=msh7, version="2.5.1"))
    assert msa(response)[1] == "AR"
    err = segment(response, "ERR")
    assert err[2] == "MSH^1^7" and err[3].split("^")[0] == code
    assert words in err[8]
    assert app.repos.appointments.get(appointment_key(env.id, csn)) is None


def test_an_msh7_within_the_allowance_is_accepted(app, env):
    csn = f"F{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", "5001", csn=csn, msh7="20270302100430-0500"))  # 4 minutes ahead


def test_a_future_msh7_no_longer_locks_the_visit_against_its_cancel(app, env):
    csn = f"F{uuid.uuid4().hex[:8]}"
    refused = post_hl7(env.id, message("S12", "6001", csn=csn, sent=NOW + timedelta(days=300)))
    assert msa(refused)[1] == "AR"
    accepted(env, message("S12", "6002", csn=csn, sent=NOW - timedelta(minutes=2)))
    accepted(env, message("S15", "6003", csn=csn, sent=NOW - timedelta(minutes=1)))
    assert_cancelled_for_good(app, env, csn)


def test_a_v23_sender_reads_a_shortened_msa3_and_the_whole_reason_in_err1(app, env):
    response = post_hl7(env.id, message("S12", "6101", csn="F6101", sent=NOW + timedelta(days=300)))
    text = msa(response)[3]
    assert len(text) <= 80 and text.endswith("...") and "  " not in text
    code = segment(response, "ERR")[1].split("^")[3].split("&")
    assert code[:3] == ["102", "Data type error", "HL70357"]
    assert code[4].startswith(text[:-3])
    assert code[4].endswith("MSH-7 without an offset is read in America/New_York")


# ---- a stale message is visible -----------------------------------------------------------------------------


def test_a_stale_cancel_is_answered_aa_counted_and_logged_as_a_warning_without_phi(app, env, caplog):
    csn = f"S{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", "7002", csn=csn, sent=SENT))
    before = metrics.total(metrics.HL7_STALE, environment=env.id, trigger_event="S15", visit_status="booked")
    with caplog.at_level(logging.INFO, logger="lib.scheduling.intake"):
        accepted(env, message("S15", "7001", csn=csn, sent=SENT - timedelta(minutes=3)))
    assert metrics.total(metrics.HL7_STALE, environment=env.id, trigger_event="S15", visit_status="booked") == (
        before + 1)
    lines = [r for r in caplog.records if "stale message not applied" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "msh10=7001" in lines[0].getMessage() and "event=S15" in lines[0].getMessage()
    assert "555" not in lines[0].getMessage() and csn not in lines[0].getMessage()
    assert visit(app, env, csn)[0].status == "booked"


# ---- F9: a cancelled, deleted or no-show visit and every later event -------------------------------------------

ENDINGS = {"S15": "cancelled", "S17": "deleted", "S26": "noshow"}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("later", ["S12", "S13", "S14", "S15", "S17", "S26"])
def test_every_later_event_after_a_visit_ended(app, env, ending, later):
    csn = f"E{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", "1", csn=csn, sent=SENT))
    accepted(env, message(ending, "2", csn=csn, sent=SENT + timedelta(minutes=1)))
    send_due_texts(app, env, csn)
    moved = START + timedelta(hours=2)
    accepted(env, message(later, "3", csn=csn, sent=SENT + timedelta(minutes=2), start=moved, department="CARD"))
    stored, phone, texts = visit(app, env, csn)
    assert (stored.start_utc, stored.department) == (moved, "CARD")  # what changed is stored in every case
    if later == "S12":  # the same appointment ID booked anew (docs/hl7-intake.md)
        assert stored.status == "booked"
        assert phone == "+13125550164"
        assert texts["booked|2"] in ("pending", "sent")
        assert texts["reminder-1440|2"] == "pending"
        return
    assert stored.status == (ENDINGS[ending] if later in ("S13", "S14") else ENDINGS[later])
    assert stored.schedule_revision == 1
    assert phone is None
    assert set(texts) <= {"booked|1", "cancelled|1", "reminder-1440|1", "reminder-60|1"}
    assert not [kind for kind, state in texts.items() if state == "pending"]


def test_a_sender_whose_clock_keeps_utc_without_offsets_is_accepted_and_ordered(app, env):
    # The environment reads offset-less MSH-7 in New York time; this sender writes its UTC clock without an
    # offset, so every MSH-7 looks five hours ahead. Consistently so: its messages still order right.
    csn = "Z9001"
    utc_stamp = NOW.astimezone(UTC)
    booked = message("S12", "9001", csn=csn, msh7=utc_stamp.strftime("%Y%m%d%H%M%S"))
    cancelled = message("S15", "9002", csn=csn, msh7=(utc_stamp + timedelta(minutes=1)).strftime("%Y%m%d%H%M%S"))
    accepted(env, booked)
    accepted(env, cancelled)
    assert app.repos.appointments.get(appointment_key(env.id, csn)).status == "cancelled"


@pytest.mark.parametrize("version", ["2.3", "2.3.1"])
def test_a_version_where_msh7_is_optional_may_omit_it_and_is_ordered_by_arrival(app, env, version):
    csn = f"O{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", "8001", csn=csn, msh7="", version=version))
    accepted(env, message("S15", "8002", csn=csn, msh7="", version=version))  # arrives later: newer
    assert app.repos.appointments.get(appointment_key(env.id, csn)).status == "cancelled"


# ---- MSH-7 of different precision, and the hour the zone repeats ----------------------------------------------


@pytest.mark.parametrize(("booking_msh7", "cancel_msh7"), [
    ("20270302093005.123", "20270302093005"),   # the booking to the millisecond, its cancel to the second
    ("2027030209300512", "20270302093005"),     # Epic's 16 digits
    ("20270302093005", "202703020930"),         # to the second, then to the minute
    ("20270302093059.9", "202703020930"),
])
def test_a_cancel_stamped_less_precisely_in_the_same_second_or_minute_cancels(app, env, booking_msh7, cancel_msh7):
    csn = f"P{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", str(uuid.uuid4()), csn=csn, msh7=booking_msh7))
    accepted(env, message("S15", str(uuid.uuid4()), csn=csn, msh7=cancel_msh7))
    assert_cancelled_for_good(app, env, csn)


@pytest.mark.parametrize(("zone", "clock_utc", "first_pass", "second_pass"), [
    ("America/New_York", datetime(2026, 11, 1, 6, 30, tzinfo=UTC), "20261101015000", "20261101011000"),
    ("Europe/London", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "20261025015000", "20261025011000"),
    ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, 20, tzinfo=UTC), "20260405015500", "20260405014500"),
])
@pytest.mark.parametrize("ids", [("7001", "7002"), ("c0ffee-1", "beef-22")])  # a counter, unrelated IDs
def test_a_cancel_sent_in_the_second_pass_of_the_repeated_hour_cancels(app, clock, zone, clock_utc, first_pass,
                                                                       second_pass, ids):
    clock.set(clock_utc)
    env = make_environment(app, f"dst-{uuid.uuid4().hex[:8]}", time_zone=zone)
    csn = f"D{uuid.uuid4().hex[:8]}"
    start = clock_utc + timedelta(days=3)
    accepted(env, message("S12", ids[0], csn=csn, msh7=first_pass, start=start))
    accepted(env, message("S15", ids[1], csn=csn, msh7=second_pass, start=start))
    stored, _, texts = visit(app, env, csn)
    assert stored.status == "cancelled"
    assert not [kind for kind, state in texts.items() if kind.startswith("reminder") and state == "pending"]
