"""A store failure in the middle of an HL7 intake, after some documents were written, converges on resend.

Through the dev runner (a subprocess serving ``function_app`` over HTTP) whose Cosmos DB endpoint is an HTTPS
proxy (``tests/support/store_fault_proxy.py``) that lets one chosen write reach the store and then answers
``503`` or drops the connection, and refuses every later store call of that request. The intake must answer
``AE`` (the sender will resend); the sender's resend of the same message (same MSH-10, a new signature) must
be answered ``AA`` and leave exactly what an undisturbed intake leaves: the appointment, the phone number,
the join link and every planned text in the outbox (confirmation and both reminders), each once.

Both ways the visit's documents are written (``lib/store/visits.py``) are exercised: one transactional batch
(the default), and one document at a time (``COSMOS_TRANSACTIONAL_BATCH=0``), where the fault can fall
between the appointment, its phone number and each text.
"""

from __future__ import annotations

import itertools
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
from tests.support.calls import msa, post_hl7
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
    """``python -m local.devrunner`` on a free loopback port, its store behind the proxy (transactional batches)."""
    yield from _runner(service_settings, proxy, clock_file, batch=True)


@pytest.fixture(scope="module")
def runner_one_by_one(
        app: Any, service_settings: dict[str, str], proxy: StoreFaultProxy, clock_file: Path) -> Iterator[str]:
    """The same, writing one document at a time (``COSMOS_TRANSACTIONAL_BATCH=0``)."""
    yield from _runner(service_settings, proxy, clock_file, batch=False)


@pytest.fixture(scope="module")
def runner_production_budget(
        app: Any, service_settings: dict[str, str], proxy: StoreFaultProxy, clock_file: Path) -> Iterator[str]:
    """The batch runner with the production store-call budget (``COSMOS_READ_TIMEOUT_SECONDS`` unset: 5 s; the
    local profiles set 60 for the slow local server)."""
    yield from _runner(service_settings, proxy, clock_file, batch=True, production_budget=True)


def _runner(service_settings: dict[str, str], proxy: StoreFaultProxy, clock_file: Path, *, batch: bool,
            production_budget: bool = False) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **service_settings, "COSMOS_ENDPOINT": proxy.endpoint, "DEV_CLOCK_FILE": str(clock_file),
           "COSMOS_TRANSACTIONAL_BATCH": "1" if batch else "0"}
    if production_budget:
        env.pop("COSMOS_READ_TIMEOUT_SECONDS", None)
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


def writes_to(collection: str, nth: int = 1) -> Any:
    """A rule matching the ``nth`` write to ``collection`` (1 = the first)."""
    seen = itertools.count(1)
    return lambda call: call.is_write and call.collection == collection and next(seen) == nth


# (container, which write to it, fault). Batch path: the duplicate check is the first write to hl7_messages,
# the visit's documents one write to ``visits``, the message record with the visit's join link the second
# write to hl7_messages. One by one: the appointment is the first write to ``visits``, its phone number the
# second, the three texts the third to fifth; in hl7_messages the signature's claim, the link, the ACK.
BATCH_FAULTS = [("visits", 1, "503"), ("visits", 1, "drop"), ("hl7_messages", 2, "503"),
                ("hl7_messages", 2, "drop")]
ONE_BY_ONE_FAULTS = [("visits", 1, "drop"), ("visits", 2, "503"), ("visits", 3, "drop"), ("visits", 5, "503"),
                     ("hl7_messages", 1, "drop"), ("hl7_messages", 2, "503"), ("hl7_messages", 3, "drop")]


@pytest.mark.parametrize(("path", "failing_write", "nth", "fault"),
                         [("batch", *case) for case in BATCH_FAULTS]
                         + [("one-by-one", *case) for case in ONE_BY_ONE_FAULTS])
def test_a_store_failure_after_a_partial_write_converges_on_the_resend(
        app: Any, clock: Any, environment_id: str, request: pytest.FixtureRequest, proxy: StoreFaultProxy,
        path: str, failing_write: str, nth: int, fault: str) -> None:
    runner = request.getfixturevalue("runner" if path == "batch" else "runner_one_by_one")
    clock.set(NOW)
    make_environment(app, environment_id)
    csn = "9000001"
    key = appointment_key(environment_id, csn)
    message = siu("S12", csn=csn, start=START, control_id=f"PW-{failing_write}-{nth}-{fault}", sent=NOW)
    assert requests.get(f"{runner}/api/health/live", timeout=30).status_code == 200  # warm: cache the environment

    proxy.arm(writes_to(failing_write, nth), fault)
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
        app: Any, clock: Any, environment_id: str, runner: str, runner_one_by_one: str,
        proxy: StoreFaultProxy) -> None:
    """The premise of the test above: the AE answer came after the visit's documents were stored: all of them
    at once in a batch; only the appointment when they are written one by one."""
    clock.set(NOW)
    make_environment(app, environment_id)
    for csn, url, stored_texts in (("9100001", runner, EXPECTED_TEXTS), ("9100002", runner_one_by_one, [])):
        key = appointment_key(environment_id, csn)
        rule = writes_to("visits")
        proxy.arm(lambda call, rule=rule: isinstance(call, StoreCall) and rule(call), "503")
        try:
            first = post(url, environment_id, siu("S12", csn=csn, start=START, control_id=f"PW-P{csn}", sent=NOW))
        finally:
            proxy.disarm()
        assert msa_code(first) == "AE"
        assert app.repos.appointments.get(key) is not None
        assert texts(app, key) == stored_texts


# ---- a store that stops answering --------------------------------------------------------------------

#: An interface engine's HTTP timeout at the short end (Bridges, Mirth, Rhapsody: commonly 30 to 60 s).
ENGINE_TIMEOUT = 30


@pytest.mark.parametrize("hung", ["hl7_messages", "visits", "environments"])
def test_a_store_that_stops_answering_is_answered_503_before_the_engine_gives_up_and_the_resend_completes(
        app: Any, clock: Any, environment_id: str, runner_production_budget: str, proxy: StoreFaultProxy,
        hung: str) -> None:
    """The engine gets its answer (AE and Retry-After, whichever store step hangs) within
    its own timeout instead of timing out, because each store call has a budget (lib/store/cosmos.py). The
    resend goes to the in-process app (its store is not behind the proxy)."""
    runner = runner_production_budget
    clock.set(NOW)
    make_environment(app, environment_id)
    csn = {"hl7_messages": "9200001", "visits": "9200002", "environments": "9200003"}[hung]
    key = appointment_key(environment_id, csn)
    message = siu("S12", csn=csn, start=START, control_id=f"PW-HANG-{hung}", sent=NOW)
    headers = {"Content-Type": "application/hl7-v2+er7", **default_signer().headers(environment_id, message)}
    proxy.arm(lambda call: call.collection == hung, "hang")
    try:
        first = requests.post(f"{runner}/api/hl7/{environment_id}", data=message, headers=headers,
                              timeout=ENGINE_TIMEOUT)
    finally:
        proxy.disarm()
    assert proxy.faulted and proxy.faulted[0].collection == hung
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "30"
    assert msa_code(first) == "AE"

    resend = post_hl7(environment_id, message)
    assert (resend.status_code, msa(resend)[1]) == (200, "AA")
    assert app.repos.appointments.get(key).status == "booked"
    assert texts(app, key) == EXPECTED_TEXTS
