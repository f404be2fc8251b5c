"""How many SMS segments a text takes: GSM-7 (with its extension table) or UCS-2.

Facts (3GPP TS 23.038 §6.2.1 default alphabet and §6.2.1.1 extension table; 3GPP TS 23.040 §9.2.3.24.1
concatenation header of 6 octets; ACS ``sms-faq.md`` "Encoding"):

- A text whose every character is in the GSM 7-bit default alphabet or its extension table is sent as
  GSM-7. A basic character costs one septet; an extension character (``^ { } [ ] ~ \\ | €`` and form feed)
  costs two (ESC + the character). One segment holds 160 septets; in a concatenated text each segment
  holds 153, and an escape pair is never split between two segments.
- Any other character makes the whole text UCS-2: 70 UTF-16 code units in one segment, 67 per segment
  when concatenated; a surrogate pair (emoji) is never split.

Carriers bill and deliver per segment; this project refuses templates that can take more than
:data:`MAX_SEGMENTS` (issue: SMS confirmations and reminders).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

#: Most segments a text may take.
MAX_SEGMENTS = 2

#: GSM 03.38 default alphabet, in code order (0x1B, the escape to the extension table, left out).
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: GSM 03.38 extension table (each sent as ESC + character, two septets).
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

_SINGLE = {"GSM-7": 160, "UCS-2": 70}
_MULTI = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SegmentCount:
    """The encoding of a text, its length in units (septets or UTF-16 code units) and its segments."""

    encoding: Encoding
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` fits GSM-7 (default alphabet or extension table)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]  # a surrogate pair is two code units


def count_segments(text: str) -> SegmentCount:
    """The segments ``text`` takes (an empty text takes one).

    Splitting is simulated character by character, so an escape pair or a surrogate pair that would
    straddle a segment boundary moves whole to the next segment, as handsets and ACS do.
    """
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    costs = _unit_costs(text, encoding)
    units = sum(costs)
    if units <= _SINGLE[encoding]:
        return SegmentCount(encoding, units, 1)
    capacity, segments, used = _MULTI[encoding], 1, 0
    for cost in costs:
        if used + cost > capacity:
            segments, used = segments + 1, 0
        used += cost
    return SegmentCount(encoding, units, segments)


def non_gsm7_characters(text: str) -> str:
    """The distinct characters of ``text`` that force UCS-2, in order of appearance (for error messages)."""
    seen: list[str] = []
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION and ch not in seen:
            seen.append(ch)
    return "".join(seen)


#: Typographic characters word processors type for their plain counterparts (outside GSM-7 -> inside).
_TYPOGRAPHIC = {**dict.fromkeys("‘’‚‛′`´", "'"), **dict.fromkeys("“”„‟″«»", '"'),
                **dict.fromkeys("‐‑‒–—―−", "-"), **dict.fromkeys("\u00a0\u2007\u2009\u202f", " "), "…": "..."}


def gsm7_spelling(text: str) -> tuple[str, dict[str, str]]:
    """``text`` spelled in GSM-7 where a plain counterpart exists (’ -> ', — -> -, í -> i: the accent dropped
    by Unicode decomposition), and the substitutions made; a character without one is kept (the text then
    still needs UCS-2)."""
    out: list[str] = []
    made: dict[str, str] = {}
    for ch in text:
        if is_gsm7(ch):
            out.append(ch)
            continue
        plain = _TYPOGRAPHIC.get(ch) or "".join(c for c in unicodedata.normalize("NFKD", ch)
                                                 if not unicodedata.combining(c))
        if plain and is_gsm7(plain):
            made[ch] = plain
            out.append(plain)
        else:
            out.append(ch)
    return "".join(out), made
