"""Warm-up of the HL7 intake's parsers: one fictional message read and acknowledged at instance start.

The first message a process reads pays one-time costs that no later message does: phone-number metadata
for the region, the time-zone database, compiled patterns and caches of the reader. Reading this fictional
message (no real person; a 555-01xx number) at start moves them out of the first real request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lib.hl7.ack import build_ack
from lib.hl7.framing import unframe
from lib.hl7.header import read_message
from lib.hl7.siu import siu_from_message

_SAMPLE = (
    b"MSH|^~\\&|SCHED|WARMUP|VIRTUALVISITS|CONNECTOR|20260101090000||SIU^S12|WARMUP-1|T|2.3\r"
    b"SCH||1|||||||30|MIN|^^^202601021000||||||||||||||1^SCH\r"
    b"PID|1||0||WARMUP^SAMPLE||19800101|F|||||(201)555-0100||ENG\r"
    b"PV1||O|IM||||E0^SAMPLE^WARMUP||||||||||||1\r"
    b"AIP|1||E0^SAMPLE^WARMUP|1^MD||202601021000|0|MIN|30|MIN\r"
)


def exercise_intake_parsers(*, time_zone: str = "America/New_York", region: str = "US") -> None:
    """Read and acknowledge the fictional sample (nothing is stored or sent)."""
    raw = unframe(_SAMPLE)
    decoded, header = read_message(raw)  # the intake's own path: decoded once, then read as an SIU
    siu_from_message(decoded, header, time_zone=time_zone, default_region=region)
    build_ack(header, code="AA", now=datetime.now(UTC), control_id="warmup")
