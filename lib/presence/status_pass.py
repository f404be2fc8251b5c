"""The pass to a visit's live status page: issued only at the end of a clinician's SMART launch into that
visit (launch URL with ``view=status``), bound to the visit and the clinician's EHR user ID, expiring two hours
after the visit's scheduled end. ``{base64url JSON}.{base64url HMAC-SHA256}`` under a key derived from
``LINK_SIGNING_KEY``; nothing in it is secret, and nothing in it names the patient.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_PASS_LENGTH = 512


class InvalidPass(Exception):
    """The pass is malformed, forged or expired (``reason`` is safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StatusPass:
    """Whose pass to which visit, until when."""

    appointment_key: str
    ehr_user_id: str
    expires_utc: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StatusPasses:
    """Issues and checks status passes.

    Args:
        signing_key: ``Settings.link_signing_key`` (a separate key is derived from it for this purpose).
    """

    def __init__(self, signing_key: bytes) -> None:
        self._key = hashlib.sha256(b"vv-status-pass|" + signing_key).digest()

    def issue(self, appointment_key: str, ehr_user_id: str, expires: datetime) -> str:
        """A pass for ``ehr_user_id`` to the status of ``appointment_key`` until ``expires``."""
        body = _b64(json.dumps({"a": appointment_key, "u": ehr_user_id, "e": int(expires.timestamp())},
                               separators=(",", ":")).encode())
        return body + "." + _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issued(self, token: str) -> bool:
        """Whether ``token`` carries our signature (expired or not): an HMAC check, no store."""
        try:
            self.verify(token, now=datetime.min.replace(tzinfo=UTC))
        except InvalidPass:
            return False
        return True

    def verify(self, token: str, *, now: datetime) -> StatusPass:
        """The pass's claims.

        Raises:
            InvalidPass: ``malformed``, ``bad_signature`` or ``expired``.
        """
        if not token or len(token) > MAX_PASS_LENGTH or token.count(".") != 1:
            raise InvalidPass("malformed")
        body, signature = token.split(".")
        try:
            given = _unb64(signature)
        except ValueError:
            raise InvalidPass("malformed") from None
        if not hmac.compare_digest(given, hmac.new(self._key, body.encode(), hashlib.sha256).digest()):
            raise InvalidPass("bad_signature")
        try:
            claims = json.loads(_unb64(body))
            found = StatusPass(str(claims["a"]), str(claims["u"]), datetime.fromtimestamp(int(claims["e"]), UTC))
        except (ValueError, KeyError, TypeError):
            raise InvalidPass("malformed") from None
        if found.expires_utc <= now:
            raise InvalidPass("expired")
        return found
