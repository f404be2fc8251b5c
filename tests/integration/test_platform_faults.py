"""Platform faults at the HTTP level, through the dev runner in its own process (issue 16, "Platform
faults"): the queue service hanging, a secret that did not resolve."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from lib.models import appointment_key
from local.siu_builder import siu
from tests.support.environments import make_environment
from tests.support.hl7_signing import default_signer
from tests.support.runner_process import Blackhole, runner_process
from tests.support.standins import AcsStandin

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://contoso-kv.vault.azure.net/secrets/link-signing-key/)"


def post_signed(base: str, environment_id: str, body: bytes) -> requests.Response:
    headers = {"content-type": "application/hl7-v2+er7", **default_signer().headers(environment_id, body)}
    # 30 s is far beyond the intake's budget; before the fix a hanging queue held each request 85 s or more.
    return requests.post(f"{base}/api/hl7/{environment_id}", data=body, headers=headers, timeout=30)


def msa(response: requests.Response) -> list[str]:
    return next(s for s in response.content.decode().split("\r") if s.startswith("MSA")).split("|")


def test_intake_answers_while_the_queue_service_hangs_and_the_timer_sends_the_texts_later(
        app, service_settings, clock, clock_file, environment_id, tmp_path):
    acs = AcsStandin(service_settings)
    env = make_environment(app, environment_id)
    clock.set(NOW)
    hanging = Blackhole()
    storage = re.sub(r"QueueEndpoint=http://127\.0\.0\.1:\d+/", f"QueueEndpoint=http://127.0.0.1:{hanging.port}/",
                     service_settings["AzureWebJobsStorage"])
    overrides = {"AzureWebJobsStorage": storage, "DEV_CLOCK_FILE": str(clock_file)}
    try:
        with runner_process(service_settings, overrides, log=tmp_path / "runner.log") as base:
            for n in range(3):
                body = siu("S12", csn=f"84000{n}", start=START, control_id=uuid.uuid4().hex[:12], sent=NOW,
                           phone=f"(201)555-01{70 + n}")
                response = post_signed(base, env.id, body)
                assert (response.status_code, msa(response)[1]) == (200, "AA")
            # One attempt and one retry for the first request; the later ones do not wait for a dead service.
            assert hanging.accepted == 2
            assert acs.texts(env.id) == []
            requests.post(f"{base}/admin/functions/reminders_due", json={"input": ""}, timeout=60).raise_for_status()
    finally:
        hanging.close()
    sent = sorted(t["tag"] for t in acs.texts(env.id))
    assert sent == sorted(f"{appointment_key(env.id, f'84000{n}')}|booked|1" for n in range(3))


def test_intake_with_a_secret_that_did_not_resolve_answers_503_with_an_ae(service_settings, environment_id,
                                                                           tmp_path):
    control = uuid.uuid4().hex[:12]
    body = siu("S12", csn="840100", start=START, control_id=control, sent=NOW - timedelta(days=1))
    with runner_process(service_settings, {"LINK_SIGNING_KEY": UNRESOLVED}, log=tmp_path / "runner.log") as base:
        response = post_signed(base, environment_id, body)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/hl7-v2+er7")
    assert msa(response)[1:4] == ["AE", control, "A connector secret is unavailable; send the message again later."]
    assert "kv.vault" not in response.text and "link-signing-key" not in response.text
