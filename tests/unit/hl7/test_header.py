"""read_header(): MSH fields for routing and the ACK, for any message type."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lib.hl7.errors import HL7Rejected, NotHL7
from lib.hl7.header import read_header
from lib.hl7.siu import parse_siu
from tests.unit.hl7.samples import load_sample


def test_epic_header_fields_and_16_digit_msh7():
    h = read_header(load_sample("01"))
    assert h.sending_application == "SCHED"
    assert h.sending_facility == "SENDING FAC"
    assert h.receiving_application == "RECEIVING APP"
    assert h.receiving_facility == "RECEIVINGFAC"
    assert h.message_datetime_raw == "2010052711090000"
    assert h.message_datetime == datetime(2010, 5, 27, 11, 9, 0)
    assert (h.message_type, h.trigger_event, h.message_structure) == ("SIU", "S12", "")
    assert (h.control_id, h.processing_id, h.version) == ("1055", "P", "2.3")
    assert (h.accept_ack_type, h.application_ack_type, h.charset) == ("", "", "")
    assert h.enhanced_mode is False
    assert h.codec == "utf-8"


def test_hd_fields_are_kept_raw_with_components():
    h = read_header(load_sample("19"))
    assert h.sending_facility == "GHHSFacility^2.16.840.1.122848.1.30^ISO"
    assert h.message_structure == "SIU_S12"
    assert h.message_datetime == datetime(2021, 9, 14, 11, 20, tzinfo=timezone(timedelta(hours=2, minutes=15)))


def test_msh15_msh16_mean_enhanced_mode():
    h = read_header(load_sample("10"))
    assert (h.accept_ack_type, h.application_ack_type) == ("AL", "NE")
    assert h.enhanced_mode is True


def test_charset_8859_1_decodes_latin1():
    h = read_header(load_sample("15"))
    assert (h.charset, h.codec) == ("8859/1", "latin-1")


def test_charset_unicode_utf8():
    h = read_header(load_sample("12"))
    assert (h.charset, h.codec) == ("UNICODE UTF-8", "utf-8")


def test_fractional_seconds_and_offset_in_msh7():
    h = read_header(load_sample("18"))
    assert h.sending_application == "^Receiving system with facility"
    assert h.message_datetime == datetime(2015, 5, 8, 11, 50, 35, 20000, tzinfo=timezone(timedelta(hours=2)))


def test_ack_message_header_is_readable_and_flagged():
    h = read_header(load_sample("30"))
    assert h.is_ack is True
    assert h.receiving_facility == "MirthHL7Test\\S\\MirthHL7Test\\S\\GUID"
    assert h.control_id == "FF23563C-0D00-4a86-9F9D-D9B5D1E37839"


def test_non_siu_header_is_readable():
    h = read_header(load_sample("27"))
    assert (h.message_type, h.trigger_event, h.control_id) == ("ORU", "R01", "CNTRL-3456")


def test_body_without_msh_is_not_hl7():
    with pytest.raises(NotHL7, match="no MSH segment"):
        read_header(b"hello world")


def test_alphanumeric_field_separator_is_not_hl7():
    with pytest.raises(NotHL7):
        read_header(b"MSHA^~\\&A")


def test_duplicated_encoding_characters_leave_the_header_addressable_and_the_message_rejected_102():
    body = b"MSH|^^\\&|A|B|C|D|2026||SIU^S12|1|P|2.5"
    assert read_header(body).control_id == "1"  # the AR can echo MSH-10
    with pytest.raises(HL7Rejected) as info:
        parse_siu(body, time_zone="UTC", default_region="US")
    assert (info.value.err_code, info.value.location) == ("102", "MSH^1^2")


def test_junk_before_msh_leaves_the_header_addressable_and_the_message_rejected():
    body = b"garbage line\rMSH|^~\\&|A|B|C|D|2026||SIU^S12|77|P|2.5\rSCH||1"
    assert read_header(body).control_id == "77"
    with pytest.raises(HL7Rejected, match="content before the MSH segment"):
        parse_siu(body, time_zone="UTC", default_region="US")


def test_cp1252_fallback_when_msh18_absent_and_bytes_not_utf8():
    h = read_header(b"MSH|^~\\&|Caf\xe9|B|C|D|2026||SIU^S12|1|P|2.5")
    assert (h.codec, h.sending_application) == ("cp1252", "Café")
