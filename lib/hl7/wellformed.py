"""Well-formedness of one decoded message: one message per body, printable text, bounded sizes.

Each rule refuses the whole message with an ``AR`` whose reason names the rule and the place (segment
and field position, never the content), because a message cut, merged or silently truncated is worse
than one the sender is asked to fix (docs/hl7-intake.md, "What is refused"):

- **One message per body.** A second MSH segment (two messages pasted together) or a batch segment
  (FHS, BHS, BTS, FTS) refuses the body: batches are not supported.
- **One kind of line ending.** In a CR-separated message a bare LF stays inside its field (a line
  break in free text); when what follows it looks like a segment (``\nPID|``), the sender mixed
  separators and the message is refused rather than read with segments missing.
- **No control characters.** HL7 text is printable characters plus escape sequences (HL7 v2 chapter 2,
  data type ST/TX); a C0 control (NUL, VT, FS, TAB...), DEL or a C1 control inside the message is refused.
  The segment separator ``\\r`` is allowed, and so is ``\\n`` inside a field of a CR-separated message
  (a line break in free text, see :mod:`lib.hl7.framing`).
- **Limits.** At most :data:`MAX_SEGMENTS` segments, :data:`MAX_FIELD_CHARS` characters per field and
  :data:`MAX_REPETITIONS` repetitions per field. Real SIU messages stay far below them (the largest
  fixture has 18 segments, a 195-character field and 4 repetitions); a message above them is refused
  rather than truncated.

Costs stay linear: each segment is measured with ``len`` and ``str.count``; a segment is split into
fields only when one of its totals exceeds a per-field limit.
"""

from __future__ import annotations

import re

from lib.hl7.er7 import Er7Message
from lib.hl7.errors import HL7Rejected

__all__ = ["MAX_FIELD_CHARS", "MAX_REPETITIONS", "MAX_SEGMENTS", "check_wellformed"]

MAX_SEGMENTS = 500
MAX_FIELD_CHARS = 32 * 1024
MAX_REPETITIONS = 100
_BATCH_SEGMENTS = ("FHS", "BHS", "BTS", "FTS")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x0c\x0e-\x1f\x7f-\x9f]")


def _place(text: str, index: int, field_sep: str) -> tuple[str, int]:
    """(segment ID, field number) of character ``index`` of the message text (MSH counts MSH-1)."""
    seg_start = text.rfind("\r", 0, index) + 1
    seg_id = text[seg_start : seg_start + 3]
    field = text.count(field_sep, seg_start, index)
    return seg_id, field + (1 if seg_id == "MSH" else 0)


def check_wellformed(msg: Er7Message) -> None:
    """Refuse a body that is not exactly one printable HL7 message within the limits.

    Raises:
        HL7Rejected: ``AR``; 100 (segment sequence error) for a second MSH or a batch segment, 102 (data
            type error) for a control character or a field over a limit, 100 for too many segments.
    """
    text = msg.text
    fs = msg.seps.field
    segments = text.split("\r")
    if len(segments) > MAX_SEGMENTS:
        raise HL7Rejected(
            f"the message has {len(segments)} segments; at most {MAX_SEGMENTS} are accepted", "100"
        )
    msh_count = 0
    for seg in segments:
        sid = seg[:3]
        if sid == "MSH" and seg[3:4] == fs:
            msh_count += 1
        elif sid in _BATCH_SEGMENTS and seg[3:4] == fs:
            raise HL7Rejected(
                f"batch segment {sid} found: batches are not supported; send one message per request",
                "100",
                segment=sid,
            )
    if msh_count > 1:
        raise HL7Rejected(
            f"the body holds {msh_count} messages (MSH segments); send one message per request "
            "(nothing of this body was applied)",
            "100",
            segment="MSH",
        )
    if "\n" in text:  # CR-separated message with a bare LF (framing keeps it inside its field)
        mixed = re.search(r"\n[A-Z][A-Z0-9]{2}" + re.escape(fs), text)
        if mixed is not None:
            seg_id, field = _place(text, mixed.start(), fs)
            raise HL7Rejected(
                f"mixed line endings: a bare LF inside {seg_id}-{field} is followed by what looks like a "
                f"segment ({mixed.group()[1:4]}); segments end in CR here, so nothing after it would be read as "
                "its own segment: send one kind of segment separator",
                "100",
                segment=seg_id,
                field=field,
            )
    bad = _CONTROL.search(text)
    if bad is not None:
        seg_id, field = _place(text, bad.start(), fs)
        if not (seg_id.isascii() and seg_id.isalnum()):  # before or inside a segment ID
            number = text.count("\r", 0, bad.start()) + 1
            raise HL7Rejected(
                f"control character U+{ord(bad.group()):04X} at the start of segment {number}: HL7 text must be "
                "printable (MLLP block characters belong only around a framed message)",
                "102",
            )
        raise HL7Rejected(
            f"control character U+{ord(bad.group()):04X} inside {seg_id}-{field}: HL7 text must be printable "
            "(use escape sequences such as \\.br\\ for line breaks)",
            "102",
            segment=seg_id,
            field=field,
        )
    rep = msg.seps.repetition
    for seg in segments:
        if len(seg) > MAX_FIELD_CHARS or seg.count(rep) >= MAX_REPETITIONS:
            _check_fields(seg, fs, rep)


def _check_fields(seg: str, fs: str, rep: str) -> None:
    sid = seg[:3]
    offset = 1 if sid == "MSH" else 0
    for number, value in enumerate(seg.split(fs)):
        where = number + offset
        if len(value) > MAX_FIELD_CHARS:
            raise HL7Rejected(
                f"{sid}-{where} has {len(value)} characters; at most {MAX_FIELD_CHARS} are accepted per field",
                "102",
                segment=sid,
                field=where,
            )
        if not (sid == "MSH" and where <= 2) and value.count(rep) + 1 > MAX_REPETITIONS:
            raise HL7Rejected(
                f"{sid}-{where} has {value.count(rep) + 1} repetitions; at most {MAX_REPETITIONS} are accepted",
                "102",
                segment=sid,
                field=where,
            )
