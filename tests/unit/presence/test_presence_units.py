"""Presence without services: roster differences, notification decryption checks, status passes, live status."""

from __future__ import annotations

import base64
import datetime as dt
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from lib.presence.encrypted_content import NotificationCertificate, NotificationRefused, decrypt_resource
from lib.presence.live_status import visit_status
from lib.presence.participants import transitions
from lib.presence.status_pass import InvalidPass, StatusPasses
from lib.store.presence import Presence, RosterEntry, Snapshot

T0 = datetime(2026, 3, 3, 19, 0, tzinfo=UTC)
CLIN = RosterEntry("k-clin", "provider", "E1001")
PAT = RosterEntry("k-pat", "patient", "patient")
PAT_LOBBY = RosterEntry("k-pat", "patient", "patient", lobby=True)


@pytest.mark.parametrize(("before", "after", "expected"), [
    ((), (CLIN,), [("k-clin", "connected")]),
    ((CLIN,), (), [("k-clin", "disconnected")]),
    ((), (PAT_LOBBY,), [("k-pat", "in_lobby")]),
    ((PAT_LOBBY,), (PAT,), [("k-pat", "connected")]),
    ((PAT_LOBBY,), (), [("k-pat", "left_lobby")]),
    ((PAT,), (PAT_LOBBY,), [("k-pat", "disconnected"), ("k-pat", "in_lobby")]),
    ((CLIN, PAT), (CLIN, PAT), []),
])
def test_roster_differences_become_participant_events(before, after, expected):
    assert [(who.key, kind) for who, kind in transitions(before, after)] == expected


def _certificate() -> tuple[NotificationCertificate, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifications")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime.now(UTC)).not_valid_after(dt.datetime.now(UTC)
                                                                                       + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)
    return NotificationCertificate.from_pem(pem), cert


def _sealed(ours: NotificationCertificate, cert: x509.Certificate, resource: dict) -> dict:
    """What Graph sends, built by the Graph stand-in's encryption (AES-256-CBC, RSA-OAEP key, HMAC)."""
    from local.standins.graph_presence import Subscription, encrypt_for

    sub = Subscription(id="s", resource="r", join_url="j", change_type="created", notification_url="u",
                       lifecycle_url=None, client_state=None, expires=T0, certificate=cert.public_key(),  # type: ignore[arg-type]
                       certificate_id=ours.certificate_id, thumbprint="T", client_id="c")
    return encrypt_for(sub, resource)


def test_a_rich_notification_decrypts_after_its_signature_checks():
    ours, cert = _certificate()
    resource = {"callEventType": "rosterUpdated", "id": "e1"}
    assert decrypt_resource(_sealed(ours, cert, resource), {ours.certificate_id: ours}) == resource


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda c: {**c, "dataSignature": base64.b64encode(b"x" * 32).decode()}, "bad_signature"),
    (lambda c: {**c, "data": base64.b64encode(bytes([base64.b64decode(c["data"])[0] ^ 1])
                                              + base64.b64decode(c["data"])[1:]).decode()}, "bad_signature"),
    (lambda c: {**c, "encryptionCertificateId": "someone-else"}, "unknown_certificate"),
    (lambda c: {**c, "dataKey": base64.b64encode(b"y" * 256).decode()}, "bad_data_key"),
    (lambda c: {k: v for k, v in c.items() if k != "dataSignature"}, "data_signature_missing"),
])
def test_a_tampered_notification_is_refused_before_decryption(tamper, reason):
    ours, cert = _certificate()
    sealed = _sealed(ours, cert, {"id": "e1"})
    with pytest.raises(NotificationRefused) as refused:
        decrypt_resource(tamper(sealed), {ours.certificate_id: ours})
    assert refused.value.reason == reason


def test_a_status_pass_is_bound_to_its_visit_and_expires():
    passes = StatusPasses(b"k" * 32)
    token = passes.issue("env|777", "E1001", T0 + timedelta(hours=3))
    found = passes.verify(token, now=T0)
    assert (found.appointment_key, found.ehr_user_id) == ("env|777", "E1001")
    with pytest.raises(InvalidPass, match="expired"):
        passes.verify(token, now=T0 + timedelta(hours=3))
    with pytest.raises(InvalidPass, match="bad_signature"):
        StatusPasses(b"other" * 8).verify(token, now=T0)


def test_live_status_says_who_is_in_the_room_and_since_when():
    presence = Presence("env|777", (
        Snapshot(T0, "a", (CLIN,)),
        Snapshot(T0 + timedelta(minutes=1), "b", (CLIN, PAT_LOBBY)),
        Snapshot(T0 + timedelta(minutes=3), "c", (CLIN, PAT)),
        Snapshot(T0 + timedelta(minutes=9), "d", (PAT,)),
    ), call_started_utc=T0)
    status = visit_status(presence)
    assert [(p.label, p.state, p.since_utc) for p in status.participants] == [
        ("Clinician E1001", "left", T0 + timedelta(minutes=9)),
        ("Patient", "in_meeting", T0 + timedelta(minutes=3)),
    ]


def test_media_quality_averages_each_participants_audio_and_video_streams_and_skips_screen_sharing():
    from lib.presence.call_records import media_quality

    segments = [{"media": [
        {"label": "main-audio", "streams": [
            {"averageJitter": "PT0.010S", "averagePacketLossRate": 0.01, "averageRoundTripTime": "PT0.040S"},
            {"averageJitter": "PT0.030S", "averagePacketLossRate": 0.03, "averageRoundTripTime": "PT0.060S"}]},
        {"label": "main-video", "streams": [{"averageJitter": "PT1M", "averagePacketLossRate": 0.2}]},
        {"label": "applicationsharing-video", "streams": [{"averageJitter": "PT9S"}]},
    ]}]
    assert media_quality(segments) == {
        "audio": {"jitter_ms": 20.0, "packet_loss_rate": 0.02, "round_trip_ms": 50.0},
        "video": {"jitter_ms": 60000.0, "packet_loss_rate": 0.2, "round_trip_ms": None},
    }


PAT_PHONE = RosterEntry("k-pat-phone", "patient", "patient")
PAT_LAPTOP = RosterEntry("k-pat-laptop", "patient", "patient")
PAT_LAPTOP_LOBBY = RosterEntry("k-pat-laptop", "patient", "patient", lobby=True)
CLIN_SECOND_ACCOUNT = RosterEntry("k-clin-2", "provider", "E1001")


@pytest.mark.parametrize(("before", "after", "expected"), [
    ((CLIN, PAT_PHONE), (CLIN, PAT_PHONE, PAT_LAPTOP), []),                 # a second device joins
    ((CLIN, PAT_PHONE, PAT_LAPTOP), (CLIN, PAT_LAPTOP), []),                # one of two devices leaves
    ((CLIN, PAT_LAPTOP), (CLIN,), [("patient", "disconnected")]),           # the last device leaves
    ((CLIN, PAT_PHONE), (CLIN, PAT_LAPTOP), []),                            # a reload swaps identities
    ((CLIN,), (CLIN, PAT_PHONE, PAT_LAPTOP_LOBBY), [("patient", "connected")]),
    ((CLIN, PAT_PHONE), (CLIN, PAT_LAPTOP_LOBBY), [("patient", "disconnected"), ("patient", "in_lobby")]),
    ((CLIN,), (CLIN, CLIN_SECOND_ACCOUNT), []),                             # two Entra accounts, one EHR user
    ((CLIN, CLIN_SECOND_ACCOUNT), (CLIN_SECOND_ACCOUNT,), []),
])
def test_one_person_with_several_identities_is_one_participant(before, after, expected):
    assert [(who.participant_id, kind) for who, kind in transitions(before, after)] == expected


def test_a_participants_stays_from_several_identities_merge_where_they_overlap():
    from lib.presence.participants import merged_stays

    t = [T0 + timedelta(minutes=m) for m in range(10)]
    assert merged_stays([(t[3], t[6]), (t[1], t[4])]) == [(t[1], t[6])]           # two devices overlap
    assert merged_stays([(t[1], t[3]), (t[3], t[5])]) == [(t[1], t[5])]           # reload: touching stays
    assert merged_stays([(t[1], t[2]), (t[4], t[5])]) == [(t[1], t[2]), (t[4], t[5])]  # a real gap stays a gap
    assert merged_stays([(t[1], None), (t[2], t[3])]) == [(t[1], None)]           # no leave time: still there
    assert merged_stays([(t[1], t[4]), (t[2], None)]) == [(t[1], None)]


def test_a_trimmed_roster_history_keeps_the_roster_at_the_cut_as_its_baseline():
    snaps = tuple(Snapshot(T0 + timedelta(minutes=i), f"s{i}", (CLIN,) if i % 2 else (CLIN, PAT)) for i in range(7))
    presence = Presence("env|777", snaps).trimmed(3)
    assert [s.event_id for s in presence.snapshots] == ["s4", "s5", "s6"]
    assert presence.baseline == snaps[3]
    stored = Presence.from_doc({**presence.to_doc(), "_etag": "e"})
    assert stored.baseline == snaps[3] and stored.snapshots == presence.snapshots
    assert Presence("env|777", snaps).trimmed(7) == Presence("env|777", snaps)


def test_live_status_shows_a_patient_on_two_devices_once_and_starts_from_the_baseline():
    presence = Presence("env|777", (
        Snapshot(T0 + timedelta(minutes=2), "b", (CLIN, PAT_PHONE, PAT_LAPTOP)),
        Snapshot(T0 + timedelta(minutes=3), "c", (CLIN, PAT_LAPTOP)),
    ), baseline=Snapshot(T0, "a", (CLIN, PAT_PHONE)))
    assert [(p.label, p.state, p.since_utc) for p in visit_status(presence).participants] == [
        ("Clinician E1001", "in_meeting", T0),
        ("Patient", "in_meeting", T0),
    ]
