"""Start, end, duration and time zones (hl7.md §4, §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.hl7.errors import HL7Rejected
from lib.hl7.siu import parse_siu
from lib.hl7.times import parse_dtm, parse_duration, parse_duration_text
from tests.unit.hl7.samples import siu

NY = "America/New_York"


def parse(raw: bytes, tz: str = NY):
    return parse_siu(raw, time_zone=tz, default_region="US")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- source order -------------------------------------------------------------------------------


def test_tq1_start_and_end_win_over_sch11_and_sch9():
    m = parse(
        siu(
            "SCH||A1||||||||60|MIN|^^^202601201000^202601201100",
            "TQ1|1||||||202601200900|202601200920",
        )
    )
    assert (m.start_utc, m.end_utc, m.duration_minutes, m.start_source) == (
        utc(2026, 1, 20, 14, 0),
        utc(2026, 1, 20, 14, 20),
        20,
        "TQ1-7",
    )


def test_tq1_13_duration_when_tq1_has_no_end():
    m = parse(siu("SCH||A1", "TQ1|1||||||202601200900||||||45^min"))
    assert (m.duration_minutes, m.end_utc) == (45, utc(2026, 1, 20, 14, 45))


def test_sch11_start_and_end_when_no_tq1():
    m = parse(siu("SCH||A1|||||||||^^60^20260120084500^20260120093000"))
    assert (m.start_utc, m.duration_minutes, m.start_source) == (utc(2026, 1, 20, 13, 45), 45, "SCH-11.4")


@pytest.mark.parametrize(("text", "minutes"), [("M30", 30), ("60", 60), ("2 hours", 120), ("S1800", 30)])
def test_sch11_3_duration_text(text, minutes):
    m = parse(siu(f"SCH||A1|||||||||^^{text}^202601200900"))
    assert m.duration_minutes == minutes


def test_sch9_sch10_duration_when_sch11_has_only_a_start():
    m = parse(siu("SCH||A1|||||||30|MIN|^^^201005271115"))
    assert (m.duration_minutes, m.end_utc) == (30, utc(2010, 5, 27, 15, 45))


@pytest.mark.parametrize(
    ("amount", "unit", "minutes"),
    [
        ("30", "MIN", 30),
        ("30", "m", 30),
        ("30", "MINUTES", 30),
        ("30", "MINS", 30),
        ("30", "min", 30),
        ("1800", "s", 30),
        ("1800", "SEC", 30),
        ("1800", "seconds", 30),
        ("1", "H", 60),
        ("2", "hr", 120),
        ("1", "HOURS", 60),
        ("45", "m^Minutes", 45),
        ("20", "", 20),
    ],
)
def test_duration_units_are_case_insensitive_and_use_ce_component_1(amount, unit, minutes):
    m = parse(siu(f"SCH||A1|||||||{amount}|{unit}|^^^202601200900"))
    assert m.duration_minutes == minutes


def test_unknown_duration_unit_gives_no_duration():
    m = parse(siu("SCH||A1|||||||3|D|^^^202601200900"))
    assert (m.duration_minutes, m.end_utc) == (None, None)


@pytest.mark.parametrize(
    ("segment", "label"),
    [
        ("AIS|1||X^Visit|202601200900|||25|min", "AIS-4"),
        ("AIG|1||R1|||||202601200900|||1500|s", "AIG-8"),
        ("AIL|1||ROOM1|||202601200900|||25|MIN", "AIL-6"),
        ("AIP|1||DOC1|||202601200900|||25|MINUTES", "AIP-6"),
    ],
)
def test_resource_segment_start_and_duration_when_sch_has_no_time(segment, label):
    m = parse(siu("SCH||A1", "RGS|1", segment))
    assert (m.start_utc, m.duration_minutes, m.start_source) == (utc(2026, 1, 20, 14, 0), 25, label)


def test_ais_start_precedes_aip_start():
    m = parse(siu("SCH||A1", "RGS|1", "AIP|1||DOC1|||202601201000", "AIS|1||X|202601200900"))
    assert m.start_source == "AIS-4"


def test_end_before_start_is_ignored_and_duration_used():
    m = parse(siu("SCH||A1|||||||15|MIN|^^^202601200900^202601200800"))
    assert m.duration_minutes == 15


# --- DTM quirks ---------------------------------------------------------------------------------


def test_trailing_space_in_sch11_4_is_tolerated():
    m = parse(siu("SCH||A1|||||||20|MIN|^^^200803061000 "), tz="America/Chicago")
    assert m.start_utc == utc(2008, 3, 6, 16, 0)


def test_degree_of_precision_component_is_ignored():
    m = parse(siu("SCH||A1", "TQ1|1||||||202601150800^YYYYLLDDHHMM|202601150830^YYYYLLDDHHMM"), tz="Europe/Berlin")
    assert (m.start_utc, m.duration_minutes) == (utc(2026, 1, 15, 7, 0), 30)


def test_time_with_offset_is_an_instant_and_reports_the_offset():
    m = parse(siu("SCH||A1", "TQ1|1||||||20260516130000+0200|20260516133000+0200"))
    assert (m.start_utc, m.source_time_zone) == (utc(2026, 5, 16, 11, 0), "+02:00")


def test_negative_offset_with_zero_hours_keeps_its_sign():
    m = parse(siu("SCH||A1", "TQ1|1||||||202605161300-0030"))
    assert (m.start_utc, m.source_time_zone) == (utc(2026, 5, 16, 13, 30), "-00:30")


def test_time_without_offset_reports_the_iana_zone():
    assert parse(siu("SCH||A1|||||||||^^^202601200900")).source_time_zone == NY


def test_parse_dtm_16_digit_value_reads_extra_digits_as_fraction():
    assert parse_dtm("2010052711090012") == datetime(2010, 5, 27, 11, 9, 0, 120000)


@pytest.mark.parametrize("bad", ["2026013", "20261301", "2026-01-01", "abc", "20260120+25", "２０２６"])
def test_parse_dtm_rejects_invalid_values(bad):
    assert parse_dtm(bad) is None


def test_parse_duration_helpers():
    assert parse_duration("90", "S") == timedelta(seconds=90)
    assert parse_duration("x", "MIN") is None
    assert parse_duration_text("INDEF") is None
    assert parse_duration_text("M30") == timedelta(minutes=30)


# --- DST (rule in lib/hl7/times.py docstring) ---------------------------------------------------


def test_new_york_spring_forward_gap_time_is_shifted_forward_by_the_gap():
    # 2026-03-08 02:30 does not exist in New York; read as 03:30 EDT = 07:30 UTC.
    assert parse(siu("SCH||A1|||||||||^^^202603080230")).start_utc == utc(2026, 3, 8, 7, 30)


def test_new_york_fall_back_ambiguous_time_takes_the_first_occurrence():
    # 2026-11-01 01:30 happens twice; the first is EDT (-04:00) = 05:30 UTC.
    assert parse(siu("SCH||A1|||||||||^^^202611010130")).start_utc == utc(2026, 11, 1, 5, 30)


def test_rome_spring_forward_gap_time_is_shifted_forward_by_the_gap():
    # 2026-03-29 02:30 does not exist in Rome; read as 03:30 CEST = 01:30 UTC.
    m = parse(siu("SCH||A1|||||||||^^^202603290230"), tz="Europe/Rome")
    assert m.start_utc == utc(2026, 3, 29, 1, 30)


def test_rome_fall_back_ambiguous_time_takes_the_first_occurrence():
    # 2026-10-25 02:30 happens twice; the first is CEST (+02:00) = 00:30 UTC.
    m = parse(siu("SCH||A1|||||||||^^^202610250230"), tz="Europe/Rome")
    assert m.start_utc == utc(2026, 10, 25, 0, 30)


def test_duration_across_dst_change_is_elapsed_time():
    # 01:00 EST + 2 h elapsed = 04:00 EDT; the reported duration stays 120 minutes.
    m = parse(siu("SCH||A1|||||||120|MIN|^^^202603080100"))
    assert (m.start_utc, m.end_utc, m.duration_minutes) == (utc(2026, 3, 8, 6, 0), utc(2026, 3, 8, 8, 0), 120)


# --- missing / invalid start --------------------------------------------------------------------


@pytest.mark.parametrize("event", ["S12", "S13", "S14"])
def test_missing_start_is_rejected_101_for_booking_events(event):
    with pytest.raises(HL7Rejected) as info:
        parse(siu("SCH||A1", event=event))
    assert info.value.err_code == "101"
    assert info.value.reason.startswith("no appointment start time")


@pytest.mark.parametrize(("event", "status"), [("S15", "cancelled"), ("S17", "deleted"), ("S26", "noshow")])
def test_missing_start_is_allowed_for_cancel_delete_noshow(event, status):
    m = parse(siu("SCH||A1", event=event))
    assert (m.status, m.start_utc, m.end_utc, m.duration_minutes, m.source_time_zone) == (
        status,
        None,
        None,
        None,
        None,
    )


def test_unparseable_start_is_rejected_102_with_its_location():
    with pytest.raises(HL7Rejected) as info:
        parse(siu("SCH||A1", "TQ1|1||||||tomorrow"))
    assert (info.value.err_code, info.value.location) == ("102", "TQ1^1^7")


def test_date_only_start_is_not_precise_enough():
    with pytest.raises(HL7Rejected) as info:
        parse(siu("SCH||A1|||||||||^^^20260120"))
    assert info.value.err_code == "102"


def test_unknown_time_zone_is_a_configuration_error():
    with pytest.raises(ValueError, match="time zone"):
        parse_siu(siu("SCH||A1|||||||||^^^202601200900"), time_zone="Mars/Olympus", default_region="US")
