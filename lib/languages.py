"""A patient's language as senders write it -> an ISO 639-1 code (``es``), read with CLDR data (Babel).

PID-15 (primary language) is a CWE: senders put an ISO 639 code (``SPA``, ``es``; HL7 table 0296), a BCP-47
tag (``es-US``, ``ES-MX``, ``zh-Hant-TW``), the language's name (``Spanish``, ``SPANISH``, ``Español``) or a
local code with the name beside it (``10^Spanish``), in the identifier, text, alternate identifier or
alternate text component. :func:`language_code` reads one value; :func:`cwe_language` the components of one
CWE in that order. A value that names no known language gives ``None`` and a note for the log that never
repeats free text (only a code-shaped value: letters as in a tag, or at most 4 digits; else its length).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from babel import Locale
from babel.core import get_global
from babel.localedata import locale_identifiers

#: ISO 639-2 (B and T) and 639-1 codes we have always read, kept as they were (HL7 table 0296 uses 639-2).
ISO_CODES: dict[str, str] = {
    "en": "en", "eng": "en", "es": "es", "spa": "es", "fr": "fr", "fre": "fr", "fra": "fr",
    "pt": "pt", "por": "pt", "de": "de", "ger": "de", "deu": "de", "it": "it", "ita": "it",
    "zh": "zh", "chi": "zh", "zho": "zh", "vi": "vi", "vie": "vi", "ko": "ko", "kor": "ko",
    "ru": "ru", "rus": "ru", "ar": "ar", "ara": "ar", "ht": "ht", "hat": "ht", "tl": "tl", "tgl": "tl",
    "pl": "pl", "pol": "pl",
}
#: Codes that name no language (ISO 639-2: undetermined, multiple, no linguistic content, uncoded).
_NO_LANGUAGE = frozenset({"und", "mul", "zxx", "mis"})
_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")
_LOCALES: set[str] = set()
#: HL7 CWE components tried in order: identifier, alternate identifier, text, alternate text.
CWE_COMPONENTS = (1, 4, 2, 5)


def _fold(text: str) -> str:
    """Lower case, accents dropped, single spaces: ``" Español "`` -> ``"espanol"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.casefold().split())


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    """Folded language names -> code: every CLDR English name, and each known language's own name and its
    name in Spanish (``espanol``, ``ingles``)."""
    english, spanish = Locale("en").languages, Locale("es").languages
    names: dict[str, str] = {}
    _LOCALES.update(locale_identifiers())
    for code, name in english.items():
        if code.isalpha() and len(code) in (2, 3) and code not in _NO_LANGUAGE:
            names.setdefault(_fold(name), code)
    for code in sorted(set(ISO_CODES.values())):
        names[_fold(english[code])] = code
        names[_fold(spanish[code])] = code
        own = Locale.parse(code).languages.get(code) if code in _LOCALES else None
        if own:
            names[_fold(own)] = code
    return names


def _code(tag: str) -> str | None:
    """The language of an ISO 639 code or a BCP-47 / POSIX tag (its primary subtag), or ``None``."""
    primary = re.split(r"[-_]", tag, maxsplit=1)[0].lower()
    if primary in ISO_CODES:
        return ISO_CODES[primary]
    if primary in _NO_LANGUAGE:
        return None
    code = get_global("language_aliases").get(primary, primary)
    return code if code in Locale("en").languages and code.isalpha() else None


def language_code(value: str | None) -> str | None:
    """The ISO 639-1 code (or the ISO 639 code when a language has no 639-1 code) of ``value``, else ``None``.

    >>> [language_code(v) for v in ("SPA", "es-US", "ES_mx", "Spanish", "SPANISH", "Español", "Spanish (Mexico)")]
    ['es', 'es', 'es', 'es', 'es', 'es', 'es']
    >>> language_code("kli"), language_code("10"), language_code("")
    (None, None, None)
    """
    text = (value or "").strip()
    if not text:
        return None
    if _TAG.fullmatch(text):
        code = _code(text)
        if code is not None:
            return code
    names = _names()
    folded = _fold(text)
    if folded in names:
        return names[folded]
    head = _fold(re.split(r"[;,/(]| - ", text, maxsplit=1)[0])
    return names.get(head)


def cwe_language(components: Sequence[str]) -> tuple[str | None, str | None]:
    """The language of one CWE, given its components 1 to 5 (missing ones empty), and a log note when a
    value was sent but names no language we know (``None`` when it was understood or empty).

    >>> cwe_language(["", "", "", "", "Spanish"]), cwe_language(["10", "Spanish"]), cwe_language(["KLI"])
    (('es', None), ('es', None), (None, "PID-15 not understood: component 1 'KLI'"))
    """
    padded = [*components, "", "", "", "", ""]
    sent: list[str] = []
    for number in CWE_COMPONENTS:
        value = padded[number - 1].strip()
        if not value:
            continue
        code = language_code(value)
        if code is not None:
            return code, None
        code_like = (_TAG.fullmatch(value) and len(value) <= 12) or (value.isdigit() and len(value) <= 4)
        shown = f"'{value}'" if code_like else f"a text of {len(value)} characters"
        sent.append(f"component {number} {shown}")
    return None, ("PID-15 not understood: " + ", ".join(sent)) if sent else None
