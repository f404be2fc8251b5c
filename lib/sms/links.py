"""Join links sent by SMS: an opaque, unguessable, expiring token bound to one appointment.

Token = base64url( link ID (16 bytes) || expiry (4 bytes, Unix seconds, big-endian) || HMAC-SHA256 tag
truncated to 16 bytes ) over the first 20 bytes with ``LINK_SIGNING_KEY``. The link ID is random and maps
to the appointment in the ``links`` container; the CSN never appears in a link. An expiry outside what 4
bytes hold (before 1970, after 2106-02-07) is clamped to that range, so no appointment time can break the
encoding (the intake refuses such visits anyway: ``lib/scheduling/visit_window.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from datetime import UTC, datetime


class InvalidLink(Exception):
    """The token is malformed, tampered with, or expired. ``reason`` is safe to show and log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JoinLinks:
    """Makes and checks join-link tokens.

    Args:
        key: the secret (``Settings.link_signing_key``), at least 32 bytes.
    """

    _TAG_BYTES = 16
    _MAX_EXPIRY = 2**32 - 1

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the link signing key must hold at least 32 bytes")
        self._key = key

    def token(self, link_id: str, expires: datetime) -> str:
        """The token for ``link_id`` (the appointment's ``link_id``, URL-safe base64 of 16 bytes)."""
        raw_id = base64.urlsafe_b64decode(link_id + "=" * (-len(link_id) % 4))
        seconds = min(max(int(expires.timestamp()), 0), self._MAX_EXPIRY)
        body = raw_id + struct.pack(">I", seconds)
        return base64.urlsafe_b64encode(body + self._tag(body)).rstrip(b"=").decode()

    def verify(self, token: str, *, now: datetime) -> str:
        """The link ID inside a valid, unexpired ``token``.

        Raises:
            InvalidLink: malformed, wrong signature, or expired.
        """
        body = self._signed_body(token)
        (expires,) = struct.unpack(">I", body[16:20])
        if datetime.fromtimestamp(expires, UTC) <= now:
            raise InvalidLink("the link has expired")
        return base64.urlsafe_b64encode(body[:16]).rstrip(b"=").decode()

    def issued(self, token: str) -> bool:
        """Whether ``token`` is one we signed (expired or not): an HMAC check, no store. A token that is not is
        a guess; one that is never counts as one (its link may have expired, or its visit gone)."""
        try:
            self._signed_body(token)
        except InvalidLink:
            return False
        return True

    def _signed_body(self, token: str) -> bytes:
        """The link ID and expiry of a token whose signature is ours.

        Raises:
            InvalidLink: malformed or wrong signature.
        """
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidLink("the link is not valid") from exc
        if len(raw) != 16 + 4 + self._TAG_BYTES:
            raise InvalidLink("the link is not valid")
        body, tag = raw[:-self._TAG_BYTES], raw[-self._TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(body)):
            raise InvalidLink("the link is not valid")
        return body

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[: self._TAG_BYTES]
