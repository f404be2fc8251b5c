"""Identifiers a sender chose, in a form safe for logs.

MSH-10 (message control ID) is free text to the sender: most feeds send a counter or a UUID, but nothing
stops one from writing ``JOHNSMITH-DOB19800101``. A value is logged as it is only when it has the shape of
a counter or a UUID and the log redaction (:mod:`lib.observability.redaction`) leaves it whole; anything else
is logged as ``#`` and the first 12 hex digits of its HMAC-SHA256 under the deployment's ``LOG_ID_KEY``
(:attr:`lib.settings.Settings.log_id_key`). So a counter of 10 or 11 digits (``2015550123``, ``7001234567-1``)
or one shaped like a phone number (``201-555-0123``) is hashed: the redaction would have shown it as
``[phone]``, alike for every such message and found by no search; hashed, each message keeps its own mark.
Keyed, because a plain hash of a short value can be reversed by trying every value; stable per deployment, so
an operator can still match repeated log lines, and, with the sender's value in hand, find them (``./dev ops
hl7 log-id``, which reads the value from stdin and prints what the log shows for it).

The key is set once per process when the app's services are built (:func:`use_key`). Until then (a tool that
builds no services) a random per-process key is used: hashes are still keyed, only not comparable across
processes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

__all__ = ["log_control_id", "use_key"]

#: A counter (at most 3 letters, then digits and separators: ``7001234-1``, ``MSG00001``, ``C1``) or a UUID.
_PLAIN = re.compile(
    r"[A-Za-z]{0,3}[0-9][0-9._-]{0,39}"
    r"|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
#: Shortest key accepted (the settings require 32 bytes).
MIN_KEY_BYTES = 32

_key: bytes = secrets.token_bytes(MIN_KEY_BYTES)


def use_key(key: bytes) -> None:
    """Key every later :func:`log_control_id` with ``key`` (the deployment's ``LOG_ID_KEY``).

    Raises:
        ValueError: ``key`` is shorter than :data:`MIN_KEY_BYTES`.
    """
    global _key
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the log ID key must hold at least {MIN_KEY_BYTES} bytes")
    _key = key


def log_control_id(value: str | None) -> str:
    """``value`` when it looks like a counter or a UUID, else ``#`` + 12 hex digits of its HMAC-SHA256 under
    the deployment's key; ``-`` when there is none."""
    if not value:
        return "-"
    if _PLAIN.fullmatch(value) and _kept_by_redaction(value):
        return value
    return "#" + hmac.new(_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:12]


def _kept_by_redaction(value: str) -> bool:
    """Whether the log redaction leaves ``value`` whole in a log line (``msh10=<value> ...``). Spaces around it
    block none of the redaction's patterns, so a value kept here is kept after ``=`` or at a line's end too."""
    from lib.observability.redaction import redact

    return redact(f" {value} ") == f" {value} "
