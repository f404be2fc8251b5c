"""A store failure in the middle of an HL7 intake, after some documents were written, converges on resend.

Through the dev runner (a subprocess serving ``function_app`` over HTTP) whose Cosmos DB endpoint is an HTTPS
proxy (``tests/support/store_fault_proxy.py``) that lets one chosen write reach the store and then answers
``503`` or drops the connection, and refuses every later store call of that request. The intake must answer
``AE`` (the sender will resend); the sender's resend of the same message (same MSH-10, a new signature) must
be answered ``AA`` and leave exactly what an undisturbed intake leaves: the appointment, the phone number,
the join link and every planned text in the outbox (confirmation and both reminders), each once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from lib.models import appointment_key
from local.siu_builder import siu
from tests.conftest import ROOT
from tests.support.environments import make_environment
from tests.support.hl7_signing import default_signer
from tests.support.store_fault_proxy import StoreCall, StoreFaultProxy

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # 10:00 in New York: both reminders outside quiet hours
EXPECTED_TEXTS = ["booked|1", "reminder-1440|1", "reminder-60|1"]


@pytest.fixture(scope="module")
def proxy(service_settings: dict[str, str]) -> Iterator[StoreFaultProxy]:
    target = urlparse(service_settings["COSMOS_ENDPOINT"])
    tls = ROOT / ".local" / "tls"
    store_proxy = StoreFaultProxy((target.hostname or "127.0.0.1", target.port or 443),
                                  cert_file=tls / "server.pem", key_file=tls / "server-key.pem")
    yield store_proxy
    store_proxy.close()


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str], proxy: StoreFaultProxy, clock_file: Path) -> Iterator[str]:
    """``python -m local.devrunner`` on a free loopback port, its store behind the proxy."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **service_settings, "COSMOS_ENDPOINT": proxy.endpoint, "DEV_CLOCK_FILE": str(clock_file)}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.devrunner", "--port", str(port), "--settings", "no-such-settings.json",
         "--no-timers", "--no-queues"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the dev runner did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def post(runner: str, environment_id: str, body: bytes) -> requests.Response:
    """What the interface engine does: sign the message anew and post it."""
    headers = {"Content-Type": "application/hl7-v2+er7", **default_signer().headers(environment_id, body)}
    return requests.post(f"{runner}/api/hl7/{environment_id}", data=body, headers=headers, timeout=120)


def msa_code(response: requests.Response) -> str:
    for segment in response.content.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode()
    raise AssertionError(f"no ACK in the answer (HTTP {response.status_code})")


def texts(app: Any, key: str) -> list[str]:
    return sorted(item.id.removeprefix(key + "|") for item in app.repos.outbox.for_appointment(key))


def writes_to(collection: str) -> Any:
    return lambda call: call.is_write and call.collection == collection


@pytest.mark.parametrize(("failing_write", "fault"), [
    ("appointments", "503"),
    ("appointments", "drop"),
    ("contacts", "503"),
    ("outbox", "drop"),
    ("outbox", "503"),
    ("hl7_messages", "drop"),
])
def test_a_store_failure_after_a_partial_write_converges_on_the_resend(
        app: Any, clock: Any, environment_id: str, runner: str, proxy: StoreFaultProxy,
        failing_write: str, fault: str) -> None:
    clock.set(NOW)
    make_environment(app, environment_id)
    csn = "9000001"
    key = appointment_key(environment_id, csn)
    message = siu("S12", csn=csn, start=START, control_id=f"PW-{failing_write}-{fault}", sent=NOW)
    assert requests.get(f"{runner}/api/health/live", timeout=30).status_code == 200  # warm: cache the environment

    proxy.arm(writes_to(failing_write), fault)
    try:
        first = post(runner, environment_id, message)
    finally:
        proxy.disarm()
    assert proxy.faulted and proxy.faulted[0].collection == failing_write
    assert (first.status_code, msa_code(first)) == (503, "AE")

    resend = post(runner, environment_id, message)
    assert (resend.status_code, msa_code(resend)) == (200, "AA")
    appointment = app.repos.appointments.get(key)
    assert appointment is not None and appointment.status == "booked"
    assert app.repos.contacts.phone(key, now=NOW) == "+12015550123"
    assert app.repos.links.appointment_key(appointment.link_id, now=NOW) == key
    assert texts(app, key) == EXPECTED_TEXTS
    assert {item.state for item in app.repos.outbox.for_appointment(key)} == {"pending"}

    again = post(runner, environment_id, message)  # a third copy changes nothing
    assert (again.status_code, msa_code(again)) == (200, "AA")
    assert texts(app, key) == EXPECTED_TEXTS


def test_the_proxy_really_lets_the_failed_write_reach_the_store(
        app: Any, clock: Any, environment_id: str, runner: str, proxy: StoreFaultProxy) -> None:
    """The premise of the test above: the AE answer came after the appointment was stored."""
    clock.set(NOW)
    make_environment(app, environment_id)
    key = appointment_key(environment_id, "9100001")
    proxy.arm(lambda call: isinstance(call, StoreCall) and writes_to("appointments")(call), "503")
    try:
        first = post(runner, environment_id, siu("S12", csn="9100001", start=START, control_id="PW-P", sent=NOW))
    finally:
        proxy.disarm()
    assert msa_code(first) == "AE"
    assert app.repos.appointments.get(key) is not None
    assert texts(app, key) == []
