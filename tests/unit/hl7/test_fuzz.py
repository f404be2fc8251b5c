"""Robustness: any input gives a SiuMessage, HL7Rejected or NotHL7, never another exception."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.hl7.ack import build_ack
from lib.hl7.errors import HL7Rejected, NotHL7
from lib.hl7.header import read_header
from lib.hl7.siu import SiuMessage, parse_siu
from tests.unit.hl7.samples import load_sample, sample_names, siu

SAMPLES = [load_sample(n) for n in sample_names()]
_NOW = datetime(2026, 1, 1, tzinfo=UTC)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(raw: bytes) -> SiuMessage | HL7Rejected | NotHL7:
    """parse_siu, and when it parses or is rejected, also read_header + build_ack (must not fail)."""
    try:
        result: SiuMessage | HL7Rejected | NotHL7 = parse_siu(raw, time_zone="Europe/Rome", default_region="IT")
    except (HL7Rejected, NotHL7) as exc:
        result = exc
    if not isinstance(result, NotHL7):
        try:
            header = read_header(raw)
        except HL7Rejected:
            header = None
        code = "AA" if isinstance(result, SiuMessage) else result.ack_code
        reason = None if isinstance(result, SiuMessage) else result.reason
        ack = build_ack(
            header,
            code=code,
            reason=reason,
            now=_NOW,
            control_id="FUZZ",
            error_location=getattr(result, "location", None),
        )
        assert ack.endswith(b"\r")
    return result


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes(raw):
    outcome(raw)


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_after_an_msh_prefix(tail):
    outcome(b"MSH|^~\\&|A|B|C|D|20260101||SIU^S12|1|P|2.5\r" + tail)


@FUZZ
@given(
    sample=st.sampled_from(SAMPLES),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_byte_flips_of_samples(sample, flips):
    data = bytearray(sample)
    for pos, value in flips:
        data[pos % len(data)] = value
    outcome(bytes(data))


@FUZZ
@given(sample=st.sampled_from(SAMPLES), cut=st.integers(0, 4000))
def test_truncations_of_samples(sample, cut):
    outcome(sample[: cut % (len(sample) + 1)])


@FUZZ
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_duplicated_and_shuffled_segments_of_samples(sample, data):
    segs = sample.replace(b"\n", b"\r").split(b"\r")
    picks = data.draw(st.lists(st.integers(0, len(segs) - 1), max_size=20))
    body = [segs[0]] + [segs[i] for i in picks]
    outcome(b"\r".join(body))


@FUZZ
@given(
    sample=st.sampled_from(SAMPLES), framing=st.sampled_from([b"\x0b", b"\x1c", b"\x1c\r", b"\xef\xbb\xbf", b"\r\n"])
)
def test_framing_bytes_anywhere(sample, framing):
    outcome(framing + sample)
    outcome(sample + framing)
    outcome(sample[: len(sample) // 2] + framing + sample[len(sample) // 2 :])


def test_ten_thousand_repetitions_in_pid13_are_refused_quickly():
    reps = "~".join(["1"] * 10_000)  # 19,999 characters: under the field size limit
    started = time.perf_counter()
    m = outcome(siu("SCH||A1|||||||||^^^202601200900", f"PID|1||M1||||||||||{reps}"))
    assert isinstance(m, HL7Rejected)
    assert (m.reason, m.location) == ("PID-13 has 10000 repetitions; at most 100 are accepted", "PID^1^13")
    assert time.perf_counter() - started < 5


def test_ten_thousand_repetitions_in_sch11_are_refused():
    m = outcome(siu("SCH||A1|||||||||" + "~".join(["^^^"] * 10_000) + "~^^^202601200900"))
    assert isinstance(m, HL7Rejected)
    assert m.location == "SCH^1^11"


def test_one_megabyte_field_is_refused_quickly():
    big = "A" * 1_000_000
    started = time.perf_counter()
    m = outcome(siu("SCH||A1|||||||||^^^202601200900", f"NTE|1||{big}", f"PID|1||M1||||||||||{big}"))
    assert isinstance(m, HL7Rejected)
    assert m.reason == "NTE-3 has 1000000 characters; at most 32768 are accepted per field"
    assert time.perf_counter() - started < 5


def test_one_megabyte_appointment_id_is_kept_and_time_field_rejected_cleanly():
    big = "9" * 1_000_000
    assert isinstance(outcome(siu(f"SCH||{big}|||||||||^^^{big}")), HL7Rejected)


def test_ten_thousand_repeated_resource_segments_are_refused_quickly():
    started = time.perf_counter()
    resources = ["AIL|1||^^^", "AIP|1||^Name", "TQ1|1||||||bad"] * 10_000
    m = outcome(siu("SCH||A1|||||||||^^^202601200900", *resources))
    assert isinstance(m, HL7Rejected)
    assert m.reason == "the message has 30002 segments; at most 500 are accepted"
    assert time.perf_counter() - started < 5
