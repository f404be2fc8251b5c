"""HL7 v2 acknowledgement (ACK) builder (hl7.md §8).

Layout::

    MSH|^~\\&|<in MSH-5>|<in MSH-6>|<in MSH-3>|<in MSH-4>|<now>+0000||ACK^<in MSH-9.2>^ACK|<control_id>|
        <in MSH-11>|<in MSH-12>|||||<in MSH-18>         (one line)
    MSA|<code>|<in MSH-10>|<reason, shortened to 80 characters at a word, "..." added>
    ERR|...                                    (only when code is not AA/CA)

- Acknowledgement mode: original (AA/AE/AR) unless inbound MSH-15 or MSH-16 is valued, then
  enhanced (CA/CE/CR). Callers pass either form; it is mapped to the inbound mode.
- Delimiters: the inbound message's MSH-1/MSH-2, so echoed MSH-3..6 stay byte-identical
  (``|^~\\&`` when there is no header).
- MSH-7 is UTC with an explicit ``+0000`` (python-hl7's create_ack omits the offset).
- ERR, v2.5 and later: ``ERR||<location>|<code>^<table 0357 text>^HL70357|E||||<reason>``: ERR-2
  location (``SCH^1^2``), ERR-3 error code (CWE), ERR-4 severity ``E``, ERR-8 user message.
- ERR, before v2.5 (2.1-2.4, ERR-1 only, CM_ELD = segment^sequence^field^code as CE in
  sub-components): ``ERR|SCH^1^2^101&Required field missing&HL70357&&<reason>``: the CE keeps the table
  0357 code and text (CE.1-3) and carries the whole reason as its alternate text (CE.5), the one place a
  pre-2.5 ACK (MSH, MSA, [ERR]: no NTE) can hold text longer than MSA-3's 80 characters (the NIST/IHE
  PIX test ACKs put it there: ``ERR|^^^205&DuplicateKeyIdentifier&&&Patient's Id is duplicated``).
- MSA-3 (80 characters): a longer reason is cut at the last word that fits and ends with ``...``
  (ASCII, representable in every charset an ACK is encoded in); the whole text is in ERR (CE.5 or ERR-8).
- Text from the caller (reason) is escaped (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``); newlines become spaces.
- Segments end with ``\\r`` (trailing ``\\r`` included); bytes in the inbound codec (utf-8 default).
"""

from __future__ import annotations

from datetime import UTC, datetime

from lib.hl7.er7 import Separators
from lib.hl7.errors import ERR_CODE_TEXT
from lib.hl7.header import MessageHeader

__all__ = ["build_ack", "escape", "shorten"]

_ORIGINAL = {"AA": "AA", "AE": "AE", "AR": "AR", "CA": "AA", "CE": "AE", "CR": "AR"}
_ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR", "CA": "CA", "CE": "CE", "CR": "CR"}
_MSA3_MAX = 80
_ELLIPSIS = "..."


def shorten(text: str, limit: int = _MSA3_MAX) -> str:
    """``text`` within ``limit`` characters: whole when it fits, else its longest run of whole words that
    leaves room for ``...`` (trailing ``,;:`` dropped); cut inside a word only when the first word alone is
    too long."""
    if len(text) <= limit:
        return text
    room = limit - len(_ELLIPSIS)
    head = ""
    for word in text.split(" "):
        candidate = f"{head} {word}" if head else word
        if len(candidate.rstrip(",;:-(")) > room:
            break
        head = candidate
    return (head.rstrip(" ,;:-(") or text[:room]) + _ELLIPSIS


def escape(text: str, seps: Separators) -> str:
    """Escape delimiter characters in free text (HL7 v2 chapter 2 escape sequences).

    The escape character is replaced first; ``\\r``/``\\n`` become spaces (a segment break inside
    a field would corrupt the message); other control characters become ``\\Xhh\\``.
    """
    esc = seps.escape
    out = []
    for ch in text:
        if ch == esc:
            out.append(f"{esc}E{esc}")
        elif ch == seps.field:
            out.append(f"{esc}F{esc}")
        elif ch == seps.component:
            out.append(f"{esc}S{esc}")
        elif ch == seps.subcomponent:
            out.append(f"{esc}T{esc}")
        elif ch == seps.repetition:
            out.append(f"{esc}R{esc}")
        elif ch in "\r\n":
            out.append(" ")
        elif ch < " " or "\x7f" <= ch <= "\x9f":  # a control character never goes back raw
            out.append(f"{esc}X{ord(ch):02X}{esc}")
        else:
            out.append(ch)
    return "".join(out)


def _hierarchic(raw: str, seps: Separators) -> str:
    """MSH-3..6 echoed as sent (components kept), minus anything that could break the ACK: control
    characters are hex-escaped."""
    if raw.isprintable():
        return raw
    return "".join(f"{seps.escape}X{ord(c):02X}{seps.escape}" if not c.isprintable() else c for c in raw)


def _before_v25(version: str) -> bool:
    parts = version.split(".")
    try:
        nums = tuple(int(p) for p in parts[:2])
    except ValueError:
        return False
    return len(nums) == 2 and nums[0] == 2 and nums[1] < 5


def build_ack(
    header: MessageHeader | None,
    *,
    code: str,
    reason: str | None = None,
    err_code: str | None = None,
    now: datetime,
    control_id: str,
    error_location: str | None = None,
) -> bytes:
    """Build the ACK for one inbound message.

    Args:
        header: the inbound MSH (:func:`lib.hl7.header.read_header`), or None when it could not be
            read (then MSH-3..6 and MSA-2 are empty, MSH-11 ``P``, MSH-12 ``2.5``).
        code: AA/AE/AR (or CA/CE/CR), mapped to the inbound acknowledgement mode.
        reason: text for MSA-3 (shortened to 80 characters at a word, :func:`shorten`) and, whole, for ERR
            (ERR-8 from v2.5, ERR-1's CE alternate text before); no PHI (HL7Rejected.reason).
        err_code: HL7 table 0357 code for ERR (``101``...); defaults to ``207`` for AE/AR when a
            reason or location is given; ignored for AA/CA.
        now: current time, aware (converted to UTC for MSH-7).
        control_id: MSH-10 of the ACK, a fresh ID chosen by the caller.
        error_location: ERR-2 location with ``^`` separators, e.g. ``SCH^1^2`` (HL7Rejected.location).

    Returns:
        The ACK bytes, segments joined and terminated by ``\\r``.

    Raises:
        ValueError: unknown ``code`` or ``err_code``, or a naive ``now``.
    """
    if code not in _ORIGINAL:
        raise ValueError(f"unknown acknowledgement code {code!r}")
    if err_code is not None and err_code not in ERR_CODE_TEXT:
        raise ValueError(f"unknown HL7 table 0357 code {err_code!r}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    seps = header.separators if header is not None else Separators()
    enhanced = header is not None and header.enhanced_mode
    msa1 = (_ENHANCED if enhanced else _ORIGINAL)[code]
    fs, cs = seps.field, seps.component

    trigger = escape(header.trigger_event, seps) if header is not None else ""
    msh9 = f"ACK{cs}{trigger}{cs}ACK" if trigger else "ACK"
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"
    if header is not None:
        msh = [
            "MSH",
            seps.encoding_characters,
            _hierarchic(header.receiving_application, seps),
            _hierarchic(header.receiving_facility, seps),
            _hierarchic(header.sending_application, seps),
            _hierarchic(header.sending_facility, seps),
            stamp,
            "",
            msh9,
            escape(control_id, seps),
            escape(header.processing_id or "P", seps),
            escape(header.version or "2.5", seps),
        ]
        if header.charset:
            msh += ["", "", "", "", "", escape(header.charset, seps)]
        version = header.version
        in_control = escape(header.control_id, seps)
        codec = header.codec
    else:
        msh = ["MSH", seps.encoding_characters, "", "", "", "", stamp, "", msh9, escape(control_id, seps), "P", "2.5"]
        version = "2.5"
        in_control = ""
        codec = "utf-8"

    clean_reason = " ".join(reason.split()) if reason else ""
    msa = ["MSA", msa1, in_control]
    if clean_reason:
        msa.append(escape(shorten(clean_reason), seps))
    segments = [fs.join(msh), fs.join(msa)]

    if msa1 not in ("AA", "CA"):
        ecode = err_code or "207"
        etext = ERR_CODE_TEXT[ecode]
        location = (error_location or "").replace("^", cs)
        if _before_v25(version):
            sub = seps.subcomponent
            loc_parts = location.split(cs) if location else []
            loc_parts = [*loc_parts, "", "", ""][:3]
            code = [ecode, escape(etext, seps), "HL70357"]
            if clean_reason:
                code += ["", escape(clean_reason, seps)]
            segments.append(fs.join(["ERR", cs.join([*loc_parts, sub.join(code)])]))
        else:
            err = ["ERR", "", location, f"{ecode}{cs}{escape(etext, seps)}{cs}HL70357", "E"]
            if clean_reason:
                err += ["", "", "", escape(clean_reason, seps)]
            segments.append(fs.join(err))
    return ("\r".join(segments) + "\r").encode(codec, errors="replace")
