"""HL7 v2 SIU intake: framing, header, SIU reader and ACK builder (plain Python, no Azure).

Public API::

    unframe(body: bytes) -> bytes
    read_header(raw: bytes) -> MessageHeader
    parse_siu(raw: bytes, *, time_zone: str, default_region: str,
              appointment_id_order: Sequence[str] = ("SCH-2", "SCH-1", "PV1-19")) -> SiuMessage
    build_ack(header: MessageHeader | None, *, code: str, reason: str | None = None,
              err_code: str | None = None, now: datetime, control_id: str,
              error_location: str | None = None) -> bytes
    HL7Rejected, NotHL7

Field guide and sources: ``docs/references.md`` (HL7 v2, cited as ``hl7.md §N``); rules: ``docs/hl7-intake.md``.
"""

from lib.hl7.ack import build_ack
from lib.hl7.errors import HL7Rejected, NotHL7
from lib.hl7.framing import unframe
from lib.hl7.header import MessageHeader, read_header
from lib.hl7.siu import SiuMessage, parse_siu

__all__ = [
    "HL7Rejected",
    "MessageHeader",
    "NotHL7",
    "SiuMessage",
    "build_ack",
    "parse_siu",
    "read_header",
    "unframe",
]
