"""The best-effort reader of refused messages: the visit is read whatever made the message unacceptable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.hl7.salvage import read_refused
from lib.hl7.siu import parse_siu
from local.siu_builder import siu

START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
SENT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
NY = "America/New_York"


def message(**kw) -> bytes:
    return siu(kw.pop("event", "S12"), csn=kw.pop("csn", "8000001"), start=START, control_id="C1", sent=SENT, **kw)


def test_an_acceptable_message_reads_exactly_as_the_siu_reader_reads_it():
    parsed = parse_siu(message(), time_zone=NY, default_region="US")
    visit = read_refused(message(), time_zone=NY)
    assert (visit.appointment_id, visit.start_utc, visit.end_utc) == (parsed.appointment_id, parsed.start_utc,
                                                                      parsed.end_utc)
    assert visit.phone_like


@pytest.mark.parametrize("body", [
    b"\x0b" + message(),                                  # start block, no end block
    b"\x0b" + message() + b"\x1c\rgarbage",              # data after the end block
    message().replace(b"\r", b"\n"),                      # LF only
    message().replace(b"\r", b"\r\n"),                    # CRLF
    message().replace(b"\rPID|", b"\nPID|"),              # mixed
    b"\xef\xbb\xbf" + message(),                          # UTF-8 byte order mark
    message().replace(b"ANYTOWN", b"ANYT\xff\x00WN"),     # bytes no charset reads, a NUL
    message().replace(b"|T|2.3", b"|T|2.3||||||EBCDIC"),  # an unsupported MSH-18
    message().replace(b"MSH|^~\\&|", b"MSH|^^\\&|"),      # unusable MSH-2
    message().replace(b"MSH|", b"MSX|", 1),               # no MSH at all
    message().replace(b"SIU^S12", b"SIU^S99"),           # unknown event
])
def test_the_visit_is_read_from_a_message_refused_for_any_reason(body):
    visit = read_refused(body, time_zone=NY)
    assert visit.appointment_id == "8000001"
    assert visit.end_utc == datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
    assert visit.phone_like


def test_the_configured_order_decides_which_id_is_read():
    body = message().replace(b"CLINICIAN^DEMO||||||||||||8000001", b"CLINICIAN^DEMO||||||||||||V-7")
    assert read_refused(body, appointment_id_order=("PV1-19", "SCH-2")).appointment_id == "V-7"
    assert read_refused(body, appointment_id_order=("ZZZ-1", "SCH-1")).appointment_id is None  # unknown items skipped


def test_without_a_zone_no_times_are_read_and_a_bad_zone_reads_none():
    assert read_refused(message()).end_utc is None
    visit = read_refused(message(), time_zone="Mars/Olympus_Mons")
    assert (visit.appointment_id, visit.end_utc) == ("8000001", None)


def test_a_number_of_fewer_than_seven_digits_is_not_phone_like():
    assert not read_refused(message(phone="12-34")).phone_like
    assert read_refused(message(phone="^PRN^CP^^1^201^5550147")).phone_like


@pytest.mark.parametrize("body", [b"", b"\x00" * 100, b"MSH", b"MSH|", b"\xff\xfe" * 50, b"SCH||X" * 1000])
def test_hostile_bytes_never_raise(body):
    read_refused(body, time_zone=NY)
