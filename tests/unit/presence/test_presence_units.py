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
from lib.presence.roster import transitions
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
