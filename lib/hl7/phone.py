"""Choice of the patient's SMS number from PID-13 / PID-40 / PID-14 (hl7.md §6, "Design rule for SMS").

XTN components used (v2.5.1 numbering): 1 formatted number, 2 use code (table 0201), 3 equipment
type (table 0202), 4 e-mail / communication address, 5 country code, 6 area code, 7 local number,
8 extension, 12 unformatted number.

Rules, in order:

1. Candidates are every repetition of PID-13, then PID-40 (v2.7+), then PID-14.
2. Skipped: e-mail (XTN-2 ``NET``, XTN-3 ``Internet``/``X.400``, a number containing ``@``, or
   use word ``EMAIL``), fax (XTN-3 ``FX``), pagers (XTN-3 ``BP``, XTN-2 ``BPN``), ``TDD``/``TTY``,
   modems (``MD``), and empty values (``""`` is the HL7 null).
3. Not the patient's own phone, never texted: XTN-2 ``WPN`` (work: often shared, a privacy risk even
   when it is a mobile), ``EMR`` (an emergency contact, someone else), ``ASN`` (answering service).
4. A declared landline is never texted: XTN-3 ``PH`` (telephone) unless XTN-2 says ``PRS`` (personal
   mobile), e.g. ``PRN^PH``.
5. A repetition is flagged mobile when XTN-3 = ``CP``, XTN-2 = ``PRS``, or XTN-2/XTN-4 text
   matches MOBILE or CELL (case-insensitive; Barts and NHS PAS feeds).
6. The number of a repetition (XTN-1 versus the structured XTN-12 / XTN-5+6+7): the structured
   form is tried first (v2.7 withdrew XTN-1), then XTN-1; the first that ``phonenumbers`` accepts
   with the configured default region is used, so a disagreement never loses a valid number. When
   both are valid and differ, the structured one is used and the reason says so.
7. A number with an extension (XTN-8, or ``x12`` / ``ext 12`` / ``;ext=12`` in XTN-1, as ``phonenumbers``
   reads it) is a switchboard or office line, never a mobile: not texted, whatever its flags; reason
   ``no SMS number: the number has an extension`` when nothing else is usable.
8. The first valid flagged-mobile number wins. Otherwise the first valid number of any other type
   is used only when ``phonenumbers`` classifies it MOBILE or FIXED_LINE_OR_MOBILE (e.g. any US
   geographic number); landline-only numbers give no SMS number.

The reason text names where the number came from or why there is none; it never contains the
number.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType
from phonenumbers.phonemetadata import PhoneMetadata

from lib.hl7.er7 import Er7Message, unescape

__all__ = ["PhoneChoice", "choose_sms_phone"]

_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")
_MOBILE_WORD = re.compile(r"MOBILE|CELL", re.IGNORECASE)
_EMAIL_WORD = re.compile(r"E-?MAIL", re.IGNORECASE)
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
_SOURCES = ((13, "PID-13"), (40, "PID-40"), (14, "PID-14"))
_NOT_OWN_USES = frozenset({"WPN", "EMR", "ASN"})
_MAX_NUMBER_LEN = 64
_MIN_INTERNATIONAL_DIGITS = 6  # shortest valid "+<cc><number>" anywhere has 7 digits (e.g. +290 XXXX)


@dataclass(frozen=True, slots=True)
class PhoneChoice:
    """Outcome of the SMS number choice.

    Attributes:
        e164: the number in E.164 (``+12015550123``) or None.
        reason: where it came from (``mobile (PID-13 rep 2, use PRS)``) or why there is none
            (``no SMS number: only a landline``). Never contains the number.
    """

    e164: str | None
    reason: str


def _components(msg: Er7Message, rep: str) -> list[str]:
    """Components 1..12 of one XTN repetition: sub-component 1, unescaped, stripped, ``""`` null -> empty."""
    seps = msg.seps
    comps = rep.split(seps.component)[:12]
    comps += [""] * (12 - len(comps))
    if seps.subcomponent not in rep and seps.escape not in rep and '""' not in rep:
        return [c.strip() for c in comps]  # fast path: nothing to select, unescape or null out
    out = []
    for c in comps:
        if c:
            if seps.subcomponent in c:
                c = c.split(seps.subcomponent, 1)[0]
            if seps.escape in c:
                c = unescape(c, seps, msg.codec)
            c = c.strip()
            if c == '""':
                c = ""
        out.append(c)
    return out


@functools.lru_cache(maxsize=64)
def _min_national_digits(region: str) -> int:
    """Fewest digits a valid national number of ``region`` has (prefixes only add digits)."""
    meta = PhoneMetadata.metadata_for_region(region)
    lengths = meta.general_desc.possible_length if meta is not None and meta.general_desc is not None else ()
    return min((n for n in lengths if n > 0), default=1)


def _normalise(number: str, region: str) -> phonenumbers.PhoneNumber | None:
    """Parse and validate; None when invalid.

    Fast paths: fewer digits (letters count, for vanity numbers) than the region's shortest
    national number; ``is_possible_number`` (a length check); ``is_valid_number_for_region`` for
    the default region, before the full ``is_valid_number``, which scans every region sharing
    the country code (25 for +1).
    """
    if not number or len(number) > _MAX_NUMBER_LEN:
        return None
    digits = len(_NOT_ALNUM.sub("", number))
    if digits < (_MIN_INTERNATIONAL_DIGITS if number.lstrip()[:1] == "+" else _min_national_digits(region)):
        return None  # too short to be valid anywhere: skip the (costly) full parse
    try:
        parsed = phonenumbers.parse(number, region)
    except NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    if parsed.country_code == phonenumbers.country_code_for_region(region):
        if phonenumbers.is_valid_number_for_region(parsed, region):
            return parsed
        if len(phonenumbers.region_codes_for_country_code(parsed.country_code)) == 1:
            return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


def _numbers(c1: str, c5: str, c6: str, c7: str, c12: str) -> list[str]:
    """The number forms of one XTN, most authoritative first: XTN-12, XTN-5+6+7, XTN-1 (distinct, non-empty)."""
    out: list[str] = []
    if c12:
        out.append(c12)
    if c7:
        cc = "".join(ch for ch in c5 if ch.isdigit())
        out.append(("+" + cc if cc else "") + c6 + c7)
    if c1:
        out.append(c1)
    if len(out) > 1:
        out = list(dict.fromkeys(out))
    return out


_EXTENSION_HINT = re.compile(r"[0-9][^0-9]*[A-Za-z#;,]")


def _has_extension(c1: str, c8: str, region: str) -> bool:
    """Whether the XTN carries an extension: XTN-8, or one written into XTN-1 (``x12``, ``ext. 12``,
    ``;ext=12``...) as ``phonenumbers`` reads it."""
    if c8:
        return True
    if not c1 or not _EXTENSION_HINT.search(c1) or len(c1) > _MAX_NUMBER_LEN:
        return False
    try:
        return bool(phonenumbers.parse(c1, region).extension)
    except NumberParseException:
        return False


def _first_valid(numbers: list[str], region: str) -> tuple[phonenumbers.PhoneNumber, str] | None:
    """The first number form that is valid, with a note when a valid later form disagrees."""
    for index, number in enumerate(numbers):
        parsed = _normalise(number, region)
        if parsed is None:
            continue
        note = ""
        if index == 0 and len(numbers) > 1:
            other = _normalise(numbers[-1], region)
            if other is not None and other != parsed:
                note = ", XTN-1 differs: structured number used"
        elif index > 0:
            note = ", structured number not valid: XTN-1 used" if index == len(numbers) - 1 else ""
        return parsed, note
    return None


def choose_sms_phone(msg: Er7Message, pid: list[str] | None, default_region: str) -> PhoneChoice:
    """Pick the SMS number of the patient from the PID segment ``pid`` of ``msg``.

    Args:
        msg: the decoded message (for delimiters and codec).
        pid: the PID segment fields, or None when the message has no PID.
        default_region: ISO 3166 region for numbers without a country code (e.g. ``US``, ``GB``).

    Returns:
        A :class:`PhoneChoice`; never raises for any field content.
    """
    if pid is None:
        return PhoneChoice(None, "no SMS number: no PID segment")
    seps = msg.seps
    seen_any = seen_email = seen_excluded = seen_invalid = seen_not_own = seen_extension = False
    bad_mobile: str | None = None
    landline = False
    fallback: tuple[phonenumbers.PhoneNumber, str] | None = None
    # Numbers of unspecified type are parsed only when no flagged mobile number is valid (parsing is the
    # costly step, and the first valid flagged mobile wins wherever it stands).
    unflagged: list[tuple[list[str], str]] = []
    for field_no, label in _SOURCES:
        raw = msg.raw(pid, field_no)
        if not raw:
            continue
        for index, rep in enumerate(raw.split(seps.repetition), start=1):
            c1, use, equip, c4, c5, c6, c7, c8, _c9, _c10, _c11, c12 = _components(msg, rep)
            equip = equip.upper()
            if not (c1 or c4 or c12 or c7):
                continue
            seen_any = True
            use_up = use.upper()
            where = f"{label} rep {index}"
            numbers = _numbers(c1, c5, c6, c7, c12)
            if (
                use_up == "NET"
                or equip in ("INTERNET", "X.400")
                or any("@" in n for n in numbers)
                or _EMAIL_WORD.fullmatch(use)
                or (not numbers and "@" in c4)
            ):
                seen_email = True
                continue
            if equip in ("FX", "BP", "TDD", "TTY", "MD") or use_up == "BPN":
                seen_excluded = True
                continue
            if not numbers:
                continue
            if use_up in _NOT_OWN_USES:
                seen_not_own = True
                continue
            if equip == "PH" and use_up != "PRS":
                landline = True
                continue
            if _has_extension(c1, c8, default_region):
                seen_extension = True  # a switchboard / office line: whoever answers it is not the patient
                continue
            if equip == "CP":
                why = "equipment CP"
            elif use_up == "PRS":
                why = "use PRS"
            elif _MOBILE_WORD.search(use) or _MOBILE_WORD.search(c4):
                why = "text MOBILE/CELL"
            else:
                unflagged.append((numbers, where))
                continue
            found = _first_valid(numbers, default_region)
            if found is None:
                if bad_mobile is None:
                    bad_mobile = where
                seen_invalid = True
                continue
            parsed, note = found
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            return PhoneChoice(e164, f"mobile ({where}, {why}{note})")
    for numbers, where in unflagged:
        found = _first_valid(numbers, default_region)
        if found is None:
            seen_invalid = True
            continue
        parsed, note = found
        where = where + note
        kind = phonenumbers.number_type(parsed)
        if kind in _MOBILE_TYPES:
            name = "MOBILE" if kind == PhoneNumberType.MOBILE else "FIXED_LINE_OR_MOBILE"
            fallback = (parsed, f"phone of unspecified type ({where}, number type {name})")
            break
        landline = True
    if fallback is not None:
        e164 = phonenumbers.format_number(fallback[0], phonenumbers.PhoneNumberFormat.E164)
        return PhoneChoice(e164, fallback[1])
    if bad_mobile is not None:
        return PhoneChoice(None, f"no SMS number: the mobile number is not valid ({bad_mobile})")
    if seen_extension:
        return PhoneChoice(None, "no SMS number: the number has an extension")
    if landline:
        return PhoneChoice(None, "no SMS number: only a landline")
    if seen_not_own:
        return PhoneChoice(None, "no SMS number: only work, emergency-contact or answering-service numbers")
    if seen_invalid:
        return PhoneChoice(None, "no SMS number: no valid phone number")
    if seen_excluded:
        return PhoneChoice(None, "no SMS number: only fax, pager or TDD/TTY numbers")
    if seen_email:
        return PhoneChoice(None, "no SMS number: only e-mail addresses")
    if not seen_any:
        return PhoneChoice(None, "no SMS number: PID-13 empty")
    return PhoneChoice(None, "no SMS number: no phone number")
