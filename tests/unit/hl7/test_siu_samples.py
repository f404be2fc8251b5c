"""Every fixture sample (as it is, read in binary) parses to exact values or is rejected with a known code.

Per-sample configuration = the time zone and phone region of the sender's site (from SOURCES.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.hl7.errors import HL7Rejected, NotHL7
from lib.hl7.siu import parse_siu
from tests.unit.hl7.samples import SITE, load_sample, sample_names

REJECTED = {
    "05": "101",  # SIU^S12 without SCH
    "27": "200",  # ORU^R01
    "28": "200",  # ADT^A01
    "30": "200",  # an ACK
}

FIELDS = (
    "appointment_id",
    "start_utc",
    "duration_minutes",
    "status",
    "sms_phone_e164",
    "language",
    "department",
    "provider_ehr_id",
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


NO_MOBILE_REP1 = "no SMS number: the mobile number is not valid (PID-13 rep 1)"
NO_MOBILE_REP2 = "no SMS number: the mobile number is not valid (PID-13 rep 2)"

# prefix: (appointment_id, start_utc, duration, status, phone, language, department, provider, phone reason)
EXPECTED = {
    "01": ("36996", utc(2010, 5, 27, 16, 15), 30, "booked", None, None, "IM", "400",
           "no SMS number: no valid phone number"),
    "03": ("00331839401", utc(2008, 3, 6, 16, 0), 20, "booked", "+18325550187", None, "HHR", "PBN",
           "phone of unspecified type (PID-13 rep 1, number type FIXED_LINE_OR_MOBILE)"),
    "04": ("2196178", utc(2011, 6, 17, 12, 45), 45, "booked", "+12605550199", None, "OFFICE", "1",
           "phone of unspecified type (PID-13 rep 1, number type FIXED_LINE_OR_MOBILE)"),
    "07": ("ID123", utc(2014, 11, 20, 12, 31), 1, "booked", None, None, None, None, NO_MOBILE_REP2),
    "08": ("ID123", None, None, "cancelled", None, None, None, None, NO_MOBILE_REP2),
    "10": ("APT001", utc(2019, 10, 24, 8, 45), 10, "noshow", None, None, None, "CONS001", NO_MOBILE_REP2),
    "11": ("149549027", utc(2024, 11, 13, 10, 0), 60, "noshow", None, None, "RNJ Renal SBH", "C3590850",
           NO_MOBILE_REP1),
    "12": ("a-ëqcdl7hwscfuze4w", utc(2026, 5, 16, 11, 0), 30, "booked", "+491725550123", None, None, None,
           "mobile (PID-13 rep 1, equipment CP)"),
    "14": ("a-ëqcdl7hwscfuze4w", utc(2026, 5, 16, 12, 0), 30, "cancelled", None, None, None, None,
           "no SMS number: PID-13 empty"),
    "15": ("567890", utc(2026, 1, 15, 7, 0), 30, "booked", None, None, "room-1", "radiologist",
           "no SMS number: PID-13 empty"),
    "17": ("49849903800", utc(2016, 12, 31, 10, 0), 30, "noshow", None, None, None, None,
           "no SMS number: only a landline"),
    "18": ("46374637", utc(2016, 1, 20, 20, 0), 37, "booked", None, None, None, None,
           "no SMS number: no PID segment"),
    "19": ("36996", utc(2021, 9, 24, 7, 15), 50, "booked", None, "ar", "055", "1210", NO_MOBILE_REP1),
    "21": ("36996", utc(2021, 9, 24, 7, 15), 50, "booked", None, "ar", "055", "1210", NO_MOBILE_REP1),
    "22": ("36996", utc(2021, 9, 24, 7, 15), 50, "booked", None, "ar", "055", "1210", NO_MOBILE_REP1),
    "23": ("36996", utc(2021, 9, 24, 7, 15), 50, "cancelled", None, "ar", "055", "1210", NO_MOBILE_REP1),
    "24": ("36996", utc(2021, 9, 24, 7, 15), 50, "deleted", None, "ar", "055", "1210", NO_MOBILE_REP1),
    "25": ("36996", utc(2021, 9, 24, 7, 15), 50, "noshow", None, "ar", "055", "1210", NO_MOBILE_REP1),
}  # fmt: skip


def parse(prefix: str):
    tz, region = SITE.get(prefix, ("America/New_York", "US"))
    return parse_siu(load_sample(prefix), time_zone=tz, default_region=region)


def test_every_sample_is_classified():
    prefixes = {name[:2] for name in sample_names()}
    assert prefixes, "no samples found"
    assert prefixes == set(EXPECTED) | set(REJECTED)


@pytest.mark.parametrize("name", sample_names())
def test_every_sample_parses_or_is_rejected_with_its_code(name):
    prefix = name[:2]
    if prefix in REJECTED:
        with pytest.raises(HL7Rejected) as info:
            parse(prefix)
        assert info.value.err_code == REJECTED[prefix]
    else:
        try:
            parse(prefix)
        except (HL7Rejected, NotHL7) as exc:  # pragma: no cover - failure message only
            pytest.fail(f"{name} was rejected: {exc!r}")


@pytest.mark.parametrize("prefix", sorted(EXPECTED))
def test_sample_fields_exact(prefix):
    m = parse(prefix)
    *values, reason = EXPECTED[prefix]
    assert {f: getattr(m, f) for f in FIELDS} == dict(zip(FIELDS, values, strict=True))
    assert m.sms_phone_reason == reason


def test_epic_example_ids_and_resources():
    m = parse("01")
    assert (m.placer_id, m.filler_id, m.visit_number, m.appointment_id_source) == ("1", "36996", "36996", "SCH-2")
    assert (m.visit_type, m.filler_status_hint, m.end_utc) == ("001", "1", utc(2010, 5, 27, 16, 45))
    assert (m.start_source, m.source_time_zone) == ("SCH-11.4", "America/Chicago")


def test_corepoint_trailing_space_start_and_sch8_visit_type():
    m = parse("03")
    assert (m.visit_type, m.filler_status_hint, m.department_name) == ("HLCK", "ARRIVED", "FPCS TRAN, MD")


def test_pkb_pid_before_sch_uses_placer_id():
    m = parse("07")
    assert (m.appointment_id_source, m.start_source, m.end_utc) == ("SCH-1", "SCH-11.4", utc(2014, 11, 20, 12, 32))


def test_nhs_pas_numeric_sch25_is_only_a_hint():
    m = parse("10")
    assert (m.status, m.filler_status_hint, m.visit_type) == ("noshow", "5", "1")


def test_samedi_utf8_offsets_and_sch11_3():
    m = parse("12")
    assert (m.start_source, m.source_time_zone, m.end_utc, m.visit_type) == (
        "TQ1-7",
        "+02:00",
        utc(2026, 5, 16, 11, 30),
        "1",
    )
    assert m.header.codec == "utf-8"


def test_samedi_8859_1_without_offsets_uses_site_zone():
    m = parse("15")
    assert (m.source_time_zone, m.header.codec, m.visit_type) == (
        "Europe/Berlin",
        "latin-1",
        "Sprechstunde, Karin Vogel",
    )


def test_forwarder_minimal_s12_takes_its_duration_from_tq1_6_service_duration():
    m = parse("18")
    assert (m.start_source, m.source_time_zone, m.end_utc) == ("TQ1-7", "+01:00", utc(2016, 1, 20, 20, 37))


def test_fhir_converter_lf_sample_is_read_and_tq1_end_beats_sch9_seconds():
    # SCH-9/10 say "60|s" (one minute) but TQ1-8 gives the real end: 50 minutes.
    m = parse("19")
    assert (m.duration_minutes, m.visit_number, m.department_name, m.visit_type) == (50, "5001", "Room01", "76164006")


def test_fhir_converter_s14_carries_the_new_room():
    assert parse("22").department_name == "Room02"
