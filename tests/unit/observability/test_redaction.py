"""Redaction: each kind of sensitive value is removed; ordinary operational text is kept."""

from __future__ import annotations

import logging

import pytest

from lib.observability.redaction import RedactionFilter, add_known_names, redact, redact_record

SIU = (
    "MSH|^~\\&|SCHED|DEMO HOSPITAL|VIRTUALVISITS|CONNECTOR|20260101120000||SIU^S12|C1|T|2.3\r"
    "PID|1||Z999001||PATIENT^DEMO||19800101|F|||1 MAIN ST^^ANYTOWN^NY^10001||(201)555-0123||ENG\r"
)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("phone (201)555-0123 given", "555-0123"),
        ("phone 201-555-0123", "201-555-0123"),
        ("phone 201.555.0123", "201.555.0123"),
        ("phone 201 555 0123", "201 555 0123"),
        ("to=+12015550123 now", "+12015550123"),
        ("uk +44 20 7946 0958.", "7946"),
        ("bare 2015550123 digits", "2015550123"),
        ("bare 12015550123 digits", "12015550123"),
        ("bare 4294967294 is not a limit", "4294967294"),
        ("bare 2147483646 is not a limit", "2147483646"),
        ("local 555-0123 only", "555-0123"),
        ("mail jane.doe+x@example.org!", "jane.doe"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("token eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJ4In0.c2ln", "eyJhbGciOiJSUzM4NCJ9"),
        ('{"access_token": "s3cr3t-value"}', "s3cr3t-value"),
        ("client_assertion=abc123&x=1", "abc123"),
        ("GET /api/launch/callback?code=AUTHCODE1&state=STATE99", "AUTHCODE1"),
        ("GET /api/launch/callback?code=AUTHCODE1&state=STATE99", "STATE99"),
        ("link https://x/api/join/AbCdEfGhIjKlMnOp_123", "AbCdEfGhIjKlMnOp_123"),
        ("AccountKey=Eby8vdM02xNOcq==;", "Eby8vdM02xNOcq"),
        ("name PATIENT^DEMO in a field", "PATIENT^DEMO"),
        ("provider E1001^CLINICIAN^DEMO", "CLINICIAN"),
    ],
)
def test_sensitive_values_are_removed(text, secret):
    assert secret not in redact(text)


def test_hl7_segments_are_removed_to_the_end_of_their_line_keeping_the_segment_id():
    out = redact("could not parse: " + SIU)
    assert "PATIENT" not in out and "555" not in out and "MAIN ST" not in out and "DEMO HOSPITAL" not in out
    assert out.startswith("could not parse: MSH|[redacted]")
    assert "PID|[redacted]" in out


def test_hl7_text_inside_a_bytes_repr_is_removed():
    out = redact(repr(SIU.encode()))
    assert "PATIENT" not in out and "555-0123" not in out


@pytest.mark.parametrize(
    "text",
    [
        "hl7 accepted env=demo msh10=7001234-1 event=S12 outcome=created texts=2",
        "struct.error: 'I' format requires 0 <= number <= 4294967295",
        "ttl must be at most 2147483647 seconds",
        "function=hl7_intake trigger=http outcome=succeeded status=200 duration_ms=12.5",
        "launch_provider failed code=INTERNAL_ERROR correlation=3f2a9b1c4d5e6f708192a3b4c5d6e7f8",
        "sms t-abc|7001234|reminder_24h|1 kind=reminder_24h outcome=sent at 2026-01-01T15:00:00+00:00",
        "HL7 time 20260101150000 and CSN 7001234",
        "listening on http://127.0.0.1:7171",
    ],
)
def test_operational_text_is_kept(text):
    assert redact(text) == text


def test_known_names_are_removed_as_whole_words_in_any_case():
    add_known_names(["HOLMAN", "Jo"])  # "Jo" is too short to be safe and is ignored
    assert redact("patient Holman arrived; holmanville stays; Jo stays") == (
        "patient [name] arrived; holmanville stays; Jo stays"
    )


def test_a_record_is_rewritten_with_its_arguments_and_exception():
    try:
        raise ValueError("bad phone +12015550123 for PATIENT^DEMO")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "sending to %s failed", ("(201)555-0123",), exc_info)
    redact_record(record)
    assert record.getMessage() == "sending to [phone] failed"
    assert record.exc_info is None
    assert "ValueError: bad phone [phone] for [hl7]" in record.exc_text
    assert logging.Formatter().format(record).endswith("for [hl7]")


def test_chained_exceptions_are_redacted_too():
    try:
        try:
            raise KeyError("jane@example.org")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert RedactionFilter().filter(record) is True
    assert "jane@example.org" not in record.exc_text and "[email]" in record.exc_text


def test_an_unformattable_message_is_replaced_not_raised():
    record = logging.LogRecord("x", logging.INFO, __file__, 7, "%s %s", ("only one",), None)
    redact_record(record)
    assert record.getMessage() == "[unformattable log message from x:7]"
