"""Identifiers a sender chose, in a form safe for logs.

MSH-10 (message control ID) is free text to the sender: most feeds send a counter or a UUID, but nothing
stops one from writing ``JOHNSMITH-DOB19800101``. A value is logged as it is only when it has the shape of
a counter or a UUID; anything else is logged as ``#`` and the first 12 hex digits of its SHA-256, which
still lets an operator match repeated log lines and, with the sender's value in hand, check it.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["log_control_id"]

#: A counter (at most 3 letters, then digits and separators: ``7001234-1``, ``MSG00001``, ``C1``) or a UUID.
_PLAIN = re.compile(
    r"[A-Za-z]{0,3}[0-9][0-9._-]{0,39}"
    r"|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


def log_control_id(value: str | None) -> str:
    """``value`` when it looks like a counter or a UUID, else ``#`` + 12 hex digits of its SHA-256;
    ``-`` when there is none."""
    if not value:
        return "-"
    if _PLAIN.fullmatch(value):
        return value
    return "#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
