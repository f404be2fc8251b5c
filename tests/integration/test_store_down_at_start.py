"""A process that STARTS while Cosmos DB is unreachable answers every face as when the store fails later, and
recovers by itself once the store is back (no failure remembered).

The dev runner runs in its own process with ``COSMOS_ENDPOINT`` on a loopback port where nothing listens (the
SDK's client reads the account while it is built: connection refused, as a firewall, DNS or private-endpoint
outage gives in Azure). Then a TCP proxy starts on that very port, forwarding to the Cosmos-compatible server:
the same process must now serve the same requests normally.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from local.siu_builder import siu
from tests.support.environments import make_environment
from tests.support.hl7_signing import default_signer
from tests.support.join_links import visit_with_join_link
from tests.support.runner_process import free_port, runner_process
from tests.support.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


@pytest.fixture(scope="module")
def setting_up(app: Any, service_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
               ) -> Iterator[dict[str, Any]]:
    """An environment and a booked visit (stored while the store is up), and a runner started with its store
    on a port where nothing listens yet."""
    environment_id = f"cold-{uuid.uuid4().hex[:5]}-e{uuid.uuid4().hex[:5]}"
    iss = f"https://127.0.0.1:1/{uuid.uuid4().hex}/api/FHIR/R4"  # nothing answers there: no launch gets past discovery
    organizer = str(uuid.uuid4())  # the meeting's organizer in the Graph stand-in (the join page ensures it)
    requests.post(f"{service_settings['GRAPH_STANDIN_URL']}/_standin/users", json={"id": organizer, "policy": True},
                  verify=service_settings["REQUESTS_CA_BUNDLE"], timeout=10).raise_for_status()
    env = make_environment(app, environment_id, fhir_base_urls=(iss,), fallback_organizer_id=organizer)
    _, token = visit_with_join_link(app, env.id, "7300001", START)
    store_port = free_port()
    logs = tmp_path_factory.mktemp("cold-runner")
    overrides = {"COSMOS_ENDPOINT": f"https://127.0.0.1:{store_port}/"}
    with runner_process(service_settings, overrides, log=logs / "runner.log") as base:
        yield {"base": base, "env": env, "iss": iss, "token": token, "store_port": store_port,
               "log": logs / "runner.log", "ca": service_settings["REQUESTS_CA_BUNDLE"]}


def _signed_s12(environment_id: str, control_id: str) -> tuple[bytes, dict[str, str]]:
    body = siu("S12", csn=f"73{uuid.uuid4().int % 10**6:06d}", start=START, control_id=control_id,
               sent=datetime.now(UTC) - timedelta(minutes=1), phone="(201)555-0142")
    return body, {"content-type": "application/hl7-v2+er7", **default_signer().headers(environment_id, body)}


def _msa(response: requests.Response) -> list[str]:
    return next(s for s in response.content.decode().split("\r") if s.startswith("MSA")).split("|")


def _error_code(response: requests.Response) -> str | None:
    found = re.search(r'id="error-code">([A-Z0-9_]+)<', response.text)
    return found.group(1) if found else None


def _portal(base: str, ca: str) -> requests.Session:
    session = requests.Session()
    session.verify = ca
    answer = session.post(f"{base}/api/portal/signin", data={"name": "cold.admin", "roles": ["Admin"]},
                          allow_redirects=False)
    assert answer.status_code == 303, answer.text  # signing in needs no store
    return session


def test_every_face_answers_store_unavailable_while_the_store_was_never_reached(setting_up: dict[str, Any]):
    base, env, token = setting_up["base"], setting_up["env"], setting_up["token"]

    control = uuid.uuid4().hex[:12]
    body, headers = _signed_s12(env.id, control)
    hl7 = requests.post(f"{base}/api/hl7/{env.id}", data=body, headers=headers, timeout=30)
    assert hl7.status_code == 503
    assert hl7.headers["content-type"].startswith("application/hl7-v2+er7")
    assert hl7.headers["Retry-After"] == "30"
    assert _msa(hl7)[1:4] == ["AE", control, "The connector's store is unavailable; send the message again."]

    join = requests.get(f"{base}/api/join/{token}", timeout=30)
    assert (join.status_code, join.headers.get("Retry-After")) == (503, "30")
    assert 'data-phase="busy"' in join.text and "The service is busy" in join.text
    spanish = requests.get(f"{base}/api/join/{token}", params={"lang": "es"}, timeout=30)
    assert "El servicio está ocupado" in spanish.text

    call = requests.post(f"{base}/api/join/{token}/call", json={}, timeout=30)
    assert (call.status_code, call.json()["code"], call.headers.get("Retry-After")) == (503, "STORE_UNAVAILABLE",
                                                                                         "30")

    device_test = requests.get(f"{base}/api/devicetest", params={"env": env.id}, timeout=30)
    assert device_test.status_code == 200  # the test needs no store: it runs, without the organization's name
    assert 'data-phase="open"' in device_test.text and "Contoso Health" not in device_test.text

    launch = requests.get(f"{base}/api/launch/provider", params={"iss": setting_up["iss"], "launch": "abc"},
                          allow_redirects=False, timeout=30)
    assert (launch.status_code, _error_code(launch), launch.headers.get("Retry-After")) == (503, "STORE_UNAVAILABLE",
                                                                                            "30")

    portal = _portal(base, setting_up["ca"])
    api = portal.get(f"{base}/api/config/environments", timeout=30)
    assert (api.status_code, api.json()["code"], api.headers.get("Retry-After")) == (503, "STORE_UNAVAILABLE", "30")
    page = portal.get(f"{base}/api/portal/environments", timeout=30)
    assert page.status_code == 503 and "STORE_UNAVAILABLE" in page.text and "Try again in a moment" in page.text

    log = setting_up["log"].read_text(errors="replace")
    assert "INTERNAL_ERROR" not in log and "Traceback" not in log


def test_the_same_process_recovers_once_the_store_is_reachable(setting_up: dict[str, Any],
                                                               service_settings: dict[str, str]):
    base, env, token = setting_up["base"], setting_up["env"], setting_up["token"]
    cosmos = urlparse(service_settings["COSMOS_ENDPOINT"])
    store = CuttableProxy(cosmos.hostname or "127.0.0.1", cosmos.port or 443, port=setting_up["store_port"])
    try:
        control = uuid.uuid4().hex[:12]
        body, headers = _signed_s12(env.id, control)
        hl7 = requests.post(f"{base}/api/hl7/{env.id}", data=body, headers=headers, timeout=60)
        assert (hl7.status_code, _msa(hl7)[1:3]) == (200, ["AA", control])

        join = requests.get(f"{base}/api/join/{token}", timeout=60)
        assert join.status_code == 200 and 'data-phase="busy"' not in join.text

        device_test = requests.get(f"{base}/api/devicetest", params={"env": env.id}, timeout=60)
        assert device_test.status_code == 200 and "Contoso Health" in device_test.text

        launch = requests.get(f"{base}/api/launch/provider", params={"iss": setting_up["iss"], "launch": "abc"},
                              allow_redirects=False, timeout=60)
        # Past the store: the environment was found by its iss, and only its (unreachable) Epic fails now.
        assert _error_code(launch) not in (None, "STORE_UNAVAILABLE", "ISS_NOT_ALLOWED", "INTERNAL_ERROR")

        api = _portal(base, setting_up["ca"]).get(f"{base}/api/config/environments/{env.id}", timeout=60)
        assert api.status_code == 200 and api.json()["id"] == env.id
        assert store.connections > 0
    finally:
        store.cut()
