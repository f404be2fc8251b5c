"""SMS number choice from PID-13 / PID-40 / PID-14 (hl7.md §6). Numbers are fictional (555-01xx)."""

from __future__ import annotations

import pytest

from lib.hl7.siu import parse_siu
from tests.unit.hl7.samples import siu

SCH = "SCH||A1|||||||||^^^202601200900"


def pid(p13: str = "", p14: str = "", p40: str = "") -> str:
    fields = ["PID", "1", "", "MRN1", "", "DOE^JANE", "", "19800101", "F"] + [""] * 32
    fields[13], fields[14], fields[40] = p13, p14, p40
    return "|".join(fields).rstrip("|")


def sms(p13: str = "", p14: str = "", p40: str = "", region: str = "US"):
    m = parse_siu(siu(SCH, pid(p13, p14, p40)), time_zone="America/New_York", default_region=region)
    return m.sms_phone_e164, m.sms_phone_reason


def test_mobile_by_use_code_prs_wins_over_earlier_home_number():
    assert sms("(201)555-0101^PRN~(201)555-0123^PRS") == ("+12015550123", "mobile (PID-13 rep 2, use PRS)")


def test_mobile_by_equipment_cp():
    assert sms("^PRN^PH^^^201^5550101~^ORN^CP^^^201^5550123") == (
        "+12015550123",
        "mobile (PID-13 rep 2, equipment CP)",
    )


@pytest.mark.parametrize("field", ["(201)555-0123^MOBILE", "(201)555-0123^^^MOBILE", "(201)555-0123^cell"])
def test_mobile_by_word_in_xtn2_or_xtn4_is_case_insensitive(field):
    assert sms("(201)555-0101^HOME~" + field) == ("+12015550123", "mobile (PID-13 rep 2, text MOBILE/CELL)")


def test_xtn12_unformatted_number_is_preferred():
    assert sms("(201)555-0101^^CP^^^^^^^^^+1 201 555 0123")[0] == "+12015550123"


def test_xtn5_6_7_are_combined():
    assert sms("^PRS^CP^^1^201^5550123")[0] == "+12015550123"


EXTENSION = "no SMS number: the number has an extension"


@pytest.mark.parametrize(
    "p13",
    [
        "(201)555-0151 x12", "(201)555-0151 X12", "201-555-0151 ext 12", "201-555-0151 Ext. 12",
        "201.555.0151 extension 12", "+1 201 555 0151;ext=12", "(201)555-0151 #12", "201 555 0151, 12",
        "^PRN^^^1^201^5550151^12",  # XTN-8
        "^PRS^CP^^1^201^5550151^99",  # flagged mobile, but an extension: a switchboard line
        "(201)555-0151 x12^PRS^CP", "(201)555-0151^PRN^^^^^^12", "(201)555-0151 x12^^^^^^^^^^^2015550151",
    ],
)
def test_a_number_with_an_extension_is_not_texted(p13):
    assert sms(p13) == (None, EXTENSION)


def test_an_extension_in_pid14_or_pid40_is_not_texted_either():
    assert sms(p14="(201)555-0151 x12") == (None, EXTENSION)
    assert sms(p40="^PRN^^^1^201^5550151^12") == (None, EXTENSION)


def test_another_repetition_without_an_extension_is_still_texted():
    assert sms("(201)555-0151 x12^WPN~(201)555-0123^PRN~(201)555-0152 ext 3^PRS^CP") == (
        "+12015550123", "phone of unspecified type (PID-13 rep 2, number type FIXED_LINE_OR_MOBILE)")
    assert sms("(201)555-0151 ext 12~(201)555-0123^PRS") == ("+12015550123", "mobile (PID-13 rep 2, use PRS)")


@pytest.mark.parametrize("p13", ["1-800-FLOWERS^PRS", "(201)555-0123 cell", "201-555-0123 (mobile)^PRN"])
def test_letters_that_are_not_an_extension_do_not_count_as_one(p13):
    assert sms(p13)[1] != EXTENSION


def test_xtn1_digits_are_used_when_nothing_else():
    assert sms("201.555.0123^PRS")[0] == "+12015550123"


def test_email_only():
    assert sms("^NET^Internet^jane@example.com~^NET^X.400^j@example.com") == (
        None,
        "no SMS number: only e-mail addresses",
    )


def test_email_in_xtn1_with_email_word_is_skipped():
    assert sms("jane@example.com^EMAIL") == (None, "no SMS number: only e-mail addresses")


def test_fax_pager_and_tdd_are_skipped():
    assert sms("(201)555-0101^WPN^FX~(201)555-0102^BPN~(201)555-0103^^BP~(201)555-0104^^TDD~(201)555-0105^^TTY") == (
        None,
        "no SMS number: only fax, pager or TDD/TTY numbers",
    )


def test_pid13_empty():
    assert sms() == (None, "no SMS number: PID-13 empty")


def test_hl7_null_is_empty():
    assert sms('""', '""^BUSINESS') == (None, "no SMS number: PID-13 empty")


def test_landline_only_gives_no_sms_number():
    # UK geographic numbers are FIXED_LINE for phonenumbers.
    assert sms("020 7946 0999^PRN^PH", region="GB") == (None, "no SMS number: only a landline")


def test_unknown_type_us_number_is_used_because_it_can_be_a_mobile():
    assert sms("(608)555-0100") == (
        "+16085550100",
        "phone of unspecified type (PID-13 rep 1, number type FIXED_LINE_OR_MOBILE)",
    )


def test_unknown_type_number_classified_mobile_is_used():
    assert sms("0172 5550123", region="DE") == (
        "+491725550123",
        "phone of unspecified type (PID-13 rep 1, number type MOBILE)",
    )


def test_later_flagged_mobile_wins_over_earlier_unknown_type():
    assert sms("(608)555-0100", p14="(201)555-0123^^CP")[1] == "mobile (PID-14 rep 1, equipment CP)"


def test_pid40_is_searched_before_pid14():
    assert sms(p14="(201)555-0101^^CP", p40="(201)555-0123^^CP") == (
        "+12015550123",
        "mobile (PID-40 rep 1, equipment CP)",
    )


def test_invalid_mobile_is_skipped_and_reported():
    assert sms("555-0142^PRS") == (None, "no SMS number: the mobile number is not valid (PID-13 rep 1)")


def test_invalid_numbers_only():
    assert sms("12^PRN") == (None, "no SMS number: no valid phone number")


def test_default_region_applies_to_numbers_without_country_code():
    assert sms("01725550123^^CP", region="DE")[0] == "+491725550123"


def test_explicit_country_code_overrides_default_region():
    assert sms("+49 172 5550123^^CP", region="US")[0] == "+491725550123"


def test_reason_never_contains_the_number():
    for p13 in ("(201)555-0123^PRS", "(608)555-0100", "555-0142^PRS", "020 7946 0999^PRN"):
        _e164, reason = sms(p13, region="US")
        assert "555" not in reason and "0123" not in reason and "7946" not in reason


def test_hex_escape_inside_number_is_decoded():
    assert sms("\\X2B\\1 201 555 0123^PRS")[0] == "+12015550123"  # \X2B\ is "+"


def test_no_pid_segment():
    m = parse_siu(siu(SCH), time_zone="America/New_York", default_region="US")
    assert (m.sms_phone_e164, m.sms_phone_reason) == (None, "no SMS number: no PID segment")


def test_unknown_region_is_a_configuration_error():
    with pytest.raises(ValueError, match="region"):
        parse_siu(siu(SCH), time_zone="America/New_York", default_region="XX")
