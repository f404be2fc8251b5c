"""A body kept for an environment that did not exist yet was never authenticated: replay checks its signature.

Anyone can post to ``/api/hl7/<a guessed environment ID>``; the body is kept so the hospital's own messages are
not lost while the environment is being set up. Replaying such a body must not book visits (and text numbers)
on nobody's word: its kept signature is verified against the environment's certificate, as of the moment it
arrived; an unsigned or foreign-signed body is replayed only with the operator's explicit, audited trust.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lib.clock import FixedClock
from lib.config.audit import AuditLog
from lib.models import appointment_key
from lib.operations import rejected as rejected_ops
from lib.scheduling.intake import IntakeService
from lib.scheduling.replay import ReplayNotAuthenticated, replay_rejected
from lib.scheduling.signature import JwsRequestVerifier
from lib.store.jti import JtiStore
from local import ops
from local.siu_builder import siu
from tests.support.calls import post_hl7
from tests.support.environments import make_environment
from tests.support.hl7_signing import default_signer, signer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def booking(csn: str = "8100001") -> bytes:
    return siu("S12", csn=csn, start=START, control_id=f"K{csn}", sent=NOW)


def kept_id(response) -> str:
    assert response.status_code == 404
    return json.loads(response.get_body())["rejectedMessageId"]


def run_ops(app, capsys, *argv: str) -> tuple[int, object, str]:
    code = ops.run(list(argv), services=app)
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


@pytest.fixture
def later(clock, environment_id):
    clock.set(NOW)
    return environment_id


def test_a_body_signed_by_the_hospitals_engine_is_verified_and_applied_on_replay(app, later, capsys):
    rejected_id = kept_id(post_hl7(later, booking()))
    _, listed, _ = run_ops(app, capsys, "hl7", "rejected", "list", "--env", later)
    assert (listed[0]["authenticated"], listed[0]["authentication"], listed[0]["signatureKept"]) == (
        False, "unverified", True)
    make_environment(app, later)
    result = replay_rejected(later, rejected_id, intake=app.intake, rejected=app.repos.rejected)
    assert result.ack_code == "AA"
    assert app.repos.appointments.get(appointment_key(later, "8100001")).status == "booked"


def test_the_signature_is_judged_as_of_its_arrival_not_of_the_replay(app, later):
    wall = FixedClock(datetime.now(UTC))
    r = app.repos
    intake = IntakeService(environments=r.environments, visits=r.visits, contacts=r.contacts, outbox=r.outbox,
                           links=r.links, processed=r.processed, rejected=r.rejected,
                           verifier=JwsRequestVerifier(jti=JtiStore(app.store), clock=wall), clock=app.clock,
                           patient_id_key=app.intake._patient_id_key)
    body = booking("8100002")
    headers = default_signer().headers(later, body, now=wall.now())
    rejected_id = json.loads(intake.handle(later, body, headers).body)["rejectedMessageId"]
    make_environment(app, later)
    wall.set(wall.now() + timedelta(hours=3))  # the environment was set up in the afternoon
    assert json.loads(intake.handle(later, body, headers).body)["code"] == "signature_expired"  # sent now: refused
    assert replay_rejected(later, rejected_id, intake=intake, rejected=r.rejected).ack_code == "AA"


def test_an_unsigned_body_is_not_replayed_and_nothing_is_booked(app, later, capsys):
    rejected_id = kept_id(post_hl7(later, booking("8100003"), sign=False))
    make_environment(app, later)
    with pytest.raises(ReplayNotAuthenticated) as refused:
        replay_rejected(later, rejected_id, intake=app.intake, rejected=app.repos.rejected)
    assert refused.value.code == "signature_missing"
    assert app.repos.appointments.get(appointment_key(later, "8100003")) is None
    assert app.repos.rejected.get(later, rejected_id) is not None
    code, _, err = run_ops(app, capsys, "hl7", "rejected", "replay", "--env", later, "--id", rejected_id)
    assert code == 1
    assert "Ask the sender to send it again" in err and "--trust-unauthenticated" in err
    assert app.repos.appointments.get(appointment_key(later, "8100003")) is None


def test_a_body_signed_with_another_key_is_not_replayed(app, later):
    body = booking("8100004")
    rejected_id = kept_id(post_hl7(later, body, signer(kind="ec").headers(later, body)))
    make_environment(app, later)
    with pytest.raises(ReplayNotAuthenticated) as refused:
        replay_rejected(later, rejected_id, intake=app.intake, rejected=app.repos.rejected)
    assert refused.value.code == "signature_invalid"
    assert app.repos.appointments.get(appointment_key(later, "8100004")) is None


def test_the_operators_explicit_trust_replays_it_and_is_audited(app, later, capsys):
    rejected_id = kept_id(post_hl7(later, booking("8100005"), sign=False))
    make_environment(app, later)
    code, result, _ = run_ops(app, capsys, "hl7", "rejected", "replay", "--env", later, "--id", rejected_id,
                              "--trust-unauthenticated", "--operator", "alice@contoso")
    assert (code, result["ackCode"]) == (0, "AA")
    assert app.repos.appointments.get(appointment_key(later, "8100005")).status == "booked"
    [entry] = [e for e in AuditLog(app.store).for_environment(later)
               if e.action == "hl7.rejected.replay_unauthenticated"]
    assert (entry.actor_name, entry.after["rejectedId"]) == ("alice@contoso", rejected_id)


def test_messages_refused_by_a_configured_environment_show_as_authenticated_and_replay_trusted(app, later, capsys):
    make_environment(app, later)
    post_hl7(later, siu("S16", csn="8100006", start=START, control_id="K6", sent=NOW))
    _, listed, _ = run_ops(app, capsys, "hl7", "rejected", "list", "--env", later)
    assert [(r["authenticated"], r["authentication"], r["signatureKept"], r["tiedToVisit"]) for r in listed] == [
        (True, "verified", False, True)]
    assert rejected_ops.replay(app, later, listed[0]["id"]).ack_code == "AR"  # still S16: refused, not untrusted
