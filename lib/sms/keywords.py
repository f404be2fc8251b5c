"""What an inbound text asks for: to stop (opt out), to start again (opt in), or for help.

Carriers' keywords (FCC 24-24 revocation words; CTIA Messaging Principles; the US/Canada lists of SMS
providers; ACS ``messaging-policy.md`` asks for lowercase ``stop``, ``unsubscribe`` and ``cancel`` too): STOP,
STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT (also "OPT OUT"), REMOVE, the French ARRET / ARRÊT
that Canadian carriers require, and TD. Opt-in: START, UNSTOP. Help: HELP, INFO, the Spanish AYUDA (answered
in Spanish) and the French AIDE.

A revocation "by any reasonable means" must be honoured (FCC 24-24), so when in doubt we stop, and the rule
does not depend on where the word stands:
- the keyword as the whole text or the first word ("Stop please"), for every opt-out and HELP keyword;
- in a short text (at most :data:`SHORT_TEXT_WORDS` words), STOP, STOPALL, UNSUBSCRIBE, OPTOUT, REVOKE and
  ARRET count as a lone word anywhere ("Please stop", "pls stop", "I want to stop", "ok STOP now"), and
  CANCEL, END, QUIT, REMOVE and the HELP words as the last word too ("please cancel", "I need help") --
  these are common words, so not in the middle of a sentence ("Can I cancel my appointment?" is about the
  visit);
- except where the text says the opposite: a negated stop ("don't stop my reminders", "please do not stop",
  "never stop") or "stop by" (a visit: "I can stop by at 3") is not an opt-out;
- free-text intent counts anywhere in the text ("please stop texting me", "remove me", "take me off your
  list", "don't text me", "no more texts", "wrong number", "unsubscribe"; Spanish "no más mensajes", "no me
  envíen", "darme de baja"; French "désabonner");
- look-alikes count: the text is NFKC-normalised (full-width ``ＳＴＯＰ`` -> ``STOP``), accents are dropped
  (``ARRÊT`` -> ``ARRET``) and each letter that Unicode lists as confusable with a Latin one (Cyrillic
  ``СТОР``, Greek ``ΤΟΡ``) is read as that letter (``confusable-homoglyphs``, the Unicode TR39 confusables
  data);
- an opt-out intent wins over a HELP or START in the same text;
- Spanish texts may tell patients to reply PARA (``TEMPLATE_OPT_OUT_KEYWORDS``), so PARA, PARAR and BAJA opt
  out too, and TD, but only as the whole text: "para" is also the preposition "for" ("Para mañana?").
Opting back in is not read leniently: START / UNSTOP only as the whole text or the first word.

Templates that open a conversation (booked, changed) must name an opt-out keyword in capitals, as carriers
print it ("Reply STOP to opt out"; CTIA Messaging Principles: the first message carries opt-out
instructions): :func:`names_opt_out`.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

OPT_OUT_WORDS: frozenset[str] = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "REMOVE", "ARRET"}
)
OPT_IN_WORDS: frozenset[str] = frozenset({"START", "UNSTOP"})
HELP_WORDS: frozenset[str] = frozenset({"HELP", "INFO", "AYUDA", "AIDE"})
#: Opt-out keywords that count as a lone word anywhere in a short text ("Please stop", "I want to stop").
ANYWHERE_OPT_OUT_WORDS: frozenset[str] = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "OPTOUT", "REVOKE", "ARRET"})
#: Opt-out keywords that count only as the whole text (common words inside a sentence).
WHOLE_TEXT_OPT_OUT_WORDS: frozenset[str] = frozenset({"PARA", "PARAR", "BAJA", "TD"})
#: A text of at most this many words is "short": a keyword may stand anywhere in it (or last).
SHORT_TEXT_WORDS = 8
#: Spellings read as one keyword (after accents are dropped).
_ALIASES: dict[str, str] = {"UNSUB": "UNSUBSCRIBE", "ARRETE": "ARRET", "ARRETEZ": "ARRET", "ARRETER": "ARRET"}
#: HELP keywords answered in another language than the environment's default.
HELP_LANGUAGES: dict[str, str] = {"AYUDA": "es"}
#: The opt-out keywords a booked/changed template may name, per language; STOP, which every US carrier
#: honours, for the others.
TEMPLATE_OPT_OUT_KEYWORDS: dict[str, tuple[str, ...]] = {"es": ("STOP", "PARA")}
DEFAULT_TEMPLATE_OPT_OUT_KEYWORDS: tuple[str, ...] = ("STOP",)
#: The keyword recorded for an opt-out read from free text rather than a carrier keyword.
FREE_TEXT_OPT_OUT = "FREETEXT"

_OPT_OUT_INTENT = re.compile(
    r"\b(?:"
    r"STOP(?: [A-Z]+){0,2} (?:TEXTING|TEXTS?|MESSAGING|MESSAGES?|SMS|SENDING|CONTACTING|CALLING|REMINDERS?)"
    r"|REMOVE ME|TAKE ME OFF|UNSUBSCRIBE|OPT ME OUT|OPT OUT"
    r"|DON ?T (?:TEXT|MESSAGE|CONTACT|SEND)|DO NOT (?:TEXT|MESSAGE|CONTACT|SEND)"
    r"|NO MORE (?:TEXTS|TEXT|MESSAGES|MESSAGE|SMS|REMINDERS|REMINDER)|WRONG NUMBER|LEAVE ME ALONE"
    r"|(?:DON T|DONT|DO NOT) WANT(?: [A-Z]+){0,2} (?:TEXTS?|MESSAGES?|SMS|REMINDERS?)"
    r"|NO MAS (?:MENSAJES|TEXTOS|SMS)|NO ME (?:ENVIE|ENVIEN|MANDE|MANDEN|ESCRIBA|ESCRIBAN|CONTACTE|CONTACTEN)"
    r"|DE BAJA|DESUSCRIBIR|DESUSCRIBIRME|DESABONNER|DESINSCRIRE|ME DESINSCRIRE"
    r")\b"
)
#: A negated stop ("don't stop texting me", "please never ever stop"): not an opt-out. The same words before
#: another keyword ("don't cancel") negate it too.
_NEGATION = r"\b(?:DON T|DONT|DO NOT|NOT|NEVER|NO NEED TO)(?: EVER| PLEASE| EVEN| YOU)? "
_NEGATED_STOP = re.compile(_NEGATION + r"STOP\b")
_NEGATED_AT_END = re.compile(_NEGATION + r"KEYWORD$")


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
    """Upper-case ASCII words separated by single spaces (full-width and look-alike letters read as Latin,
    accents dropped).

    >>> normalise("  Ｐlease, don't text me!! "), normalise("Arrêt")
    ('PLEASE DON T TEXT ME', 'ARRET')
    """
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", message or ""))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = "".join(_latin(ch) for ch in text).upper()
    return " ".join(re.findall(r"[A-Z]+", text))


def _negated(words: list[str], index: int) -> bool:
    """Whether the keyword at ``words[index]`` is negated ("don't stop", "never ever stop") or a phrasal
    "stop by" (a visit)."""
    after = words[index + 1] if index + 1 < len(words) else ""
    return after == "BY" or _NEGATED_AT_END.search(" ".join([*words[max(0, index - 4):index], "KEYWORD"])) is not None


def keyword(message: str | None) -> str | None:
    """The request of an inbound text: a carrier keyword (``STOP``, ``START``, ``HELP``, ``ARRET``...),
    :data:`FREE_TEXT_OPT_OUT` for an opt-out in other words, or ``None``.

    >>> keyword(" opt-out! "), keyword("Stop please"), keyword("please stop texting me"), keyword("see you")
    ('OPTOUT', 'STOP', 'FREETEXT', None)
    >>> keyword("pls stop"), keyword("Arrêt"), keyword("ayuda"), keyword("don't stop my reminders")
    ('STOP', 'ARRET', 'AYUDA', None)
    """
    text = normalise(message)
    words = [_ALIASES.get(word, word) for word in text.split()]
    if not words:
        return None
    known = OPT_OUT_WORDS | OPT_IN_WORDS | HELP_WORDS
    if len(words) >= 2 and words[0] == "OPT" and words[1] == "OUT":
        return "OPTOUT"
    joined = "".join(words)
    joined = _ALIASES.get(joined, joined)
    if joined in known or joined in WHOLE_TEXT_OPT_OUT_WORDS:
        return joined
    if words[0] in OPT_OUT_WORDS and not _negated(words, 0):
        return words[0]
    if _OPT_OUT_INTENT.search(_NEGATED_STOP.sub("KEEP", " ".join(words))):
        return FREE_TEXT_OPT_OUT
    if len(words) <= SHORT_TEXT_WORDS:
        for index, word in enumerate(words):
            if word in ANYWHERE_OPT_OUT_WORDS and not _negated(words, index):
                return word
        if words[-1] in OPT_OUT_WORDS and not _negated(words, len(words) - 1):
            return words[-1]
        if words[-1] in HELP_WORDS:
            return words[-1]
    return words[0] if words[0] in known and not _negated(words, 0) else None


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
