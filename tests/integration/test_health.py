"""Health endpoints: live always answers; ready names the dependency that is down, and never hangs.

"Down" is a separate ``Services`` pointing one dependency at a dead loopback port (nothing listens) or
at a silent one (accepts connections, never answers); the session's shared services keep running.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import azure.functions as func
import pytest

from functions import health
from functions.dependencies import Services
from lib.operations.health import check_readiness
from tests.support.environments import make_environment
from tests.support.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration

BOUND_SECONDS = 5.0


def _request(route: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"http://127.0.0.1/api/{route}", headers={}, params={}, route_params={}, body=b"")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def _ready(monkeypatch, svc) -> tuple[int, dict, float]:
    monkeypatch.setattr(health, "services", lambda: svc)
    started = time.monotonic()
    response = health.health_ready.build().get_user_function()(_request("health/ready"))
    elapsed = time.monotonic() - started
    return response.status_code, json.loads(response.get_body()), elapsed


def test_live_answers_200_without_any_dependency():
    response = health.health_live.build().get_user_function()(_request("health/live"))
    assert response.status_code == 200 and json.loads(response.get_body()) == {"status": "live"}


def test_ready_with_every_dependency_up(app, environment_id, monkeypatch):
    make_environment(app, environment_id)
    status, doc, _ = _ready(monkeypatch, app)
    assert status == 200 and doc["status"] == "ready" and doc["failing"] == []
    assert {name: c["status"] for name, c in doc["checks"].items()} == {
        "configuration": "ok", "cosmos": "ok", "queues": "ok",
    }
    assert set(doc["checks"]["queues"]["depth"]) == {
        "sms-outbox", "visit-events", "sms-outbox-poison", "visit-events-poison", "visit-events-poison-poison",
        "report-updates", "report-updates-poison", "call-records", "call-records-poison",
        "launch-followup", "launch-followup-poison",
    }


def test_cosmos_down_is_named_and_answered_quickly(service_settings, monkeypatch):
    svc = Services({**service_settings, "COSMOS_ENDPOINT": f"https://127.0.0.1:{_dead_port()}/"})
    status, doc, elapsed = _ready(monkeypatch, svc)
    assert status == 503 and doc["status"] == "not-ready" and doc["failing"] == ["cosmos"]
    assert doc["checks"]["cosmos"]["status"] in {"failed", "timeout"}
    assert elapsed < BOUND_SECONDS


def test_queues_down_is_named_and_answered_quickly(service_settings, monkeypatch):
    port = _dead_port()
    storage = service_settings["AzureWebJobsStorage"].replace(
        service_settings["AzureWebJobsStorage"].split("QueueEndpoint=http://127.0.0.1:")[1].split("/")[0], str(port)
    )
    svc = Services({**service_settings, "AzureWebJobsStorage": storage})
    status, doc, elapsed = _ready(monkeypatch, svc)
    assert status == 503 and doc["failing"] == ["queues"]
    assert elapsed < BOUND_SECONDS


def test_a_silent_dependency_times_out_instead_of_hanging(service_settings, silent_port, monkeypatch):
    svc = Services({**service_settings, "COSMOS_ENDPOINT": f"https://127.0.0.1:{silent_port}/"})
    started = time.monotonic()
    readiness = check_readiness(lambda: svc, timeout=1.0, total=2.0)
    assert time.monotonic() - started < 2.0
    assert readiness.failing == ["cosmos"]
    cosmos = next(c for c in readiness.checks if c.name == "cosmos")
    assert cosmos.status == "timeout"


def test_missing_configuration_is_named_without_values(service_settings, monkeypatch):
    svc = Services({**service_settings, "AzureWebJobsStorage": "", "ACS_CONNECTION_STRING": ""})
    status, doc, _ = _ready(monkeypatch, svc)
    assert status == 503 and "configuration" in doc["failing"]
    assert doc["checks"]["configuration"]["detail"] == "missing settings: AzureWebJobsStorage, ACS_ENDPOINT"


def test_the_answer_never_holds_a_secret_or_an_endpoint(service_settings, monkeypatch):
    svc = Services({**service_settings, "COSMOS_ENDPOINT": f"https://127.0.0.1:{_dead_port()}/"})
    _, doc, _ = _ready(monkeypatch, svc)
    text = json.dumps(doc)
    for value in (service_settings["COSMOS_KEY"], "AccountKey", "accesskey", "127.0.0.1", "https://"):
        assert value not in text


def test_a_due_unsent_text_shows_as_sms_backlog_and_reminder_lag(app, environment_id, clock):
    from datetime import UTC, datetime, timedelta

    from lib.models import OutboxItem, hour_bucket
    from lib.observability import metrics
    from lib.operations.health import sms_backlog_seconds

    now = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
    clock.set(now)
    due = now - timedelta(minutes=20)
    item = OutboxItem(id=f"{environment_id}|9000001|reminder|1", bucket=hour_bucket(due),
                      appointment_key=f"{environment_id}|9000001", environment_id=environment_id, kind="reminder",
                      revision=1, due_utc=due)
    app.repos.outbox.create_once(item)
    try:
        assert sms_backlog_seconds(app) >= 20 * 60
        assert metrics.snapshot()[metrics.REMINDER_LAG][(("kind", "backlog"),)] >= 20 * 60
    finally:
        app.store.container("visits").delete_item(item=item.id, partition_key=item.appointment_key)


def test_a_second_probe_reuses_the_queue_connections_of_the_first(service_settings):
    """The queue check opens its connections once per process (one client for every queue), so a probe does
    not pay a connection set-up per queue (and, in Azure, a managed-identity token) each time. The proxy holds
    each answer a moment, so every queue's read is in flight at once, as on a busy instance: the pool must keep
    a connection for each of them. The checks are called without a deadline: this counts connections, it does
    not time anything."""
    from lib.operations.health import check_queues
    from lib.operations.queues import WATCHED_QUEUES

    storage = service_settings["AzureWebJobsStorage"]
    port = int(storage.split("QueueEndpoint=http://127.0.0.1:")[1].split("/")[0])
    proxy = CuttableProxy("127.0.0.1", port, answer_delay=0.3)
    try:
        svc = Services({**service_settings, "AzureWebJobsStorage": storage.replace(f":{port}/", f":{proxy.port}/")})
        first = check_queues(svc)
        assert first.status == "ok" and set(first.data["depth"]) == set(WATCHED_QUEUES)
        opened = proxy.connections
        assert 1 <= opened <= len(WATCHED_QUEUES)  # at most one per queue read at the same time
        again = check_queues(svc)
        assert again.status == "ok" and proxy.connections == opened  # no new connection
    finally:
        proxy.cut()
