"""Whose visit a message is about (lib.scheduling.visit_identity): sender and patient rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from lib.scheduling.visit_identity import MessageIdentity, identity_conflict, patient_key, stored_identity

KEY = patient_key(b"k" * 32)
ROTATED = patient_key(b"r" * 32)


@dataclass
class Stored:
    sender: str | None = None
    patient_refs: list[str] = field(default_factory=list)


def ident(facility: str = "HOSP A", *ids: str, key: bytes = KEY) -> MessageIdentity:
    return MessageIdentity.of(facility, "^", tuple(ids), key)


def booked_by(message: MessageIdentity) -> Stored:
    sender, refs = stored_identity(None, message)
    return Stored(sender, refs)


def test_the_sender_is_msh4s_namespace_id_in_upper_case():
    assert ident("Hosp A^1.2.840.1^ISO").sender == ident(" HOSP A ").sender == "HOSP A"
    assert ident("^1.2.840.1^ISO").sender == "^1.2.840.1^ISO"  # no namespace: the whole field


def test_pid3_is_stored_only_as_keyed_hashes():
    refs = ident("HOSP A", "Z999001", "E55").patient_refs
    assert len(refs) == 2 and not any("Z999001" in r or "E55" in r for r in refs)
    assert ident("HOSP A", " z999001 ").patient_refs == ident("HOSP A", "Z999001").patient_refs
    assert ident("HOSP A", "Z999001", key=ROTATED).patient_refs != ident("HOSP A", "Z999001").patient_refs


def test_another_sender_is_a_conflict_unless_the_environment_binds_its_feed():
    stored = booked_by(ident("HOSP A", "Z1"))
    assert identity_conflict(stored, ident("CLINIC B", "Z1"), bound_facilities=()).kind == "sender"
    assert identity_conflict(stored, ident("CLINIC B", "Z1"), bound_facilities=("HOSP A", "CLINIC B")) is None


def test_another_patient_is_a_conflict_even_within_a_bound_feed():
    stored = booked_by(ident("HOSP A", "Z1", "E1"))
    for bound in ((), ("HOSP A",)):
        assert identity_conflict(stored, ident("HOSP A", "Z2"), bound_facilities=bound).kind == "patient"
        assert identity_conflict(stored, ident("HOSP A", "E1", "Z9"), bound_facilities=bound) is None  # one matches


def test_what_cannot_be_compared_is_not_a_conflict():
    assert identity_conflict(Stored(), ident("CLINIC B", "Z2"), bound_facilities=()) is None  # old or launch visit
    assert identity_conflict(booked_by(ident("HOSP A", "Z1")), ident("HOSP A"), bound_facilities=()) is None
    assert identity_conflict(booked_by(ident("HOSP A")), ident("HOSP A", "Z2"), bound_facilities=()) is None
    rotated = ident("HOSP A", "Z2", key=ROTATED)  # the key changed: the stored hashes say nothing
    assert identity_conflict(booked_by(ident("HOSP A", "Z1")), rotated, bound_facilities=()) is None


def test_the_identifiers_of_the_same_patient_accumulate_and_a_rotated_key_replaces_them():
    stored = booked_by(ident("HOSP A", "Z1"))
    sender, refs = stored_identity(stored, ident("HOSP A", "E1", "Z1"))
    assert sender == "HOSP A" and len(refs) == 2
    later = Stored(sender, refs)
    assert identity_conflict(later, ident("HOSP A", "E1"), bound_facilities=()) is None
    assert stored_identity(later, ident("HOSP A"))[1] == refs  # no PID-3: the stored ones stay
    assert stored_identity(later, ident("HOSP A", "Z1", key=ROTATED))[1] == list(
        ident("HOSP A", "Z1", key=ROTATED).patient_refs)
