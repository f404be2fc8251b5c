"""Transport framing: MLLP block removal and segment-separator normalisation.

MLLP wraps one message as ``0x0B <message> 0x1C 0x0D`` (hl7.md §9, "MLLP framing if you ever parse
raw bytes"). HL7 over HTTP normally sends the bare message, but relays sometimes forward the MLLP
block unchanged, so both are accepted here.

Segment separators: HL7 mandates ``\\r``; files and some senders use ``\\n`` or ``\\r\\n``
(hl7.md §10: python-hl7 and hl7apy split only on ``\\r`` and silently mis-parse the others). The
message's own separator decides (docs/hl7-intake.md, "Line endings"):

- the body holds a ``\\r``: segments end in ``\\r`` (or ``\\r\\n``, read as one break); a bare
  ``\\n`` is then a line break *inside* a field (free text typed with Enter) and stays in the field,
  so it can never cut a segment and drop the fields after it;
- the body holds no ``\\r`` at all: segments end in ``\\n`` (LF-only files).
"""

from __future__ import annotations

from lib.hl7.errors import NotHL7

__all__ = ["MLLP_END", "MLLP_START", "unframe"]

MLLP_START = b"\x0b"
MLLP_END = b"\x1c"
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n\x00\x0c"


def unframe(body: bytes) -> bytes:
    """Return the bare HL7 message of one HTTP/MLLP body, with ``\\r`` segment separators.

    Steps: strip surrounding whitespace and a UTF-8 BOM; when the body starts with the MLLP start
    block ``0x0B``, require the end block ``0x1C`` (optionally followed by ``0x0D`` and whitespace)
    and keep what lies between; normalise the segment separator to ``\\r`` (see the module docstring,
    decided on the stripped body); strip again. The result carries no trailing ``\\r``.
    Idempotent: ``unframe(unframe(b)) == unframe(b)``.

    Args:
        body: raw request body (bytes, any encoding that is ASCII-compatible).

    Returns:
        The message bytes (possibly empty when the body held only whitespace).

    Raises:
        NotHL7: broken MLLP framing: a start block without an end block, an end block without a
            start block, or data after the end block (e.g. two framed messages in one body).
    """
    data = body.strip(_WHITESPACE)
    if data.startswith(_BOM):
        data = data[len(_BOM) :].strip(_WHITESPACE)
    if data.startswith(MLLP_START):
        end = data.find(MLLP_END)
        if end < 0:
            raise NotHL7("broken MLLP framing: start block 0x0B without end block 0x1C")
        if data[end + 1 :].strip(_WHITESPACE):
            raise NotHL7("broken MLLP framing: data after end block 0x1C (one message per body)")
        data = data[1:end].strip(_WHITESPACE)
        if data.startswith(_BOM):
            data = data[len(_BOM) :].strip(_WHITESPACE)
        if MLLP_START in data:
            raise NotHL7("broken MLLP framing: a second start block 0x0B inside the message")
    elif data.endswith(MLLP_END):
        raise NotHL7("broken MLLP framing: end block 0x1C without start block 0x0B")
    if b"\n" in data:
        if b"\r" in data:  # CR-separated: CRLF is one break, a bare LF belongs to its field
            data = data.replace(b"\r\n", b"\r").strip(_WHITESPACE)
        else:  # LF-only message
            data = data.replace(b"\n", b"\r").strip(_WHITESPACE)
    return data
