"""Best-effort reading of a message the intake refused: which visit it names, when that visit ends, and
whether it holds something phone-like.

A refused message is kept raw for the operator (container ``rejected``), and its bytes may hold the patient's
number. To delete it with its visit (docs/hl7-intake.md, "Phone numbers: kept only until the visit"), the
intake needs the visit even when the message is unacceptable for any reason: a character set it does not
decode, a control character, an unsupported event or version, broken MLLP framing, a field over a limit, a
start that does not parse. This reader therefore checks nothing:

- MLLP block characters (``0x0B``, ``0x1C``) are dropped wherever they are; CR, LF and CRLF all end a segment;
- the text is decoded as :meth:`lib.hl7.er7.Er7Message.from_bytes` does (MSH-18's character set, else UTF-8,
  else cp1252, else Latin-1; a byte the declared set refuses gives the Latin-1 reading), with the delimiters of
  MSH-1/MSH-2 when they are usable and the standard ``|^~\\&`` otherwise;
- the appointment ID follows the environment's ``appointment_id_order`` exactly as the SIU reader does
  (first non-empty of SCH-2.1, SCH-1.1, PV1-19.1, unescaped), so a refused message and an accepted one for the
  same visit name the same appointment key;
- start and end follow the SIU reader's time rules (:func:`lib.hl7.siu.visit_times`);
- ``phone_like`` says whether a repetition of PID-13, PID-14 or PID-40 holds at least seven digits (never which).

Nothing here raises: what cannot be read is ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lib.hl7.er7 import Er7Message, Separators
from lib.hl7.errors import NotHL7
from lib.hl7.siu import visit_times

__all__ = ["DEFAULT_ID_ORDER", "RefusedVisit", "read_refused"]

log = logging.getLogger(__name__)

#: The SIU reader's default appointment ID order (``EnvironmentConfig.appointment_id_order``).
DEFAULT_ID_ORDER: tuple[str, ...] = ("SCH-2", "SCH-1", "PV1-19")
_ID_FIELDS = {"SCH-2": ("SCH", 2), "SCH-1": ("SCH", 1), "PV1-19": ("PV1", 19)}
#: The fewest digits of a phone number anywhere (E.164 numbers have 7 to 15 with the country code).
PHONE_MIN_DIGITS = 7
_PHONE_FIELDS = (13, 14, 40)
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class RefusedVisit:
    """What could be read of a refused message's visit.

    Attributes:
        appointment_id: the appointment ID (``appointment_id_order``), or None.
        start_utc, end_utc: the visit's start and end (UTC), or None (end None also when only a start is given).
        phone_like: a PID-13/PID-14/PID-40 repetition holds at least :data:`PHONE_MIN_DIGITS` digits.
    """

    appointment_id: str | None
    start_utc: datetime | None
    end_utc: datetime | None
    phone_like: bool


def read_refused(
    raw: bytes, *, appointment_id_order: Sequence[str] = DEFAULT_ID_ORDER, time_zone: str | None = None
) -> RefusedVisit:
    """Read the visit of a refused message (module docstring); never raises.

    Args:
        raw: the request body exactly as received (framed or not, any line endings, any bytes).
        appointment_id_order: the environment's order (items ``SCH-2``, ``SCH-1``, ``PV1-19``; others ignored).
        time_zone: the IANA zone of times sent without an offset; None: no times are read.
    """
    try:
        msg = _tolerant_message(raw)
        appointment_id = _appointment_id(msg, appointment_id_order)
        start = end = None
        if time_zone is not None:
            try:
                start, end = visit_times(msg, time_zone)
            except (ValueError, OverflowError):  # a zone the environment should not have: no times
                start = end = None
        return RefusedVisit(appointment_id, start, end, _phone_like(msg))
    except Exception as exc:  # best effort on hostile bytes: a reading failure must never cost the keep itself
        log.warning("refused message not readable for its visit (%s)", type(exc).__name__)
        return RefusedVisit(None, None, None, False)


def _tolerant_message(raw: bytes) -> Er7Message:
    data = raw.replace(b"\x0b", b"").replace(b"\x1c", b"").strip()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    try:
        return Er7Message.from_bytes(data)  # decode problems and an unusable MSH-2 only set .problem
    except NotHL7:  # no MSH, or an unusable MSH-1: read the segments with the standard delimiters
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        return Er7Message(text, Separators(), "utf-8", "")


def _appointment_id(msg: Er7Message, order: Sequence[str]) -> str | None:
    for item in order:
        where = _ID_FIELDS.get(item)
        if where is None:
            continue
        value = msg.value(msg.first(where[0]), where[1])
        if value:
            return value
    return None


def _phone_like(msg: Er7Message) -> bool:
    pid = msg.first("PID")
    for field in _PHONE_FIELDS:
        for rep in msg.repetitions(pid, field):
            if sum(c.isdigit() for c in rep) >= PHONE_MIN_DIGITS:
                return True
    return False
