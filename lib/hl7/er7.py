"""A focused reader for HL7 v2 ER7 ("pipe and hat") messages.

Why not python-hl7's tree: it splits every field of every segment into repetitions, components and
sub-components up front (hl7.md §10), which measures about 300x a bare ``str.split``. This reader
splits the message into segments on ``\\r``, indexes them by segment ID, splits a segment into
fields only when the segment is first read, and splits components only of the fields asked for.
python-hl7 stays the oracle in ``tests/unit/hl7/test_differential.py``.

Indexing follows the HL7 numbering: ``fields[n]`` is ``SEG-n``; for MSH, ``fields[1]`` is the
field separator (MSH-1) and ``fields[2]`` the encoding characters (MSH-2), as in python-hl7.

Character sets (hl7.md §10, §11): MSH-18 ``UNICODE UTF-8``/``UTF-8`` -> utf-8, ``8859/1`` ->
latin-1 (``8859/n`` -> iso8859-n), ``ASCII`` -> ascii. A declared character set is decoded strictly:
bytes it does not allow make the message unacceptable (never U+FFFD replacement). A value we do not
support is unacceptable too. Absent MSH-18: utf-8, else cp1252, else latin-1 (whose C1 control
characters the well-formedness rules then refuse, :mod:`lib.hl7.wellformed`).

A message that can be addressed (MSH-1 readable) but not read (unusable MSH-2, bytes invalid in its
character set, content before MSH) is still built, with the default delimiters and a latin-1 decode so
MSH-10 can be echoed, and carries the reason in :attr:`Er7Message.problem`: the SIU reader raises it
first, so the sender gets an ``AR`` naming the cause instead of a silently misread message.
"""

from __future__ import annotations

import binascii
import functools
from dataclasses import dataclass

from lib.hl7.errors import HL7Rejected, NotHL7

__all__ = ["Er7Message", "Separators", "codec_for_charset", "supported_charsets", "unescape"]

_NULL = '""'


@dataclass(frozen=True, slots=True)
class Separators:
    """The delimiters of one message: MSH-1 and the four characters of MSH-2.

    Defaults (``|^~\\&``) are used for characters missing at the end of MSH-2, as python-hl7 does.
    """

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written by this package: component, repetition, escape, sub-component."""
        return self.component + self.repetition + self.escape + self.subcomponent


_CHARSETS: dict[str, str] = {
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}


def codec_for_charset(msh18: str) -> str | None:
    """Map an MSH-18 value (HL7 table 0211, component 1) to a Python codec name.

    Returns None when the value is empty or not one we know (the caller then uses the
    utf-8/cp1252 fallback). Only ASCII-compatible character sets are supported because the
    reader splits on ASCII delimiters.
    """
    return _CHARSETS.get(msh18.strip().upper()) if msh18 else None


def supported_charsets() -> list[str]:
    """The MSH-18 values the reader accepts (documented in docs/hl7-intake.md)."""
    return sorted(_CHARSETS)


def _decode(body: bytes, charset: str) -> tuple[str, str, HL7Rejected | None]:
    """Decode ``body`` per MSH-18 ``charset``; return (text, codec used, problem or None).

    A declared character set is applied strictly. On a problem the text is the latin-1 reading (every
    byte maps to one character), good enough to address the ACK.
    """
    if not charset:
        for candidate in ("utf-8", "cp1252"):
            try:
                return body.decode(candidate), candidate, None
            except UnicodeDecodeError:
                continue
        return body.decode("latin-1"), "latin-1", None
    codec = codec_for_charset(charset)
    if codec is None:
        return body.decode("latin-1"), "latin-1", HL7Rejected(
            f"MSH-18 character set {charset[:40]!r} is not supported; supported are "
            + ", ".join(supported_charsets()),
            "103",
            segment="MSH",
            field=18,
        )
    try:
        return body.decode(codec), codec, None
    except UnicodeDecodeError as exc:
        return body.decode("latin-1"), codec, HL7Rejected(
            f"byte {exc.start} (0x{body[exc.start]:02X}) is not valid in the character set MSH-18 declares "
            f"({charset[:40]}): send the message in that character set or declare the one it is in",
            "102",
            segment="MSH",
            field=18,
        )


def _find_msh(body: bytes) -> int:
    """Offset of the MSH segment in ``body`` (after framing removal), or -1."""
    if body.startswith(b"MSH"):
        return 0
    pos = body.find(b"\rMSH")
    return pos + 1 if pos >= 0 else -1


def _separators(msh: str) -> Separators:
    """Read MSH-1/MSH-2 from the decoded MSH segment text (cached on the first characters)."""
    end = msh.find(msh[3], 4) if len(msh) > 3 else -1
    return _separators_of(msh[: end if 0 < end <= 10 else 10])


@functools.lru_cache(maxsize=32)
def _separators_of(msh: str) -> Separators:
    """Read MSH-1/MSH-2 from the start of the MSH segment text.

    Raises:
        NotHL7: MSH-1 is missing, alphanumeric or whitespace.
        HL7Rejected: 102 when MSH-2 is not 4 or 5 characters, or repeats/contains unusable characters.
    """
    if len(msh) < 4:
        raise NotHL7("the MSH segment has no field separator (MSH-1)")
    fs = msh[3]
    if fs.isalnum() or fs.isspace():
        raise NotHL7("MSH-1 field separator is a letter, digit or whitespace")
    end = msh.find(fs, 4)
    enc = msh[4:] if end < 0 else msh[4:end]
    if len(enc) < 4 or len(enc) > 5:
        raise HL7Rejected(
            f"MSH-2 encoding characters must be 4 (or 5 from v2.7) characters, got {len(enc)}: "
            "component, repetition, escape and sub-component separators (usually ^~\\&)",
            "102",
            segment="MSH",
            field=2,
        )
    chars = enc[:4]
    if len(set(enc + fs)) != len(enc) + 1 or any(c.isalnum() or c.isspace() for c in enc):
        raise HL7Rejected(
            "MSH-2 encoding characters repeat each other or MSH-1, or are letters, digits or whitespace",
            "102",
            segment="MSH",
            field=2,
        )
    return Separators(fs, chars[0], chars[1], chars[2], chars[3])


class Er7Message:
    """One decoded HL7 v2 message, indexed by segment ID, split lazily.

    Build with :meth:`from_bytes`. Segment IDs are the three characters before the first field
    separator (a line needs at least one field separator to count). Segments are never validated for
    order (hl7.md §2).

    Attributes:
        text: the decoded message, segments separated by ``\\r``.
        seps: the message delimiters.
        codec: the Python codec the bytes were decoded with (used again for ``\\X..\\`` escapes).
        charset: MSH-18.1 as sent (may be empty).
        problem: why the message cannot be read as sent (unusable MSH-2, bytes invalid in its character
            set, an unsupported character set, content before MSH), or None.
    """

    __slots__ = ("_raw", "_split", "charset", "codec", "problem", "seps", "text")

    def __init__(
        self, text: str, seps: Separators, codec: str, charset: str, problem: HL7Rejected | None = None
    ) -> None:
        self.text = text
        self.seps = seps
        self.codec = codec
        self.charset = charset
        self.problem = problem
        fs = seps.field
        raw: dict[str, list[str]] = {}
        for seg in text.split("\r"):
            if len(seg) > 3 and seg[3] == fs:
                sid = seg[:3]
                bucket = raw.get(sid)
                if bucket is None:
                    raw[sid] = [seg]
                else:
                    bucket.append(seg)
        self._raw = raw
        self._split: dict[str, list[list[str]]] = {}

    @classmethod
    def from_bytes(cls, body: bytes) -> Er7Message:
        """Decode an unframed body (see :func:`lib.hl7.framing.unframe`) into a message.

        Content before the first segment starting with ``MSH`` (a batch header, stray bytes) is dropped
        and recorded as :attr:`problem`; so are an unusable MSH-2 and bytes the character set refuses.

        Raises:
            NotHL7: no MSH segment, or an unusable MSH-1.
        """
        start = _find_msh(body)
        if start < 0:
            raise NotHL7("no MSH segment found: the body is not an HL7 v2 message")
        problem: HL7Rejected | None = None
        if start:
            lead = body[:start].split(b"\r", 1)[0][:3].decode("latin-1")
            problem = HL7Rejected(
                f"the body has content before the MSH segment (starting {lead!r}): batches (FHS/BHS) are not "
                "supported; send one message per request, starting with MSH",
                "100",
                segment="MSH",
            )
            body = body[start:]
        line_end = body.find(b"\r")
        msh_line = (body if line_end < 0 else body[:line_end]).decode("latin-1")
        try:
            seps = _separators(msh_line)
        except HL7Rejected as unusable:
            seps = Separators(field=msh_line[3])
            problem = problem or unusable
        msh_fields = msh_line.split(seps.field)
        charset = ""
        if len(msh_fields) > 17:
            charset = msh_fields[17].split(seps.repetition, 1)[0].split(seps.component, 1)[0].strip()
        text, codec, undecodable = _decode(body, charset)
        return cls(text, seps, codec, charset, problem or undecodable)

    def segments(self, sid: str) -> list[list[str]]:
        """All segments with ID ``sid`` in message order, each a list of raw fields (``[n]`` = SEG-n)."""
        done = self._split.get(sid)
        if done is not None:
            return done
        fs = self.seps.field
        if sid == "MSH":
            done = []
            for seg in self._raw.get(sid, ()):
                parts = seg.split(fs)
                parts.insert(1, fs)
                done.append(parts)
        else:
            done = [seg.split(fs) for seg in self._raw.get(sid, ())]
        self._split[sid] = done
        return done

    def first(self, sid: str) -> list[str] | None:
        """The first segment with ID ``sid`` (fields list), or None."""
        segs = self._split.get(sid)
        if segs is None:
            segs = self.segments(sid)
        return segs[0] if segs else None

    def has(self, sid: str) -> bool:
        """True when at least one segment with ID ``sid`` exists."""
        return sid in self._raw

    def raw(self, seg: list[str] | None, field: int) -> str:
        """The raw (escaped, unsplit) value of field ``field`` of ``seg``; ``""`` when absent."""
        if seg is None or field >= len(seg):
            return ""
        return seg[field]

    def part(self, seg: list[str] | None, field: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """Raw (still escaped) value at ``field``/``rep``/``comp``/``sub`` (all 1-based); ``""`` when absent.

        Same addressing and leniency as python-hl7's ``extract_field`` for missing trailing parts.
        """
        if seg is None or field >= len(seg):
            return ""
        value = seg[field]
        if not value:
            return ""
        seps = self.seps
        if field <= 2 and seg[0] == "MSH":
            return value
        return split_part(value, seps, rep, comp, sub)

    def repetitions(self, seg: list[str] | None, field: int) -> list[str]:
        """Raw repetitions of a field (``[]`` when empty); split once, so loops stay linear."""
        value = self.raw(seg, field)
        return value.split(self.seps.repetition) if value else []

    def rep_value(self, rep: str, comp: int = 1, sub: int = 1) -> str:
        """Unescaped, stripped component/sub-component of one raw repetition; ``""`` reads as ``""``."""
        v = split_part(rep, self.seps, 1, comp, sub) if rep else ""
        if not v:
            return v
        if self.seps.escape in v:
            v = unescape(v, self.seps, self.codec)
        v = v.strip()
        return "" if v == _NULL else v

    def value(self, seg: list[str] | None, field: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """Like :meth:`part` but unescaped and stripped; the HL7 null ``\"\"`` reads as ``""``."""
        if seg is None or field >= len(seg):
            return ""
        v = seg[field]
        if not v:
            return v
        seps = self.seps
        if field <= 2 and seg[0] == "MSH":
            return v
        if rep == 1 and comp == 1 and sub == 1:  # fast path: first leaf
            v = v.partition(seps.repetition)[0].partition(seps.component)[0].partition(seps.subcomponent)[0]
        else:
            v = split_part(v, seps, rep, comp, sub)
        if not v:
            return v
        if seps.escape in v:
            v = unescape(v, seps, self.codec)
        v = v.strip()
        return "" if v == _NULL else v


def split_part(value: str, seps: Separators, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """Select repetition/component/sub-component (1-based) from one raw field value."""
    if seps.repetition in value:
        reps = value.split(seps.repetition)
        if rep > len(reps):
            return ""
        value = reps[rep - 1]
    elif rep != 1:
        return ""
    if seps.component in value:
        comps = value.split(seps.component)
        if comp > len(comps):
            return ""
        value = comps[comp - 1]
    elif comp != 1:
        return ""
    if seps.subcomponent in value:
        subs = value.split(seps.subcomponent)
        if sub > len(subs):
            return ""
        value = subs[sub - 1]
    elif sub != 1:
        return ""
    return value


def unescape(value: str, seps: Separators, codec: str = "utf-8") -> str:
    """Decode HL7 escape sequences (HL7 v2 chapter 2, "escape sequences in text fields").

    ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` -> the delimiters; ``\\Xhh..\\`` -> those bytes decoded with
    ``codec`` (a sequence that is bad hex or not valid in ``codec`` is dropped, never replaced by
    U+FFFD); ``\\.br\\`` -> newline;
    ``\\H\\``/``\\N\\`` (highlighting) and any other sequence (``\\Zxx\\``, ``\\Cxxyy\\``,
    ``\\.sp\\``...) are dropped. An escape character without a closing one is kept literally
    (python-hl7 loses it, hl7.md §10, issue #84).

    Args:
        value: raw field/component text.
        seps: the message delimiters (the escape character is ``seps.escape``).
        codec: Python codec of the message, for ``\\X`` sequences.
    """
    esc = seps.escape
    if esc not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        j = value.find(esc, i)
        if j < 0:
            out.append(value[i:])
            break
        out.append(value[i:j])
        k = value.find(esc, j + 1)
        if k < 0:
            out.append(value[j:])
            break
        seq = value[j + 1 : k]
        i = k + 1
        if seq == "F":
            out.append(seps.field)
        elif seq == "S":
            out.append(seps.component)
        elif seq == "T":
            out.append(seps.subcomponent)
        elif seq == "R":
            out.append(seps.repetition)
        elif seq == "E":
            out.append(esc)
        elif seq == ".br":
            out.append("\n")
        elif seq[:1] == "X" and len(seq) > 1:
            try:
                out.append(binascii.unhexlify(seq[1:]).decode(codec))
            except (binascii.Error, ValueError, LookupError):  # UnicodeDecodeError is a ValueError
                pass
        # \H\, \N\, \Z..\, \C..\, \M..\, formatting commands other than .br: dropped.
    return "".join(out)
