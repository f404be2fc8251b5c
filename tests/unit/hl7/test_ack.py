"""build_ack(): original/enhanced mode, header swap, MSA, ERR layouts per version, escaping, charset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import hl7
import pytest

from lib.hl7.ack import build_ack
from lib.hl7.errors import HL7Rejected
from lib.hl7.header import read_header
from lib.hl7.siu import parse_siu
from tests.unit.hl7.samples import load_sample, siu

NOW = datetime(2026, 1, 10, 9, 30, 5, tzinfo=UTC)


def segments(ack: bytes, codec: str = "utf-8") -> list[list[str]]:
    assert ack.endswith(b"\r")
    return [s.split("|") for s in ack.decode(codec).rstrip("\r").split("\r")]


def test_aa_for_epic_example_swaps_sender_and_receiver_and_echoes_msh10():
    ack = build_ack(read_header(load_sample("01")), code="AA", now=NOW, control_id="ACK0001")
    assert ack == (
        b"MSH|^~\\&|RECEIVING APP|RECEIVINGFAC|SCHED|SENDING FAC|20260110093005+0000||ACK^S12^ACK|ACK0001|P|2.3\r"
        b"MSA|AA|1055\r"
    )


def test_enhanced_mode_maps_aa_to_ca():
    ack = build_ack(read_header(load_sample("10")), code="AA", now=NOW, control_id="C1")
    assert segments(ack)[1] == ["MSA", "CA", "0000000000820336"]


@pytest.mark.parametrize(("code", "enhanced"), [("AE", "CE"), ("AR", "CR")])
def test_enhanced_mode_maps_errors_to_ce_cr(code, enhanced):
    ack = build_ack(read_header(load_sample("10")), code=code, reason="x", err_code="207", now=NOW, control_id="C1")
    assert segments(ack)[1][1] == enhanced


def test_original_mode_keeps_commit_codes_as_application_codes():
    ack = build_ack(read_header(load_sample("01")), code="CA", now=NOW, control_id="C1")
    assert segments(ack)[1][1] == "AA"


def test_msh7_is_utc_with_explicit_offset():
    now = datetime(2026, 1, 10, 10, 30, 5, tzinfo=timezone(timedelta(hours=1)))
    ack = build_ack(read_header(load_sample("01")), code="AA", now=now, control_id="C1")
    assert segments(ack)[0][6] == "20260110093005+0000"


def test_msh11_msh12_copied_and_msh9_uses_inbound_trigger():
    msh = segments(build_ack(read_header(load_sample("19")), code="AA", now=NOW, control_id="C1"))[0]
    assert (msh[8], msh[10], msh[11]) == ("ACK^S12^ACK", "P", "2.8")
    assert msh[2:6] == [
        "EHRApp^1.Aux^ISO",
        "GHHRFacility^2.16.840.1.1122848.1.32^ISO",
        "SCHApp",
        "GHHSFacility^2.16.840.1.122848.1.30^ISO",
    ]


def test_escaped_sender_is_echoed_byte_for_byte():
    ack = build_ack(read_header(load_sample("30")), code="AR", reason="r", err_code="200", now=NOW, control_id="C1")
    assert segments(ack)[0][3] == "MirthHL7Test\\S\\MirthHL7Test\\S\\GUID"


def test_v25_error_ack_has_err2_location_err3_code_err4_severity():
    try:
        parse_siu(siu("PID|1"), time_zone="UTC", default_region="US")
    except HL7Rejected as e:
        rej = e
    ack = build_ack(
        read_header(siu("PID|1")),
        code=rej.ack_code,
        reason=rej.reason,
        err_code=rej.err_code,
        now=NOW,
        control_id="C1",
        error_location=rej.location,
    )
    segs = segments(ack)
    assert segs[1] == ["MSA", "AR", "MSG0001", "the SCH segment is missing (required in SIU messages)"]
    assert segs[2] == [
        "ERR",
        "",
        "SCH^1",
        "101^Required field missing^HL70357",
        "E",
        "",
        "",
        "",
        "the SCH segment is missing (required in SIU messages)",
    ]


def test_v23_error_ack_puts_location_and_code_in_err1():
    ack = build_ack(
        read_header(load_sample("01")),
        code="AR",
        reason="no appointment ID",
        err_code="101",
        now=NOW,
        control_id="C1",
        error_location="SCH^1^2",
    )
    assert segments(ack)[2] == ["ERR", "SCH^1^2^101&Required field missing&HL70357&&no appointment ID"]


def test_v24_error_ack_without_location():
    ack = build_ack(read_header(load_sample("27")), code="AR", reason="r", err_code="200", now=NOW, control_id="C1")
    assert segments(ack)[2] == ["ERR", "^^^200&Unsupported message type&HL70357&&r"]


def test_reason_separators_are_escaped_and_msa3_is_shortened_to_80():
    reason = "bad | field ^ with ~ and & and \\ " + "x" * 100
    ack = build_ack(read_header(load_sample("19")), code="AE", reason=reason, err_code="207", now=NOW, control_id="C1")
    msa = segments(ack)[1]
    assert msa[3].startswith("bad \\F\\ field \\S\\ with \\R\\ and \\T\\ and \\E\\...")
    parsed = hl7.parse(ack.decode())
    assert parsed.extract_field("MSA", 1, 3) == "bad | field ^ with ~ and & and \\..."
    assert parsed.extract_field("ERR", 1, 8) == " ".join(reason.split())


# A reason of 150 characters whose 80th character falls inside a word ("connector").
LONG_REASON = (
    "MSH-7 (date/time of message) is 300 days ahead of the connector's clock (at most 5 min allowed): "
    "check the sending system's clock and time zone"
)


def _fields(ack: bytes) -> dict[str, list[str]]:
    return {seg[0]: seg for seg in segments(ack)}


@pytest.mark.parametrize("sample", ["01", "27"])  # v2.3 (Epic's example) and v2.4
def test_pre_v25_ack_shortens_msa3_at_a_word_and_keeps_the_whole_reason_in_err1(sample):
    ack = build_ack(read_header(load_sample(sample)), code="AR", reason=LONG_REASON, err_code="102", now=NOW,
                    control_id="C1", error_location="MSH^1^7")
    fields = _fields(ack)
    msa3 = fields["MSA"][3]
    assert len(msa3) <= 80
    assert msa3.endswith("...")
    assert LONG_REASON.startswith(msa3[:-3])
    assert LONG_REASON[len(msa3) - 3] == " "  # cut between two words, never inside one
    code = fields["ERR"][1].split("^")[3].split("&")
    assert code == ["102", "Data type error", "HL70357", "", LONG_REASON]
    assert fields["ERR"][1].startswith("MSH^1^7^")


def test_v251_ack_shortens_msa3_the_same_way_and_has_the_whole_reason_in_err8():
    ack = build_ack(read_header(load_sample("17")), code="AR", reason=LONG_REASON, err_code="102", now=NOW,
                    control_id="C1", error_location="MSH^1^7")
    fields = _fields(ack)
    assert fields["MSH"][11] == "2.5.1"
    assert fields["MSA"][3].endswith("...") and len(fields["MSA"][3]) <= 80
    assert fields["ERR"][8] == LONG_REASON
    assert fields["ERR"][3] == "102^Data type error^HL70357"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short reason", "short reason"),
        ("x" * 80, "x" * 80),
        ("word " * 20, ("word " * 15).rstrip() + "..."),
        ("supported are 2.3, 2.3.1, 2.4, 2.5, 2.5.1, 2.6, 2.7, 2.7.1, 2.8, 2.8.1, 2.8.2, 2.9, 2.9.1 (v2.1...)",
         "supported are 2.3, 2.3.1, 2.4, 2.5, 2.5.1, 2.6, 2.7, 2.7.1, 2.8, 2.8.1, 2.8.2..."),  # exactly 80
        ("y" * 120, "y" * 77 + "..."),  # one word longer than the field: cut inside it, marked
    ],
)
def test_shorten_cuts_at_the_last_whole_word_and_marks_the_cut(text, expected):
    from lib.hl7.ack import shorten

    assert shorten(text) == expected
    assert len(shorten(text)) <= 80


def test_error_ack_defaults_to_207():
    ack = build_ack(read_header(load_sample("19")), code="AE", reason="store down", now=NOW, control_id="C1")
    assert segments(ack)[2][3] == "207^Application internal error^HL70357"


def test_ack_without_header_uses_defaults_and_empty_msa2():
    ack = build_ack(None, code="AR", reason="unreadable", err_code="102", now=NOW, control_id="C1")
    segs = segments(ack)
    assert segs[0] == ["MSH", "^~\\&", "", "", "", "", "20260110093005+0000", "", "ACK", "C1", "P", "2.5"]
    assert segs[1] == ["MSA", "AR", "", "unreadable"]


def test_ack_is_encoded_in_the_inbound_charset_and_copies_msh18():
    raw = siu("SCH||A1", msh18="8859/1").replace(b"VVFAC", b"Kr\xe4nkenhaus")
    ack = build_ack(read_header(raw), code="AA", now=NOW, control_id="C1")
    assert b"Kr\xe4nkenhaus" in ack
    assert segments(ack, "latin-1")[0][17] == "8859/1"


def test_ack_parses_with_python_hl7_and_echoes_control_id():
    ack = build_ack(read_header(load_sample("12")), code="AA", now=NOW, control_id="C1")
    parsed = hl7.parse(ack.decode())
    assert parsed.extract_field("MSA", 1, 2) == "8615615175374780398"
    assert parsed.extract_field("MSH", 1, 9, 1, 2) == "S12"


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        build_ack(None, code="AA", now=datetime(2026, 1, 1), control_id="C1")


def test_unknown_code_is_refused():
    with pytest.raises(ValueError):
        build_ack(None, code="OK", now=NOW, control_id="C1")


def test_hl7rejected_location_keyword_form():
    e = HL7Rejected("MSH-11 does not match", err_code="202", location="MSH^1^11")
    assert (e.segment, e.field, e.location, e.ack_code) == ("MSH", 11, "MSH^1^11", "AR")
