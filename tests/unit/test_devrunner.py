"""Unit tests of the dev runner (local/devrunner.py) and its NCRONTAB parser; no external services."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from local import devrunner
from local.devrunner import DevRunner, HostConfig, compile_route, load_local_settings, parse_timespan
from local.ncrontab import CronSchedule, IntervalSchedule, parse_schedule
from tests.unit import devrunner_sample_app as sample

REPO_ROOT = Path(__file__).resolve().parents[2]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def host_json(tmp_path: Path) -> Path:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": "api"}}}))
    return path


@pytest.fixture
def runner(host_json: Path) -> Iterator[DevRunner]:
    sample.reset()
    with DevRunner(sample.app, port=0, host_json=host_json, environ={}, timers=False, queues=False) as running:
        yield running
    sample.SLOW_GATE.set()


def request(
    runner: DevRunner, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(runner.host, runner.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


# ------------------------------------------------------------------------------------------------ NCRONTAB


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", utc(2024, 1, 1, 23, 58, 3), utc(2024, 1, 2, 0, 0, 0)),
        ("0 */5 * * * *", utc(2024, 1, 1, 0, 5, 0), utc(2024, 1, 1, 0, 10, 0)),  # strictly after
        ("*/15 * * * * *", utc(2024, 1, 1, 0, 0, 44, 999), utc(2024, 1, 1, 0, 0, 45)),
        ("0 30 9 * * 1-5", utc(2024, 1, 5, 10, 0, 0), utc(2024, 1, 8, 9, 30, 0)),  # Fri after 9:30 -> Mon
        ("0 30 9 * * Mon-Fri", utc(2024, 1, 5, 10, 0, 0), utc(2024, 1, 8, 9, 30, 0)),
        ("0 0 0 29 2 *", utc(2024, 3, 1), utc(2028, 2, 29)),  # leap day
        ("0 0 0 31 * *", utc(2024, 4, 1), utc(2024, 5, 31)),  # skips 30-day months
        ("0 0 12 13 * 5", utc(2024, 1, 1), utc(2024, 9, 13, 12)),  # Friday the 13th: day AND weekday
        ("0 0 0 1 Jan,Jul *", utc(2024, 1, 1), utc(2024, 7, 1)),
        ("5,10-12 0 0 * * *", utc(2024, 1, 1, 0, 0, 5), utc(2024, 1, 1, 0, 0, 10)),
        ("0 0 8-18/4 * * *", utc(2024, 1, 1, 12, 0, 0), utc(2024, 1, 1, 16, 0, 0)),
        ("30/15 * * * * *", utc(2024, 1, 1, 0, 0, 46), utc(2024, 1, 1, 0, 1, 30)),  # a/n = a-max/n
        ("0 59 23 31 12 *", utc(2024, 12, 31, 23, 59, 0), utc(2025, 12, 31, 23, 59, 0)),
    ],
)
def test_ncrontab_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expression).next_after(after) == expected


def test_ncrontab_naive_times_are_utc_and_weekday_names() -> None:
    schedule = parse_schedule("0 0 6 * * sun")
    assert isinstance(schedule, CronSchedule)
    assert schedule.weekdays == frozenset({0})
    assert schedule.next_after(datetime(2024, 1, 1)) == utc(2024, 1, 7, 6)


def test_timespan_schedule() -> None:
    schedule = parse_schedule("00:05:00")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_after(utc(2024, 1, 1, 0, 4, 59)) == utc(2024, 1, 1, 0, 5)
    assert schedule.next_after(utc(2024, 1, 1, 0, 5)) == utc(2024, 1, 1, 0, 10)


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "60 * * * * *", "* * 24 * * *", "* * * 0 * *", "* * * * 13 *", "* * * * * 7",
     "*/0 * * * * *", "5-1 * * * * *", "x * * * * *", "0 0 0 30 2 *"],
)
def test_ncrontab_rejects_invalid(expression: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expression).next_after(utc(2024, 1, 1))


# --------------------------------------------------------------------------------------------------- config


def test_host_config_defaults_and_values(tmp_path: Path) -> None:
    assert HostConfig.load(tmp_path / "missing.json") == HostConfig()
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"extensions": {
        "http": {"routePrefix": ""},
        "queues": {"batchSize": 4, "maxDequeueCount": 3, "visibilityTimeout": "00:00:30",
                   "maxPollingInterval": "00:01:00", "messageEncoding": "None"},
    }}))
    config = HostConfig.load(path)
    assert config == HostConfig(route_prefix="", message_encoding="none", batch_size=4, max_dequeue_count=3,
                                visibility_timeout=30.0, max_polling_interval=2.0)
    path.write_text(json.dumps({"extensions": {"queues": {"messageEncoding": "utf8"}}}))
    with pytest.raises(ValueError, match="messageEncoding"):
        HostConfig.load(path)


def test_repo_host_json_loads() -> None:
    config = HostConfig.load(REPO_ROOT / "host.json")
    assert config.message_encoding == "base64"


def test_parse_timespan() -> None:
    assert parse_timespan("00:00:30") == 30
    assert parse_timespan("1.02:00:00.5") == 86400 + 7200 + 0.5
    with pytest.raises(ValueError):
        parse_timespan("30s")


def test_local_settings_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"A": "file", "B": "file", "N": 3}, "Host": {"LocalHttpPort": 7171}}))
    environ = {"A": "env"}
    document = load_local_settings(path, environ)
    assert environ == {"A": "env", "B": "file", "N": "3"}
    assert document["Host"]["LocalHttpPort"] == 7171
    assert load_local_settings(tmp_path / "none.json", environ) == {}


def test_loopback_only(host_json: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        DevRunner(sample.app, host="192.0.2.10", port=0, host_json=host_json)


# ----------------------------------------------------------------------------------------------------- HTTP


def test_route_templates() -> None:
    pattern, _ = compile_route("items/{itemId}")
    assert pattern.match("/items/42").groupdict() == {"itemId": "42"}
    assert pattern.match("/ITEMS/42/")  # literals are case-insensitive; trailing slash allowed
    assert not pattern.match("/items") and not pattern.match("/items/1/2")
    optional, _ = compile_route("visits/{id?}")
    assert optional.match("/visits").groupdict() == {"id": None}
    assert optional.match("/visits/7").groupdict() == {"id": "7"}
    catch_all, _ = compile_route("files/{*path}")
    assert catch_all.match("/files/a/b/c.txt").groupdict() == {"path": "a/b/c.txt"}
    typed, _ = compile_route("n/{n:int}")
    assert typed.match("/n/-3") and not typed.match("/n/x")
    with pytest.raises(ValueError):
        compile_route("a/{x?}/b")
    with pytest.raises(ValueError):
        compile_route("a/pre{x}")


def test_get_with_route_params_and_repeated_query(runner: DevRunner) -> None:
    status, headers, body = request(runner, "GET", "/api/items/a%20b?x=1&x=2&empty=", headers={"X-Test": "t"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    echo = json.loads(body)
    assert echo["method"] == "GET"
    assert echo["routeParams"] == {"itemId": "a b"}
    assert echo["params"] == {"x": "1,2", "empty": ""}
    assert echo["url"] == f"http://127.0.0.1:{runner.port}/api/items/a%20b?x=1&x=2&empty="


def test_post_body_and_two_cookies(runner: DevRunner) -> None:
    status, headers, body = request(runner, "POST", "/api/items/7", body=b'{"k": 1}',
                                    headers={"Content-Type": "application/json"})
    assert status == 200
    echo = json.loads(body)
    assert echo["body"] == '{"k": 1}'
    assert echo["contentType"] == "application/json"
    assert headers.get_all("Set-Cookie") == ["a=1; Path=/; HttpOnly", "b=2; Path=/; Secure"]


def test_literal_route_wins_and_catch_all(runner: DevRunner) -> None:
    assert request(runner, "GET", "/api/items/special")[2] == b"special"
    status, headers, body = request(runner, "GET", "/api/files/x/y.txt")
    assert (status, body) == (200, b"x/y.txt")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_not_found_and_method_not_allowed(runner: DevRunner) -> None:
    assert request(runner, "GET", "/api/nothing/here")[0] == 404
    assert request(runner, "GET", "/items/1")[0] == 404  # outside the route prefix
    status, headers, _ = request(runner, "DELETE", "/api/items/1")
    assert status == 405
    assert headers["Allow"] == "GET, POST"


def test_exception_gives_problem_without_details(runner: DevRunner, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="devrunner"):
        status, headers, body = request(runner, "GET", "/api/boom?token=abc", headers={"Authorization": "Bearer zz"})
    assert status == 500
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["title"] == "Internal error" and problem["status"] == 500
    assert re.fullmatch(r"[0-9a-f-]{36}", problem["correlationId"])
    assert b"secret" not in body
    assert "secret patient detail" in caplog.text  # the exception is logged server-side
    assert problem["correlationId"] in caplog.text
    assert "token=abc" not in caplog.text and "Bearer" not in caplog.text
    assert 'route="GET boom"' in caplog.text


def test_invocation_log_line_uses_template(runner: DevRunner, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="devrunner"):
        request(runner, "POST", "/api/items/12345?q=private", body=b"patient body")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("function=items")]
    assert len(lines) == 1
    assert 'route="POST items/{itemId}"' in lines[0] and "status=200" in lines[0]
    assert "12345" not in caplog.text and "private" not in caplog.text and "patient body" not in caplog.text


def test_host_status(runner: DevRunner) -> None:
    status, _, body = request(runner, "GET", "/admin/host/status")
    assert status == 200 and json.loads(body) == {"state": "Running"}


# ---------------------------------------------------------------------------------------------------- admin


def test_admin_runs_timer_and_queue_functions(runner: DevRunner) -> None:
    status, _, body = request(runner, "POST", "/admin/functions/tick", body=b'{"input": ""}')
    assert (status, body) == (202, b"")
    assert sample.TICKS == [False]
    status, _, _ = request(runner, "POST", "/admin/functions/on_message", body=b'{"input": "hello"}')
    assert status == 202
    assert sample.QUEUE_BODIES == [(b"hello", 1)]
    # a failing run is still accepted, as the host does
    assert request(runner, "POST", "/admin/functions/on_message", body=b'{"input": "fail"}')[0] == 202


def test_admin_errors(runner: DevRunner) -> None:
    assert request(runner, "POST", "/admin/functions/nope", body=b"{}")[0] == 404
    assert request(runner, "POST", "/admin/functions/items", body=b"{}")[0] == 400
    assert request(runner, "POST", "/admin/functions/tick", body=b"not json")[0] == 400
    assert request(runner, "POST", "/admin/functions/tick", body=b'{"input": 3}')[0] == 400
    assert request(runner, "GET", "/admin/functions/tick")[0] == 405


def test_trigger_api(runner: DevRunner) -> None:
    assert runner.trigger("on_message", "ok") is True
    assert runner.trigger("ON_MESSAGE", "fail") is False
    with pytest.raises(KeyError):
        runner.trigger("missing")
    with pytest.raises(ValueError):
        runner.trigger("items")


# --------------------------------------------------------------------------------------------------- timers


def test_run_timers_due(runner: DevRunner) -> None:
    sample.SLOW_GATE.set()
    assert runner.run_timers_due(utc(2024, 1, 1, 12, 0, 0)) == ["tick", "slow"]
    assert runner.run_timers_due(utc(2024, 1, 1, 12, 0, 5)) == []
    assert runner.run_timers_due(utc(2024, 1, 1, 12, 0, 10)) == ["slow"]
    assert sample.TICKS == [False]
    # missed occurrences: one catch-up run, marked past due
    assert runner.run_timers_due(utc(2024, 1, 1, 12, 3, 30)) == ["tick", "slow"]
    assert sample.TICKS == [False, True]


def test_timer_runs_one_at_a_time(runner: DevRunner) -> None:
    runner.run_timers_due(utc(2024, 1, 1, 12, 0, 1))  # arm: nothing due
    first = threading.Thread(target=runner.run_timers_due, args=(utc(2024, 1, 1, 12, 0, 10),))
    first.start()
    wait_for(lambda: sample.SLOW_RUNS == ["start"])
    assert runner.run_timers_due(utc(2024, 1, 1, 12, 0, 20)) == []  # slow is still running: skipped
    sample.SLOW_GATE.set()
    first.join(5)
    assert sample.SLOW_RUNS == ["start", "end"]


def test_background_scheduler_fires_on_schedule(host_json: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample.reset()
    sample.SLOW_GATE.set()
    clock = {"now": utc(2024, 1, 1, 12, 0, 9, 900000)}
    monkeypatch.setattr(devrunner, "_utcnow", lambda: clock["now"])
    with DevRunner(sample.app, port=0, host_json=host_json, environ={}, queues=False):
        time.sleep(0.3)
        assert sample.SLOW_RUNS == []
        clock["now"] = utc(2024, 1, 1, 12, 0, 10, 50000)
        wait_for(lambda: sample.SLOW_RUNS == ["start", "end"])
        assert sample.TICKS == []


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"FROM_FILE": "1"}}))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.devrunner", "--app", "tests.unit.devrunner_sample_app", "--port", "0",
         "--no-timers", "--no-queues"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        port = None
        assert process.stderr is not None
        for line in process.stderr:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/api/items/1")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_warmup_function_runs_once_at_start_before_http_is_served() -> None:
    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    events: list[str] = []

    @app.function_name("warmup")
    @app.warm_up_trigger("warmup")
    def warmup(warmup: object) -> None:
        events.append("warmup")

    @app.route(route="ping", methods=["GET"])
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        events.append("ping")
        return func.HttpResponse("pong")

    runner = DevRunner(app, port=0, host_json=None, timers=False, queues=False)
    runner.start()
    try:
        assert events == ["warmup"]
        connection = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=10)
        connection.request("GET", "/api/ping")
        assert connection.getresponse().read() == b"pong"
    finally:
        runner.stop(timeout=5)
    assert events == ["warmup", "ping"]
