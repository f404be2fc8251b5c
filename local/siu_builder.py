"""Builds SIU messages shaped like Epic Cadence's outgoing feed, with fictional data (demo and tests).

The layout follows Epic's published S12 example (``tests/fixtures/hl7-samples/01-epic-cadence-spec-s12-v23.hl7``):
SCH-2 = PV1-19 = the CSN, start in SCH-11.4, duration in SCH-9/10, provider in AIP-3, department in PV1-3.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def siu(
    event: str,
    *,
    csn: str,
    start: datetime,
    control_id: str,
    sent: datetime,
    time_zone: str = "America/New_York",
    phone: str = "(201)555-0123",
    duration_minutes: int = 30,
    processing_id: str = "T",
    language: str = "ENG",
    provider: str = "E1001",
    department: str = "IM",
) -> bytes:
    """One SIU^``event`` message (bytes, ``\\r``-separated) for appointment ``csn`` starting at ``start``.

    Times are written as local time in ``time_zone`` without an offset, as Epic sends them.
    """
    zone = ZoneInfo(time_zone)
    local_start = start.astimezone(zone).strftime("%Y%m%d%H%M")
    local_sent = sent.astimezone(zone).strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|SCHED|DEMO HOSPITAL|VIRTUALVISITS|CONNECTOR|{local_sent}||SIU^{event}|{control_id}|"
        f"{processing_id}|2.3",
        f"SCH||{csn}|||||||{duration_minutes}|MIN|^^^{local_start}||||||||||||||1^SCH",
        f"PID|1||Z999001||PATIENT^DEMO||19800101|F|||1 MAIN ST^^ANYTOWN^NY^10001||{phone}||{language}",
        f"PV1||O|{department}||||{provider}^CLINICIAN^DEMO||||||||||||{csn}",
        "RGS|1||1^INTERNAL MEDICINE",
        "AIS|1||VV^VIDEO VISIT",
        f"AIP|1||{provider}^CLINICIAN^DEMO|1^MD||{local_start}|0|MIN|{duration_minutes}|MIN",
    ]
    return ("\r".join(segments) + "\r").encode()
