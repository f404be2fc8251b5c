"""Bytes, framing and header rules of the HL7 intake (docs/hl7-intake.md "What is refused").

Each class of quirk is a rule; every test builds its own fictional message (numbers 555-01xx) and asserts
the exact refusal (reason, table 0357 code, ERR-2 location) or the exact value read.
"""

from __future__ import annotations

import pytest

from lib.hl7.errors import HL7Rejected
from lib.hl7.header import read_header
from lib.hl7.siu import SUPPORTED_VERSIONS, parse_siu
from lib.hl7.wellformed import MAX_REPETITIONS, MAX_SEGMENTS
from tests.unit.hl7.samples import load_sample, sample_names, siu

SCH = "SCH||A1|||||||||^^^202601200900"
PID = "PID|1||M1||DOE^JANE||19800101|F|||||(201)555-0123^PRN^CP"


def parse(raw: bytes, **kw):
    return parse_siu(raw, time_zone="America/New_York", default_region="US", **kw)


def rejected(raw: bytes) -> HL7Rejected:
    with pytest.raises(HL7Rejected) as info:
        parse(raw)
    assert info.value.ack_code == "AR"
    assert read_header(raw).control_id  # always addressable: the AR echoes MSH-10
    return info.value


# ---------------------------------------------------------------- control characters


@pytest.mark.parametrize(
    ("char", "name"), [("\x0b", "000B"), ("\x00", "0000"), ("\x1c", "001C"), ("\x07", "0007"), ("\t", "0009"),
                       ("\x7f", "007F"), ("\x85", "0085")]
)
def test_control_character_inside_a_field_is_refused_with_its_place(char, name):
    error = rejected(siu(SCH, f"PID|1||M1||DOE^JA{char}NE"))
    assert error.reason.startswith(f"control character U+{name} inside PID-5:")
    assert (error.err_code, error.location) == ("102", "PID^1^5")


def test_vertical_tab_in_the_middle_of_an_unframed_body_is_refused():
    error = rejected(siu(SCH) + b"\x0b" + b"PID|1||M1")
    assert error.reason.startswith("control character U+000B at the start of segment 3:")
    assert error.location is None


def test_control_character_in_msh_is_placed_by_msh_numbering():
    error = rejected(siu(SCH).replace(b"|SCHED|", b"|SC\x01HED|"))
    assert error.location == "MSH^1^3"


# ---------------------------------------------------------------- character sets


def test_bytes_invalid_in_declared_utf8_are_refused_never_replaced():
    body = siu(SCH, msh18="UNICODE UTF-8").replace(b"SCH||A1", b"SCH||A\xff1")
    error = rejected(body)
    assert "not valid in the character set MSH-18 declares (UNICODE UTF-8)" in error.reason
    assert (error.err_code, error.location) == ("102", "MSH^1^18")


def test_bytes_invalid_in_declared_ascii_are_refused():
    body = siu(SCH, msh18="ASCII").replace(b"SCH||A1", "SCH||Aé1".encode())
    assert rejected(body).location == "MSH^1^18"


def test_unsupported_character_set_is_refused_and_the_supported_ones_named():
    error = rejected(siu(SCH, msh18="UNICODE UTF-16"))
    assert error.reason.startswith("MSH-18 character set 'UNICODE UTF-16' is not supported; supported are ")
    assert "8859/1" in error.reason and error.err_code == "103"


def test_declared_latin1_reads_non_ascii_and_undeclared_utf8_stays_utf8():
    assert parse(siu("SCH||Ä1|||||||||^^^202601200900", msh18="8859/1")).appointment_id == "Ä1"
    assert parse(siu("SCH||Ä1|||||||||^^^202601200900")).appointment_id == "Ä1"


def test_undeclared_bytes_that_are_not_text_in_any_fallback_are_refused_as_controls():
    # 0x81 is undefined in cp1252, so the latin-1 reading gives the C1 control U+0081.
    error = rejected(siu(SCH).replace(b"SCH||A1", b"SCH||A\x811"))
    assert error.reason.startswith("control character U+0081 inside SCH-2")


# ---------------------------------------------------------------- one message per body


def test_two_messages_in_one_body_are_refused_whole():
    first = siu(SCH, control_id="M1")
    second = siu("SCH||A2|||||||||^^^202601210900", control_id="M2")
    error = rejected(first + second)
    assert error.reason == (
        "the body holds 2 messages (MSH segments); send one message per request (nothing of this body was applied)"
    )
    assert read_header(first + second).control_id == "M1"


@pytest.mark.parametrize("batch", ["BHS|^~\\&|X", "FHS|^~\\&|X"])
def test_batch_headers_before_msh_are_refused(batch):
    body = batch.encode() + b"\r" + siu(SCH)
    assert "batches (FHS/BHS) are not supported" in rejected(body).reason


def test_batch_trailer_after_the_message_is_refused():
    assert rejected(siu(SCH, "BTS|1")).reason.startswith("batch segment BTS found")


# ---------------------------------------------------------------- line endings


def test_lf_inside_a_field_of_a_cr_message_stays_in_the_field_and_later_fields_are_read():
    body = siu("SCH||A1|||||||||^^^202601200900", "NTE|1||first line\nsecond line", PID)
    m = parse(body)
    assert m.sms_phone_e164 == "+12015550123"  # PID after the NTE is still its own segment
    assert m.appointment_id == "A1"


def test_lf_inside_a_field_before_later_fields_of_the_same_segment_keeps_them():
    # The LF sits in PID-5; PID-13 after it must still be read as PID-13.
    m = parse(siu(SCH, "PID|1||M1||DOE\nJANE||19800101|F|||||(201)555-0123^PRN^CP"))
    assert m.sms_phone_e164 == "+12015550123"


def test_lf_that_starts_what_looks_like_a_segment_in_a_cr_message_is_refused():
    body = siu(SCH).rstrip(b"\r") + b"\nPID|1||M1\r"
    error = rejected(body)
    assert error.reason.startswith("mixed line endings: a bare LF inside SCH-11 is followed by what looks like")


def test_lf_only_message_is_read_with_lf_as_the_segment_separator():
    assert parse(siu(SCH, PID, sep="\n")).sms_phone_e164 == "+12015550123"


# ---------------------------------------------------------------- MSH-2


@pytest.mark.parametrize(
    "msh2", ["^", "^~", "^~\\", "^^\\&", "^~~&", "&~\\&", "^~\\&&", "^~\\&#xx", "a~\\&", "^ \\&"]
)
def test_unusable_msh2_gets_ar_102_echoing_msh10_never_the_default_delimiters(msh2):
    body = siu(SCH, control_id="CTRL-42").replace(b"MSH|^~\\&|", b"MSH|" + msh2.encode() + b"|", 1)
    assert read_header(body).control_id == "CTRL-42"
    error = rejected(body)
    assert (error.err_code, error.location) == ("102", "MSH^1^2")


def test_five_encoding_characters_with_truncation_are_accepted():
    body = siu(SCH).replace(b"MSH|^~\\&|", b"MSH|^~\\&#|", 1)
    assert parse(body).appointment_id == "A1"


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.10", "3.0", "2.5.9", "x"])
def test_unsupported_versions_get_ar_203_naming_the_supported_ones(version):
    error = rejected(siu(SCH, msh_extra=f"P|{version}"))
    assert error.reason.startswith(f"unsupported version '{version}' in MSH-12: supported are 2.3, 2.3.1,")
    assert (error.err_code, error.location) == ("203", "MSH^1^12")


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_supported_version_is_read(version):
    assert parse(siu(SCH, msh_extra=f"P|{version}")).appointment_id == "A1"


def test_every_fixture_version_is_supported():
    for name in sample_names():
        version = read_header(load_sample(name)).version
        assert version in SUPPORTED_VERSIONS, name


# ---------------------------------------------------------------- limits


def test_a_field_at_the_repetition_limit_is_read_and_one_more_is_refused():
    at_limit = "~".join(["^NET^Internet^a@example.com"] * (MAX_REPETITIONS - 1) + ["(201)555-0123^PRN^CP"])
    assert parse(siu(SCH, f"PID|1||M1||||||||||{at_limit}")).sms_phone_e164 == "+12015550123"
    over = at_limit + "~^NET"
    error = rejected(siu(SCH, f"PID|1||M1||||||||||{over}"))
    assert (error.reason, error.location) == (
        f"PID-13 has {MAX_REPETITIONS + 1} repetitions; at most {MAX_REPETITIONS} are accepted", "PID^1^13"
    )


def test_segment_count_limit():
    notes = [f"NTE|{i}||note" for i in range(MAX_SEGMENTS - 2)]
    assert parse(siu(SCH, *notes)).appointment_id == "A1"
    assert rejected(siu(SCH, *notes, "NTE|x||one too many")).reason == (
        f"the message has {MAX_SEGMENTS + 1} segments; at most {MAX_SEGMENTS} are accepted"
    )


def test_the_fixtures_stay_far_below_the_limits():
    for name in sample_names():
        text = load_sample(name).replace(b"\r\n", b"\r").replace(b"\n", b"\r").decode("utf-8", "replace")
        segments = [s for s in text.split("\r") if s]
        assert len(segments) < MAX_SEGMENTS // 10, name
        assert max(f.count("~") + 1 for s in segments for f in s.split("|")) < MAX_REPETITIONS // 10, name


# ---------------------------------------------------------------- MSH-4 binding


@pytest.mark.parametrize(
    ("binding", "allowed"),
    [
        ((), True),
        (("TESTFAC",), True),
        (("testfac",), True),
        (("OTHER", "TESTFAC"), True),
        (("OTHER",), False),
        (("TEST",), False),
    ],
)
def test_sending_facility_binding_matches_the_whole_msh4_or_its_namespace(binding, allowed):
    assert read_header(siu(SCH)).sent_by_any_of(binding) is allowed


def test_sending_facility_binding_reads_components_with_the_message_own_separator():
    body = siu(SCH).replace(b"MSH|^~\\&|SCHED|TESTFAC|", b"MSH|$~\\&|SCHED|GHH$2.16.840.1$ISO|", 1)
    header = read_header(body)
    assert header.sent_by_any_of(("GHH^2.16.840.1^ISO",)) and header.sent_by_any_of(("GHH",))
    assert not header.sent_by_any_of(("GHH$2.16.840.1$ISO",))


# ---------------------------------------------------------------- the AR never carries raw control bytes


def test_ar_for_control_characters_echoes_them_hex_escaped():
    from datetime import UTC, datetime

    from lib.hl7.ack import build_ack

    body = siu(SCH, control_id="C\x001").replace(b"|TESTFAC|", b"|TEST\x0bFAC|")
    header = read_header(body)
    ack = build_ack(header, code="AR", reason=rejected(body).reason, err_code="102",
                    now=datetime(2026, 1, 1, tzinfo=UTC), control_id="A1")
    assert not any(b < 0x20 and b != 0x0D for b in ack)
    assert b"MSA|AR|C\\X00\\1" in ack and b"|TEST\\X0B\\FAC|" in ack


def test_ar_to_a_message_with_unusable_delimiters_uses_the_standard_ones():
    from datetime import UTC, datetime

    from lib.hl7.ack import build_ack

    body = siu(SCH).replace(b"MSH|^~\\&|", b"MSH^~\\&|", 1)  # MSH-1 '^' collides with the default component
    header = read_header(body)
    with pytest.raises(HL7Rejected) as info:
        parse(body)
    error = info.value
    ack = build_ack(header, code="AR", reason=error.reason, err_code=error.err_code,
                    now=datetime(2026, 1, 1, tzinfo=UTC), control_id="A1").decode()
    msh, msa = ack.split("\r")[:2]
    assert msh.startswith("MSH|^~\\&|") and msa.startswith("MSA|AR|")
