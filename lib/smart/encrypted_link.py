"""Epic's encrypted-link launch ("Context-Aware Linking", the legacy alternative to the SMART EHR launch).

Epic encrypts a query string with a key shared with the vendor (FDI record ``CryptAlgorithm: AES``) and puts it
in the launch URL (``%ENCRYPTED_DATA%``). Epic does **not** publish the format (protocols.md §1c, "Open
questions" 1): everything below is an **assumption**, documented in docs/launch.md "Encrypted link", kept in one
place, with the field names configurable per environment (``EnvironmentConfig.encrypted_fields``).

Assumed wire format:
- ``data`` = base64url (or standard base64; ``+`` turned into a space by URL decoding is tolerated) of
  ``IV (16 bytes) || AES-CBC ciphertext``, PKCS#7 padding.
- Key: 32 bytes -> AES-256-CBC (Epic August 2019 and later), 16 bytes -> AES-128-CBC (older; Hyland: the
  key is the SHA-1 of a pass phrase, first 16 bytes: :func:`aes128_key_from_passphrase`).
- Plaintext: ASCII ``name=value&name=value`` (values URL-encoded), with these logical fields (default names):
  ``csn`` (``csn``), ``conference_id`` (``conferenceId``), ``user_id`` (``userId``), ``user_type``
  (``userType``: ``provider`` or ``patient``), ``department_id`` (``departmentId``), ``timestamp``
  (``timestamp``: UTC ``yyyyMMddHHmmss``).

Checks (security.md §1.3): one generic error for every decryption or format failure (no padding oracle:
``LAUNCH_LINK_INVALID``), strict plaintext grammar (a bit-flipped ciphertext block garbles its neighbour and
fails the grammar), timestamp within ``max_age`` (and at most 60 s in the future), single use: the link is
claimed under SHA-256 of the ciphertext *without the IV*, so a copy whose IV was altered (CBC lets that change
the first plaintext block) is still a replay of the original. CBC carries no MAC: that residual risk is stated
in docs/launch.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lib.smart.errors import LaunchError

DEFAULT_FIELDS: dict[str, str] = {
    "csn": "csn",
    "conference_id": "conferenceId",
    "user_id": "userId",
    "user_type": "userType",
    "department_id": "departmentId",
    "timestamp": "timestamp",
}
FUTURE_SKEW = timedelta(seconds=60)
MAX_DATA_CHARS = 4096
_PAIR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_VALUE = re.compile(r"[A-Za-z0-9 ._:@-]{0,128}")
_TIMESTAMP = re.compile(r"\d{14}")


@dataclass(frozen=True)
class EncryptedLaunch:
    """The decrypted, checked content of an encrypted launch link.

    Attributes:
        csn: the appointment's CSN (or ``None`` when only a conference ID is given).
        conference_id: the group-visit conference ID, when given.
        user_id: the EHR user ID of a clinician (required for a provider launch).
        user_type: ``provider`` / ``patient`` when the payload says so.
        department_id: the department, when given.
        issued_utc: the link's timestamp.
        digest: hex SHA-256 of the ciphertext without the IV (the replay key).
    """

    csn: str | None
    conference_id: str | None
    user_id: str | None
    user_type: str | None
    department_id: str | None
    issued_utc: datetime
    digest: str


def aes128_key_from_passphrase(passphrase: str) -> bytes:
    """The AES-128 key of a pass phrase as older Epic integrations derive it (assumption: SHA-1, first 16 bytes)."""
    return hashlib.sha1(passphrase.encode()).digest()[:16]  # noqa: S324 - Epic's (assumed) key derivation


def decode_key(text: str) -> bytes:
    """A key from ``EPIC_CAL_KEYS``: base64 of 32 bytes (AES-256) or 16 bytes (AES-128).

    Raises:
        ValueError: not base64, or another length.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
    if len(key) not in (16, 32):
        raise ValueError("an AES key has 16 or 32 bytes")
    return key


def encrypt_link(key: bytes, plaintext: str, iv: bytes) -> str:
    """The ``data`` value of a link (the Epic side; used by tests and the demo): base64url(IV || AES-CBC)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.urlsafe_b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode().rstrip("=")


def format_timestamp(at: datetime) -> str:
    """``yyyyMMddHHmmss`` in UTC."""
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def decrypt_link(data: str, *, key: bytes, fields: dict[str, str] | None, now: datetime,
                 max_age: timedelta) -> EncryptedLaunch:
    """Decrypt and check an encrypted launch link.

    Args:
        data: the ``data`` query parameter.
        key: the environment's AES key (16 or 32 bytes).
        fields: overrides of :data:`DEFAULT_FIELDS` (logical name -> name in the payload).
        now: current real time (aware).
        max_age: the freshness window.

    Raises:
        LaunchError: ``LAUNCH_LINK_INVALID`` (any decoding, decryption, padding or format failure: one code),
            ``LAUNCH_EXPIRED`` (timestamp too old or too far in the future).
    """
    ciphertext = _decode_data(data)
    plaintext = _decrypt(ciphertext, key)
    names = {**DEFAULT_FIELDS, **(fields or {})}
    values = _parse_pairs(plaintext)
    by_logical = {logical: values.get(name) or None for logical, name in names.items()}
    stamp = by_logical["timestamp"]
    if not stamp or not _TIMESTAMP.fullmatch(stamp):
        raise LaunchError("LAUNCH_LINK_INVALID")
    try:
        issued = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise LaunchError("LAUNCH_LINK_INVALID") from None
    if not by_logical["csn"] and not by_logical["conference_id"]:
        raise LaunchError("LAUNCH_LINK_INVALID")
    if issued > now + FUTURE_SKEW or now - issued > max_age:
        window = int(max_age.total_seconds())
        raise LaunchError("LAUNCH_EXPIRED", f"The encrypted link's timestamp is outside the {window} s freshness "
                                            "window (or more than 60 s ahead): the link is stale, or Epic's and "
                                            "Azure's clocks differ.")
    user_type = by_logical["user_type"]
    return EncryptedLaunch(
        csn=by_logical["csn"],
        conference_id=by_logical["conference_id"],
        user_id=by_logical["user_id"],
        user_type=user_type.lower() if user_type else None,
        department_id=by_logical["department_id"],
        issued_utc=issued,
        digest=hashlib.sha256(ciphertext[16:]).hexdigest(),
    )


def _decode_data(data: str) -> bytes:
    text = (data or "").strip().replace(" ", "+")
    if not text or len(text) > MAX_DATA_CHARS:
        raise LaunchError("LAUNCH_LINK_INVALID")
    text = text.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise LaunchError("LAUNCH_LINK_INVALID") from None
    if len(raw) < 32 or len(raw) % 16:
        raise LaunchError("LAUNCH_LINK_INVALID")
    return raw


def _decrypt(raw: bytes, key: bytes) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
        padded = decryptor.update(raw[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise LaunchError("LAUNCH_LINK_INVALID") from None


def _parse_pairs(plaintext: str) -> dict[str, str]:
    """Strict ``name=value&...``: printable ASCII, known shapes, no duplicates."""
    if not plaintext or not plaintext.isprintable():
        raise LaunchError("LAUNCH_LINK_INVALID")
    values: dict[str, str] = {}
    for pair in plaintext.split("&"):
        name, sep, raw = pair.partition("=")
        value = urllib.parse.unquote_plus(raw)
        if not sep or not _PAIR_NAME.fullmatch(name) or not _VALUE.fullmatch(value) or name in values:
            raise LaunchError("LAUNCH_LINK_INVALID")
        values[name] = value
    return values
