"""Intake trust rules end to end: signed requests, operator replay, store outages, enhanced ACKs, group
visits (issue: "HL7 intake that any real Epic (or other) scheduling feed can trust")."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest

from lib.models import appointment_key
from lib.scheduling.replay import RejectedNotFound, replay_rejected
from lib.settings import SettingsError, load_settings
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7, segment
from tests.support.environments import make_environment
from tests.support.hl7_signing import default_signer
from tests.support.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def message(event: str = "S12", control: str = "C1", **kw) -> bytes:
    return siu(event, csn=kw.pop("csn", "8000001"), start=START, control_id=control,
               sent=kw.pop("sent", NOW), **kw)


def with_msh_tail(raw: bytes, tail: str) -> bytes:
    """Append fields after MSH-12 (e.g. ``|||AL|NE`` sets MSH-15 AL, MSH-16 NE)."""
    first, rest = raw.split(b"\r", 1)
    return first + tail.encode() + b"\r" + rest


def problem(response) -> dict:
    assert response.mimetype == "application/problem+json"
    return json.loads(response.get_body())


@pytest.fixture
def env(app, clock, environment_id):
    clock.set(NOW)
    return make_environment(app, environment_id)


# ---- authentication ----------------------------------------------------------------------------------

def test_unsigned_request_is_401_signature_missing_and_nothing_is_stored_or_kept(app, env):
    response = post_hl7(env.id, message(), sign=False)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'HL7-JWS realm="hl7-intake", error="signature_missing"'
    assert problem(response)["code"] == "signature_missing"
    assert app.repos.appointments.get(appointment_key(env.id, "8000001")) is None
    assert app.repos.rejected.list(env.id) == []


def test_the_same_signed_request_twice_is_refused_as_replayed(app, env):
    body = message()
    headers = default_signer().headers(env.id, body)
    assert msa(post_hl7(env.id, body, headers))[1] == "AA"
    second = post_hl7(env.id, body, headers)
    assert (second.status_code, problem(second)["code"]) == (401, "signature_replayed")


def test_a_resend_signed_anew_gets_the_same_ack(app, env):
    first = post_hl7(env.id, message())
    assert post_hl7(env.id, message()).get_body() == first.get_body()


def test_body_changed_in_transit_is_refused(app, env):
    headers = default_signer().headers(env.id, message())
    response = post_hl7(env.id, message(csn="8000002"), headers)
    assert (response.status_code, problem(response)["code"]) == (401, "body_digest_mismatch")


def test_expired_signature_is_refused(app, env):
    headers = default_signer().headers(env.id, message(), now=datetime.now(UTC) - timedelta(minutes=10))
    response = post_hl7(env.id, message(), headers)
    assert (response.status_code, problem(response)["code"]) == (401, "signature_expired")


@pytest.mark.parametrize(("offset", "status"), [(timedelta(seconds=-250), 401), (timedelta(seconds=150), 401),
                                              (timedelta(seconds=40), 200)])
def test_the_senders_clock_skew_is_measured_from_every_authentic_signature(app, env, offset, status):
    from lib.observability import metrics

    before = metrics.total(metrics.CLOCK_SKEW, source="hl7_jws")
    issued = datetime.now(UTC).replace(microsecond=0) + offset
    headers = default_signer().headers(env.id, message(control=f"SKEW{status}{offset.seconds}"), now=issued)
    response = post_hl7(env.id, message(control=f"SKEW{status}{offset.seconds}"), headers)
    assert response.status_code == status
    measured = metrics.total(metrics.CLOCK_SKEW, source="hl7_jws") - before
    assert abs(offset.total_seconds()) - 5 <= measured <= abs(offset.total_seconds()) + 5  # plus or minus transit


def test_environment_without_certificate_refuses_with_403(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id, hl7_certificates=())
    response = post_hl7(environment_id, message())
    assert (response.status_code, problem(response)["code"]) == (403, "no_certificate_configured")


def test_test_environment_set_to_none_accepts_unsigned_requests(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id, hl7_auth="none")
    assert msa(post_hl7(environment_id, message(), sign=False))[1] == "AA"


def test_production_environment_set_to_none_refuses_with_403(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id, kind="production", hl7_auth="none")
    response = post_hl7(environment_id, message(processing_id="P"), sign=False)
    assert (response.status_code, problem(response)["code"]) == (403, "unsigned_not_allowed")


# ---- enhanced acknowledgement mode -------------------------------------------------------------------

def test_enhanced_mode_accept_is_ca_and_reject_is_cr(app, env):
    accepted = post_hl7(env.id, with_msh_tail(message(control="E1"), "|||AL|NE"))
    assert msa(accepted)[:3] == ["MSA", "CA", "E1"]
    refused = post_hl7(env.id, with_msh_tail(message(event="S16", control="E2"), "|||AL|NE"))
    assert msa(refused)[:3] == ["MSA", "CR", "E2"]
    assert "201" in "|".join(segment(refused, "ERR"))


def test_original_mode_when_msh15_and_msh16_are_empty(app, env):
    assert msa(post_hl7(env.id, with_msh_tail(message(control="O1"), "|||||")))[1] == "AA"


# ---- group visits ------------------------------------------------------------------------------------

def test_conference_id_from_the_configured_z_segment_field_is_stored(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id, conference_id_field="ZCH-3")
    body = message() + b"ZCH|1||GRP-42^VIDEO\r"
    assert msa(post_hl7(environment_id, body))[1] == "AA"
    assert app.repos.appointments.get(appointment_key(environment_id, "8000001")).conference_id == "GRP-42"


def test_two_appointments_with_one_conference_id_share_it(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id, conference_id_field="SCH-4")
    for csn in ("8000011", "8000012"):
        raw = message(csn=csn, control=f"G{csn}").replace(f"SCH||{csn}|".encode(), f"SCH||{csn}||GRP-9|".encode())
        assert msa(post_hl7(environment_id, raw))[1] == "AA"
    ids = {app.repos.appointments.get(appointment_key(environment_id, c)).conference_id for c in ("8000011", "8000012")}
    assert ids == {"GRP-9"}


def test_without_a_conference_field_no_conference_id_is_read(app, env):
    post_hl7(env.id, message() + b"ZCH|1||GRP-42\r")
    assert app.repos.appointments.get(appointment_key(env.id, "8000001")).conference_id is None


# ---- operator replay ---------------------------------------------------------------------------------

def test_replay_after_fixing_the_environment_kind_applies_the_message_and_deletes_the_record(app, env):
    refused = post_hl7(env.id, message(processing_id="P"))
    assert msa(refused)[1] == "AR"
    [kept] = app.repos.rejected.list(env.id)
    make_environment(app, env.id, kind="production")
    result = replay_rejected(env.id, kept.id, intake=app.intake, rejected=app.repos.rejected)
    assert (result.status, result.ack_code) == (200, "AA")
    assert app.repos.rejected.list(env.id) == []
    assert app.repos.appointments.get(appointment_key(env.id, "8000001")).status == "booked"


def test_replay_of_a_message_for_an_environment_created_later(app, clock, environment_id):
    clock.set(NOW)
    response = post_hl7(environment_id, message())
    assert response.status_code == 404
    rejected_id = problem(response)["rejectedMessageId"]
    make_environment(app, environment_id)
    result = replay_rejected(environment_id, rejected_id, intake=app.intake, rejected=app.repos.rejected)
    assert result.ack_code == "AA"
    assert app.repos.rejected.get(environment_id, rejected_id) is None


def test_replay_still_refused_keeps_the_one_record_and_adds_none(app, env):
    post_hl7(env.id, message(event="S16"))
    [kept] = app.repos.rejected.list(env.id)
    result = replay_rejected(env.id, kept.id, intake=app.intake, rejected=app.repos.rejected)
    assert result.ack_code == "AR"
    assert [k.id for k in app.repos.rejected.list(env.id)] == [kept.id]


def test_replay_of_an_unknown_record_raises(app, env):
    with pytest.raises(RejectedNotFound):
        replay_rejected(env.id, "no-such-id", intake=app.intake, rejected=app.repos.rejected)


def test_rejected_message_carries_the_configured_ttl(app, env):
    # Nothing in it names a visit, a time or a number that would shorten the keep (lib/scheduling/refused_keep.py).
    post_hl7(env.id, b"\r".join(s for s in message(event="S16").split(b"\r") if s[:3] not in (b"SCH", b"PID", b"AIP")))
    [kept] = app.repos.rejected.list(env.id)
    doc = app.store.container("rejected").read_item(item=kept.id, partition_key=env.id)
    assert doc["ttl"] == app.settings.hl7_rejected_ttl_days * 86400 == 30 * 86400


@pytest.mark.parametrize(("value", "ok"), [("7", True), ("0", False), ("366", False), ("x", False)])
def test_rejected_ttl_setting_is_checked(app, value, ok):
    environ = {**os.environ, "HL7_REJECTED_TTL_DAYS": value}
    if ok:
        assert load_settings(environ).hl7_rejected_ttl_days == 7
    else:
        with pytest.raises(SettingsError, match="HL7_REJECTED_TTL_DAYS"):
            load_settings(environ)


# ---- store outage: AE / 503, never AA ----------------------------------------------------------------

@pytest.fixture
def cut_store(app):
    """Services whose Cosmos DB connection goes through a proxy the test can cut."""
    from functions.dependencies import Services

    target = urlparse(app.settings.cosmos_endpoint)
    proxy = CuttableProxy(target.hostname, target.port)
    services = Services({**os.environ, "COSMOS_ENDPOINT": f"https://127.0.0.1:{proxy.port}/"})
    yield services, proxy
    proxy.cut()


def test_store_down_after_authentication_gives_ae_and_503(app, clock, environment_id, cut_store):
    clock.set(NOW)
    make_environment(app, environment_id, hl7_auth="none")
    services, proxy = cut_store
    assert services.repos.environments.get(environment_id) is not None  # cached for 30 s
    proxy.cut()
    result = services.intake.handle(environment_id, message(control="D1"), {})
    assert result.status == 503
    assert result.ack_code == "AE"
    assert b"MSA|AE|D1|" in result.body
    assert b"207" in result.body
    # Nothing was acknowledged, so the sender's resend is processed normally once the store is back.
    assert msa(post_hl7(environment_id, message(control="D1")))[1] == "AA"


def test_replay_store_down_gives_ae_and_503(app, env, cut_store):
    """The signature's single use is checked with the message's record (one round trip): the store being
    down there is a store outage like any other, answered AE so the engine resends."""
    services, proxy = cut_store
    assert services.repos.environments.get(env.id) is not None
    proxy.cut()
    body = message()
    result = services.intake.handle(env.id, body, default_signer().headers(env.id, body))
    assert (result.status, result.ack_code) == (503, "AE")


def test_replay_store_down_for_a_body_that_is_not_hl7_gives_503_problem(app, env, cut_store):
    services, proxy = cut_store
    assert services.repos.environments.get(env.id) is not None
    proxy.cut()
    body = b"not an HL7 message"
    result = services.intake.handle(env.id, body, default_signer().headers(env.id, body))
    assert result.status == 503
    assert result.content_type == "application/problem+json"


def test_environment_store_down_gives_503_problem(app, env, cut_store):
    services, proxy = cut_store
    assert services.intake is not None  # the client is built while the store is up
    proxy.cut()
    result = services.intake.handle(env.id, message(), {})
    assert result.status == 503


def test_dataclass_defaults_keep_old_environment_documents_readable(app, env):
    doc = {k: v for k, v in env.to_doc().items() if k not in ("hl7_auth", "hl7_certificates", "conference_id_field")}
    restored = type(env).from_doc(doc)
    assert (restored.hl7_auth, restored.hl7_certificates, restored.conference_id_field) == ("jws", (), None)
    assert dataclasses.replace(restored, hl7_certificates=env.hl7_certificates).hl7_certificates
