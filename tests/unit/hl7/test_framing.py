"""unframe(): MLLP block removal, BOM/whitespace stripping, segment separator normalisation."""

from __future__ import annotations

import pytest

from lib.hl7.errors import NotHL7
from lib.hl7.framing import unframe

MSG = b"MSH|^~\\&|A|B|C|D|20260101||SIU^S12|1|P|2.5\rSCH||42"


def test_bare_message_is_returned_without_trailing_cr():
    assert unframe(MSG + b"\r") == MSG


def test_mllp_block_is_removed():
    assert unframe(b"\x0b" + MSG + b"\r\x1c\r") == MSG


def test_mllp_end_block_without_trailing_cr_is_accepted():
    assert unframe(b"\x0b" + MSG + b"\x1c") == MSG


def test_mllp_start_without_end_is_rejected_as_not_hl7():
    with pytest.raises(NotHL7, match="start block"):
        unframe(b"\x0b" + MSG + b"\r")


def test_mllp_end_without_start_is_rejected_as_not_hl7():
    with pytest.raises(NotHL7, match="end block"):
        unframe(MSG + b"\r\x1c\r")


def test_data_after_mllp_end_block_is_rejected():
    with pytest.raises(NotHL7, match="after end block"):
        unframe(b"\x0b" + MSG + b"\x1c\r\x0b" + MSG + b"\x1c\r")


def test_utf8_bom_and_surrounding_whitespace_are_stripped():
    assert unframe(b"\xef\xbb\xbf  \r\n" + MSG + b"\r\n\r\n  ") == MSG


def test_bom_inside_mllp_block_is_stripped():
    assert unframe(b"\x0b\xef\xbb\xbf" + MSG + b"\x1c\r") == MSG


@pytest.mark.parametrize("sep", [b"\n", b"\r\n", b"\r"])
def test_lf_crlf_and_cr_separators_all_become_cr(sep):
    assert unframe(MSG.replace(b"\r", sep) + sep) == MSG


def test_crlf_is_one_break_and_a_bare_lf_stays_in_its_field_when_the_message_uses_cr():
    assert unframe(b"MSH|^~\\&\r\nNTE|1||line one\nline two|X\rPV1|1") == (
        b"MSH|^~\\&\rNTE|1||line one\nline two|X\rPV1|1"
    )


def test_lf_only_message_is_split_on_lf_even_with_a_trailing_cr():
    assert unframe(b"MSH|^~\\&\nSCH|1\nPID|1\r\n") == b"MSH|^~\\&\rSCH|1\rPID|1"


def test_unframe_is_idempotent():
    once = unframe(b"\x0b" + MSG.replace(b"\r", b"\r\n") + b"\x1c\r")
    assert unframe(once) == once


def test_empty_body_gives_empty_bytes():
    assert unframe(b"  \r\n ") == b""
