"""What an inbound text asks for: to stop (opt out), to start again (opt in), or for help.

Carriers' keywords (FCC 24-24 revocation words; CTIA Messaging Principles; ACS ``messaging-policy.md`` asks
for lowercase ``stop``, ``unsubscribe`` and ``cancel`` too): STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT,
REVOKE, OPTOUT (also "OPT OUT"). Opt-in: START, UNSTOP. Help: HELP, INFO.

A revocation "by any reasonable means" must be honoured (FCC 24-24), so when in doubt we stop:
- a keyword counts alone or as the first word ("Stop please");
- free-text intent counts anywhere in the text ("please stop texting me", "remove me", "take me off your
  list", "don't text me", "no more texts", "wrong number", "unsubscribe");
- look-alikes count: the text is NFKC-normalised (full-width ``ＳＴＯＰ`` -> ``STOP``) and each letter
  that Unicode lists as confusable with a Latin one (Cyrillic ``СТОР``, Greek ``ΤΟΡ``) is read as that
  letter (``confusable-homoglyphs``, the Unicode TR39 confusables data);
- an opt-out intent wins over a HELP or START in the same text;
- Spanish texts may tell patients to reply PARA (``TEMPLATE_OPT_OUT_KEYWORDS``), so PARA (and PARAR) opt
  out too, but only as the whole text: "para" is also the preposition "for" ("Para mañana?").

Templates that open a conversation (booked, changed) must name an opt-out keyword in capitals, as carriers
print it ("Reply STOP to opt out"; CTIA Messaging Principles: the first message carries opt-out
instructions): :func:`names_opt_out`.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

OPT_OUT_WORDS: frozenset[str] = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS: frozenset[str] = frozenset({"START", "UNSTOP"})
HELP_WORDS: frozenset[str] = frozenset({"HELP", "INFO"})
#: Opt-out keywords that count only as the whole text (common words inside a sentence).
WHOLE_TEXT_OPT_OUT_WORDS: frozenset[str] = frozenset({"PARA", "PARAR"})
#: The opt-out keywords a booked/changed template may name, per language; STOP, which every US carrier
#: honours, for the others.
TEMPLATE_OPT_OUT_KEYWORDS: dict[str, tuple[str, ...]] = {"es": ("STOP", "PARA")}
DEFAULT_TEMPLATE_OPT_OUT_KEYWORDS: tuple[str, ...] = ("STOP",)
#: The keyword recorded for an opt-out read from free text rather than a carrier keyword.
FREE_TEXT_OPT_OUT = "FREETEXT"

_OPT_OUT_INTENT = re.compile(
    r"\b(?:"
    r"STOP(?: [A-Z]+){0,2} (?:TEXTING|TEXTS?|MESSAGING|MESSAGES?|SMS|SENDING|CONTACTING|CALLING)"
    r"|REMOVE ME|TAKE ME OFF|UNSUBSCRIBE|OPT ME OUT|OPT OUT"
    r"|DON ?T (?:TEXT|MESSAGE|CONTACT|SEND)|DO NOT (?:TEXT|MESSAGE|CONTACT|SEND)"
    r"|NO MORE (?:TEXTS|TEXT|MESSAGES|MESSAGE|SMS)|WRONG NUMBER|LEAVE ME ALONE"
    r")\b"
)


@lru_cache(maxsize=4096)
def _latin(ch: str) -> str:
    """``ch`` itself when ASCII, else the Latin letter Unicode lists it as confusable with, else ``ch``."""
    if ch.isascii() or not ch.isalpha():
        return ch
    from confusable_homoglyphs import confusables

    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=["latin"]) or []
    for entry in found:
        for glyph in entry.get("homoglyphs") or []:
            candidate = glyph.get("c") or ""
            if len(candidate) == 1 and candidate.isascii() and candidate.isalpha():
                return candidate
    return ch


def normalise(message: str | None) -> str:
    """Upper-case ASCII words separated by single spaces (full-width and look-alike letters read as Latin).

    >>> normalise("  Ｐlease, don't text me!! ")
    'PLEASE DON T TEXT ME'
    """
    text = unicodedata.normalize("NFKC", message or "")
    text = "".join(_latin(ch) for ch in text).upper()
    return " ".join(re.findall(r"[A-Z]+", text))


def keyword(message: str | None) -> str | None:
    """The request of an inbound text: a carrier keyword (``STOP``, ``START``, ``HELP``...),
    :data:`FREE_TEXT_OPT_OUT` for an opt-out in other words, or ``None``.

    >>> keyword(" opt-out! "), keyword("Stop please"), keyword("please stop texting me"), keyword("see you")
    ('OPTOUT', 'STOP', 'FREETEXT', None)
    """
    text = normalise(message)
    words = text.split()
    if not words:
        return None
    known = OPT_OUT_WORDS | OPT_IN_WORDS | HELP_WORDS
    if len(words) >= 2 and words[0] == "OPT" and words[1] == "OUT":
        return "OPTOUT"
    joined = "".join(words)
    if joined in known or joined in WHOLE_TEXT_OPT_OUT_WORDS:
        return joined
    if words[0] in OPT_OUT_WORDS:
        return words[0]
    if _OPT_OUT_INTENT.search(text):
        return FREE_TEXT_OPT_OUT
    return words[0] if words[0] in known else None


def is_opt_out(word: str | None) -> bool:
    """Whether :func:`keyword`'s answer asks to stop texting."""
    return word is not None and (word in OPT_OUT_WORDS or word in WHOLE_TEXT_OPT_OUT_WORDS
                                 or word == FREE_TEXT_OPT_OUT)


def template_opt_out_keywords(language: str) -> tuple[str, ...]:
    """The opt-out keywords a ``language`` template may name (``("STOP", "PARA")`` for ``es``)."""
    return TEMPLATE_OPT_OUT_KEYWORDS.get(language, DEFAULT_TEMPLATE_OPT_OUT_KEYWORDS)


def names_opt_out(template: str, language: str) -> bool:
    """Whether ``template`` names one of the ``language``'s opt-out keywords as a word in capitals.

    >>> names_opt_out("{org}: visit {when}. {link} Reply STOP to opt out.", "en")
    True
    >>> names_opt_out("{org}: visit {when}. {link} Reply stop to opt out.", "en")
    False
    >>> names_opt_out("{org}: visita {when}. {link} Responda PARA para no recibir mensajes.", "es")
    True
    """
    words = set(re.findall(r"[A-Z]+", template))
    return any(word in words for word in template_opt_out_keywords(language))
