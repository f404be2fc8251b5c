"""Redaction of log records: no phone number, e-mail address, token, HL7 text or known name gets through.

What is removed (replacement in brackets):

- HL7 segment text: a known segment ID (``MSH``, ``PID``, ``SCH``, ``PV1``, ``AIP``..., ``Z..``) followed by
  ``|`` and the rest of its line, also inside the ``repr`` of bytes (``PID|[redacted]``);
- HL7 component text: any token holding a ``^`` (``PATIENT^DEMO``, ``E1001^CLINICIAN``) (``[hl7]``);
- bearer tokens (``Bearer [redacted]``), JWT-looking strings (``eyJ...``) (``[jwt]``), secret-named
  values (``access_token=``, ``client_assertion``, ``password``, ``AccountKey``... in ``name=value`` and
  JSON ``"name": "value"`` forms) and OAuth/SMART query parameters (``?code=``, ``&state=``, ``&launch=``,
  ``&sig=``, ``&token=``) (``name=[redacted]``); SMS join-link tokens (``/join/[redacted]``);
- e-mail addresses (``[email]``);
- phone numbers: E.164 and international (``+1 201 555 0123``), North American formats
  (``(201)555-0123``, ``201-555-0123``, ``201.555.0123``), ``555-0123``, and bare runs of 10 or 11 digits
  (``[phone]``). Longer digit runs (HL7 timestamps ``20260101150000``) and shorter ones (IDs) are kept, and
  so are the machine limits 2**30 .. 2**36 and each of them minus one (``4294967295``, ``2147483647``): the
  numbers error messages quote ("requires 0 <= number <= 4294967295"), which are no one's phone number;
- configurable known names (whole words, any case) (``[name]``): tests pass the names of their inputs;
  a deployment may pass names it knows appear in its feeds.

Records are rewritten in place by :func:`redact_record`: ``msg`` becomes the redacted, fully formatted
message (``args`` emptied), the exception (with its chained causes) becomes redacted ``exc_text`` and
``exc_info`` is dropped, so no handler can format the original exception again. :class:`RedactionFilter`
does the same as a ``logging.Filter``; :mod:`lib.observability.logging_setup` applies it to every record
the process creates (a record factory), whatever handler later sees it.

Cost: each rule runs only when a cheap substring test says it can match; a few microseconds for a typical
log line (``./dev bench --only logging``).
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable

__all__ = ["RedactionFilter", "add_known_names", "known_names", "redact", "redact_record"]

_SEGMENTS = (
    "MSH|EVN|PID|PD1|NK1|PV1|PV2|SCH|TQ1|RGS|AIS|AIG|AIL|AIP|NTE|MSA|ERR|OBX|OBR|ORC|DG1|IN1|IN2|GT1|AL1|"
    "ARQ|MRG|ROL|SFT|UAC|Z[A-Z0-9]{2}"
)
_SECRET_NAMES = (  # names of secrets, not secrets
    r"access_token|refresh_token|id_token|client_assertion|client_secret|code_verifier|password|passwd|"  # noqa: S105
    r"accesskey|accountkey|sharedaccesskey|sharedaccesssignature|link_signing_key|authorization"
)

_SEGMENT = re.compile(rf"(?<![A-Za-z0-9])({_SEGMENTS})\|[^\r\n]*")
_CARET = re.compile(r"[^\s|^\"'<>(){}\[\],;]*\^[^\s|\"'<>(){}\[\],;]*")
_BEARER = re.compile(r"(?i:\bbearer)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}")
_SECRET = re.compile(
    rf"((?i:\b(?:{_SECRET_NAMES})))(\s*[=:]\s*|\"\s*:\s*\"|'\s*:\s*')(?:(?i:bearer|basic)\s+)?[^\s&;,\"']+"
)
_SECRET_WORDS = tuple(_SECRET_NAMES.split("|"))
_QUERY = re.compile(r"([?&](?:code|state|launch|sig|token|iss)=)[^&\s#\"']+")
_JOIN = re.compile(r"/join/[A-Za-z0-9_-]{12,}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(
    r"(?<![\w+])\+\d[\d\s().-]{6,18}\d(?!\d)"  # E.164 / international
    r"|(?<![\w])(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w])"  # (201)555-0123, 201-555-0123
    r"|(?<![\w.-])\d{3}-\d{4}(?![\w-])"  # 555-0123
    r"|(?<![\w.])\d{10,11}(?![\w])"  # 2015550123
)
_MAYBE_PHONE = re.compile(r"\d[\d\s().-]{5,}\d")
#: Integer limits quoted by error messages (struct, Cosmos DB ttl...): kept, so the cause stays readable.
_LIMITS = frozenset(str(2**k - d) for k in range(30, 37) for d in (0, 1))


def _phone(match: re.Match[str]) -> str:
    return match.group(0) if match.group(0) in _LIMITS else "[phone]"


def _caret(match: re.Match[str]) -> str:
    # A lone caret (or carets and separators only) carries nothing.
    return "[hl7]" if any(c.isalnum() for c in match.group(0)) else match.group(0)


_names_lock = threading.Lock()
_names: frozenset[str] = frozenset()
_names_pattern: re.Pattern[str] | None = None


def add_known_names(names: Iterable[str]) -> None:
    """Also redact these names (whole words, any case) from now on, in this process.

    Names shorter than 3 characters are ignored (they would erase ordinary words).
    """
    global _names, _names_pattern
    with _names_lock:
        merged = _names | {n.strip() for n in names if len(n.strip()) >= 3}
        if merged == _names:
            return
        _names = frozenset(merged)
        alternatives = "|".join(re.escape(n) for n in sorted(_names, key=len, reverse=True))
        _names_pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


def known_names() -> frozenset[str]:
    """The names :func:`add_known_names` registered."""
    return _names


def redact(text: str) -> str:
    """``text`` with every sensitive value replaced (see the module docstring).

    Each rule runs only when a cheap test says it can match (a ``|``, a ``^``, an ``@``, a run of digits...),
    so an ordinary log line costs a few substring tests and one or two regular expressions.
    """
    if not text:
        return text
    if "|" in text:
        text = _SEGMENT.sub(lambda m: f"{m.group(1)}|[redacted]", text)
    if "eyJ" in text:
        text = _JWT.sub("[jwt]", text)
    lowered = text.lower()
    if "bearer" in lowered:
        text = _BEARER.sub("Bearer [redacted]", text)
    if ("=" in text or ":" in text) and any(word in lowered for word in _SECRET_WORDS):
        text = _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    if "=" in text and ("?" in text or "&" in text):
        text = _QUERY.sub(lambda m: f"{m.group(1)}[redacted]", text)
    if "/join/" in text:
        text = _JOIN.sub("/join/[redacted]", text)
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    if _MAYBE_PHONE.search(text):
        text = _PHONE.sub(_phone, text)
    if "^" in text:
        text = _CARET.sub(_caret, text)
    pattern = _names_pattern
    if pattern is not None:
        text = pattern.sub("[name]", text)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Rewrite ``record`` in place: redacted message (``args`` merged in), exception and stack text.

    Never raises: when the message cannot be formatted or redacted, it is replaced by a fixed text.
    """
    if getattr(record, "_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string or arguments: keep neither
        message = f"[unformattable log message from {record.name}:{record.lineno}]"
    try:
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
    except Exception:  # never let logging fail the caller
        record.msg, record.args = "[log message dropped: redaction failed]", ()
        record.exc_info, record.exc_text = None, None
    record._redacted = True  # type: ignore[attr-defined]
    return record


class RedactionFilter(logging.Filter):
    """A ``logging.Filter`` (for handlers) that redacts each record it sees and never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always ``True``."""
        redact_record(record)
        return True
