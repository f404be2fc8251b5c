"""Guessing environment IDs or signatures is limited per client address (GUESS_RATE_LIMIT, 20/minute by
default), and one address cannot spend the keep budget of bodies for environments that do not exist yet."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from lib.scheduling.keep_limit import UNKNOWN_KEEPS_PER_ADDRESS
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7
from tests.support.environments import make_environment
from tests.support.hl7_signing import default_signer, signer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
# The test services live for the whole session: each test module run guesses from addresses of its own.
GUESSER = {"X-Forwarded-For": f"2001:db8:1::{uuid.uuid4().hex[:4]}"}
ENGINE = {"X-Forwarded-For": f"2001:db8:2::{uuid.uuid4().hex[:4]}"}
LIMIT = 20  # the default GUESS_RATE_LIMIT


def body(csn: str = "8200001", control: str = "L1") -> bytes:
    return siu("S12", csn=csn, start=START, control_id=control, sent=NOW)


def problem(response) -> dict:
    assert response.mimetype == "application/problem+json"
    return json.loads(response.get_body())


def test_unknown_environment_guesses_are_answered_429_and_cannot_spend_the_keep_budget(app, clock, environment_id):
    clock.set(NOW)
    answers = [post_hl7(f"{environment_id}-guess{i}", body(), dict(GUESSER), sign=False) for i in range(LIMIT + 5)]
    assert [a.status_code for a in answers] == [404] * LIMIT + [429] * 5
    refused = problem(answers[-1])
    assert refused["code"] == "rate_limited" and refused["status"] == 429
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    kept = [a for a in answers[:LIMIT] if "rejectedMessageId" in problem(a)]
    assert len(kept) == UNKNOWN_KEEPS_PER_ADDRESS
    # The hospital's engine, posting to its environment before it is configured, is still answered and kept.
    engine = post_hl7(f"{environment_id}-new", body(), dict(ENGINE))
    assert engine.status_code == 404 and "rejectedMessageId" in problem(engine)


def test_failed_signatures_are_limited_per_address_and_an_authentic_engine_is_not(app, clock, environment_id):
    clock.set(NOW)
    env = make_environment(app, environment_id)
    forged = signer(kind="ec")
    guesser = {"X-Forwarded-For": f"2001:db8:3::{uuid.uuid4().hex[:4]}"}
    answers = [post_hl7(env.id, body(control=f"X{i}"), {**guesser, **forged.headers(env.id, body(control=f"X{i}"))})
               for i in range(LIMIT + 1)]
    assert [a.status_code for a in answers] == [401] * LIMIT + [429]
    # A request that authenticates is never refused, even from the address over the limit (one NAT).
    assert msa(post_hl7(env.id, body(control="G1"), dict(guesser)))[1] == "AA"
    assert msa(post_hl7(env.id, body(), dict(ENGINE)))[1] == "AA"
    # Every resend of an authentic engine passes, however many (a resend is signed anew).
    for _ in range(LIMIT + 1):
        resend = post_hl7(env.id, body(), {**ENGINE, **default_signer().headers(env.id, body())})
        assert msa(resend)[1] == "AA"
