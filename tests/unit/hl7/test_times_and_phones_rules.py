"""Start-time precedence, XTN use codes, XTN-1 versus XTN-5..7, and the HL7 null in PID-13/14.

Fictional messages; numbers are 555-01xx.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.hl7.siu import parse_siu
from tests.unit.hl7.samples import siu

PID = "PID|1||M1||DOE^JANE||19800101|F"


def parse(*segments: str, zone: str = "America/New_York", region: str = "US", **kw):
    return parse_siu(siu(*segments, **kw), time_zone=zone, default_region=region)


def phone(p13: str = "", p14: str = "", region: str = "US"):
    m = parse("SCH||A1|||||||||^^^202601200900", f"{PID}|||||{p13}|{p14}", region=region)
    return m.sms_phone_e164, m.sms_phone_reason


# ---------------------------------------------------------------- start precedence


def test_v23_start_in_sch11_1_wins_over_resource_segments_with_only_a_date_at_midnight():
    m = parse("SCH||A1|||||||||20260120140000", "AIS|1||V^Video|202601200000", "AIP|1||D1^DOC|||202601200000")
    assert (m.start_utc, m.start_source) == (datetime(2026, 1, 20, 19, 0, tzinfo=UTC), "SCH-11.1")


def test_sch11_1_start_and_sch11_2_end_are_read_together():
    m = parse("SCH||A1|||||||||20260120140000^20260120143000")
    assert (m.start_utc, m.end_utc, m.duration_minutes) == (
        datetime(2026, 1, 20, 19, 0, tzinfo=UTC), datetime(2026, 1, 20, 19, 30, tzinfo=UTC), 30
    )


def test_a_quantity_in_sch11_1_is_not_a_start():
    m = parse("SCH||A1|||||||||1^^30^202601201400")
    assert (m.start_source, m.start_utc) == ("SCH-11.4", datetime(2026, 1, 20, 19, 0, tzinfo=UTC))


@pytest.mark.parametrize("midnight_first", ["AIS|1||V|202601200000", "AIG|1||R|||||202601200000"])
def test_a_resource_start_with_a_time_of_day_wins_over_an_earlier_midnight_one(midnight_first):
    m = parse("SCH||A1", midnight_first, "AIL|1||ROOM1|||202601201415")
    assert (m.start_source, m.start_utc) == ("AIL-6", datetime(2026, 1, 20, 19, 15, tzinfo=UTC))


def test_midnight_sch11_4_loses_to_a_resource_time_of_day():
    m = parse("SCH||A1|||||||||^^^202601200000", "AIP|1||D1^DOC|||202601201400")
    assert (m.start_source, m.start_utc) == ("AIP-6", datetime(2026, 1, 20, 19, 0, tzinfo=UTC))


def test_midnight_is_still_used_when_it_is_the_only_start():
    m = parse("SCH||A1", "AIS|1||V|202601200000")
    assert (m.start_source, m.start_utc) == ("AIS-4", datetime(2026, 1, 20, 5, 0, tzinfo=UTC))


# ---------------------------------------------------------------- offsets versus the zone


def test_start_offset_that_disagrees_with_the_zone_is_noted_without_phi():
    m = parse("SCH||A1", "TQ1|1||||||202601201400+0200", zone="America/New_York")
    assert m.offset_disagreement == "TQ1-7 offset +02:00 differs from America/New_York (-05:00 at that time)"


def test_start_offset_that_matches_the_zone_is_not_noted():
    assert parse("SCH||A1", "TQ1|1||||||202607201400-0400").offset_disagreement is None
    assert parse("SCH||A1", "TQ1|1||||||202601201400").offset_disagreement is None  # no offset sent


# ---------------------------------------------------------------- XTN use codes


def test_landline_prn_ph_is_not_texted_even_when_the_number_could_be_a_mobile():
    assert phone("(201)555-0101^PRN^PH") == (None, "no SMS number: only a landline")


@pytest.mark.parametrize("use", ["WPN", "EMR", "ASN"])
def test_work_emergency_and_answering_numbers_are_not_texted(use):
    assert phone(f"(201)555-0101^{use}") == (
        None, "no SMS number: only work, emergency-contact or answering-service numbers"
    )


def test_work_mobile_is_not_texted_either():
    assert phone("(201)555-0101^WPN^CP")[0] is None


def test_a_mobile_after_landline_and_work_numbers_is_texted():
    assert phone("(201)555-0101^PRN^PH~(201)555-0102^WPN~(201)555-0123^PRN^CP") == (
        "+12015550123", "mobile (PID-13 rep 3, equipment CP)"
    )


def test_personal_use_code_wins_over_a_generic_telephone_equipment_code():
    assert phone("(201)555-0123^PRS^PH") == ("+12015550123", "mobile (PID-13 rep 1, use PRS)")


def test_unflagged_number_after_a_landline_is_still_considered():
    assert phone("(201)555-0101^PRN^PH~(201)555-0123")[0] == "+12015550123"


# ---------------------------------------------------------------- XTN-1 versus XTN-5..7


def test_structured_number_wins_when_both_forms_are_valid_and_differ():
    assert phone("(201)555-0101^PRN^CP^^1^201^5550123") == (
        "+12015550123", "mobile (PID-13 rep 1, equipment CP, XTN-1 differs: structured number used)"
    )


def test_xtn1_is_used_when_the_structured_form_is_not_valid():
    assert phone("(201)555-0123^PRN^CP^^1^^12") == (
        "+12015550123", "mobile (PID-13 rep 1, equipment CP, structured number not valid: XTN-1 used)"
    )


def test_agreeing_forms_give_no_note():
    assert phone("(201)555-0123^PRN^CP^^1^201^5550123") == ("+12015550123", "mobile (PID-13 rep 1, equipment CP)")


def test_xtn12_wins_over_split_and_formatted_forms():
    assert phone("(201)555-0101^PRN^CP^^1^201^5550102^^^^^+12015550123")[0] == "+12015550123"


# ---------------------------------------------------------------- HL7 null


@pytest.mark.parametrize(("p13", "p14"), [('""', ""), ("", '""'), ('""', '""')])
def test_hl7_null_in_pid13_or_pid14_is_an_explicit_delete(p13, p14):
    m = parse("SCH||A1|||||||||^^^202601200900", f"{PID}|||||{p13}|{p14}")
    assert (m.sms_phone_e164, m.phone_cleared) == (None, True)


def test_empty_pid13_and_pid14_leave_the_stored_number_alone():
    m = parse("SCH||A1|||||||||^^^202601200900", f"{PID}||||||||")
    assert (m.sms_phone_e164, m.phone_cleared) == (None, False)


def test_null_in_pid14_with_a_mobile_in_pid13_keeps_the_mobile():
    m = parse("SCH||A1|||||||||^^^202601200900", f'{PID}|||||(201)555-0123^PRN^CP|""')
    assert (m.sms_phone_e164, m.phone_cleared) == ("+12015550123", False)
