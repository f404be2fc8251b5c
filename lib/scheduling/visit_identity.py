"""Whose visit a message is about: the sender that booked it (MSH-4) and its patient (PID-3).

A visit is keyed by environment + appointment ID (SCH-2, SCH-1 or PV1-19), with no sender in the key, so two
feeds whose numbering overlaps (two facilities or engines posting to one environment) name the same visit with
the same number. A message for an existing visit is therefore refused (``AR`` 205, kept for replay) when

- it comes from another sending facility than the one that booked the visit, unless the environment is bound
  to sending facilities (``hl7_sending_facilities``: the admin named the facilities of its one feed, whose
  numbering is shared), or
- its patient is another one: PID-3 names identifiers and none of them is one the visit's messages named.

Otherwise the second patient would be texted the first patient's join link, and the first would lose their
texts. A message or a visit without PID-3 (or without a recorded sender) cannot be compared and is applied.

Only a keyed hash of each PID-3 identifier is stored (HMAC-SHA256 under a key derived from
``LINK_SIGNING_KEY``, 16 bytes): a bare hash of a short MRN could be reversed by trying every MRN. The stored
hashes carry the key's fingerprint, so after the key is rotated they are not compared (no false refusal) and
the next accepted message stores them anew.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["IdentityConflict", "MessageIdentity", "identity_conflict", "patient_key", "stored_identity"]


def patient_key(link_signing_key: bytes) -> bytes:
    """The key of the PID-3 hashes, derived from ``Settings.link_signing_key``."""
    return hmac.new(link_signing_key, b"hl7-patient-identifier-v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class MessageIdentity:
    """What a message says about whose visit it is: its sender (MSH-4's namespace ID, upper case) and keyed
    hashes of its PID-3 identifiers, prefixed by the key's fingerprint (``k1a2b3c4:<hash>``)."""

    sender: str
    patient_refs: tuple[str, ...]

    @classmethod
    def of(cls, sending_facility: str, component: str, identifiers: tuple[str, ...], key: bytes) -> MessageIdentity:
        """The identity of a message from MSH-4 as sent (``component``: its component separator) and the CX.1
        values of PID-3 (:attr:`lib.hl7.siu.SiuMessage.patient_identifiers`)."""
        whole = sending_facility.strip()
        namespace = whole.split(component, 1)[0].strip() if component else whole
        fingerprint = hmac.new(key, b"fingerprint", hashlib.sha256).hexdigest()[:8]
        refs = tuple(f"{fingerprint}:{_digest(key, value)}" for value in identifiers if value.strip())
        return cls((namespace or whole).upper(), refs)


def _digest(key: bytes, identifier: str) -> str:
    """16 bytes (hex) of HMAC-SHA256 over one PID-3 identifier, spaces around it and letter case ignored."""
    return hmac.new(key, identifier.strip().upper().encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


class StoredIdentity(Protocol):
    """What :func:`identity_conflict` reads of a stored visit (:class:`lib.models.Appointment`)."""

    sender: str | None
    patient_refs: list[str]


@dataclass(frozen=True)
class IdentityConflict:
    """Why a message may not change a visit: ``kind`` ``sender`` or ``patient``, and the reason for MSA-3/ERR
    (no patient data: facility names and field names only)."""

    kind: Literal["sender", "patient"]
    reason: str


def identity_conflict(
    stored: StoredIdentity, message: MessageIdentity, *, bound_facilities: tuple[str, ...]
) -> IdentityConflict | None:
    """The conflict between a stored visit and a message about it, or None when the message may change it."""
    if stored.sender and stored.sender != message.sender and not bound_facilities:
        return IdentityConflict(
            "sender",
            f"this appointment ID belongs to a visit booked by another sending facility (MSH-4 {stored.sender[:40]!r}"
            "); nothing was applied. Two feeds number their visits alike: give each its own environment, or, if "
            "both facilities are one feed, list them in the environment's sending facilities and replay",
        )
    fingerprints = {ref.partition(":")[0] for ref in message.patient_refs}
    comparable = {ref for ref in stored.patient_refs if ref.partition(":")[0] in fingerprints}
    if comparable and message.patient_refs and comparable.isdisjoint(message.patient_refs):
        return IdentityConflict(
            "patient",
            "this appointment ID belongs to a visit of another patient (no PID-3 identifier matches the ones it "
            "was booked with); nothing was applied: check the appointment ID and PID-3, then send it again",
        )
    return None


#: Most PID-3 hashes kept per visit (a message lists a few identifiers: MRN, enterprise ID, national ID...).
MAX_PATIENT_REFS = 10


def stored_identity(stored: StoredIdentity | None, message: MessageIdentity) -> tuple[str, list[str]]:
    """The sender and patient hashes to store with the visit after ``message`` was applied to it: the message's
    sender; the message's hashes first, then the stored ones under the same key (a message naming only the
    enterprise ID and a later one naming only the MRN are both the visit's patient), at most
    :data:`MAX_PATIENT_REFS`."""
    fingerprints = {ref.partition(":")[0] for ref in message.patient_refs}
    kept = list(stored.patient_refs) if stored is not None else []
    if fingerprints:
        kept = [ref for ref in kept if ref.partition(":")[0] in fingerprints]
    refs = list(dict.fromkeys([*message.patient_refs, *kept]))
    return message.sender, refs[:MAX_PATIENT_REFS]
