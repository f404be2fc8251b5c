"""Command-line behaviour of the local tools a new user meets first (`./dev ops`, `./dev demo`, `./dev runner`)."""

from __future__ import annotations

import json
import socket

import pytest

from local import demo, ops, services, settings_file


@pytest.mark.parametrize(
    "argv",
    [
        ["--profile", "test", "health", "ready"],  # before the command
        ["health", "ready", "--profile", "test"],  # after it, as the README writes it
        ["hl7", "rejected", "list", "--env", "e1", "--profile", "test"],
        ["visit", "timeline", "--env", "e1", "--appointment", "A1", "--profile", "test"],
    ],
)
def test_ops_accepts_profile_before_or_after_the_command(argv, monkeypatch):
    seen: list[str | None] = []

    def fake_services(profile):
        seen.append(profile)
        from lib.settings import SettingsError

        raise SettingsError("stop here")

    monkeypatch.setattr(ops, "_services", fake_services)
    assert ops.run(argv) == 2
    assert seen == ["test"]


def test_ops_without_profile_uses_the_process_settings(monkeypatch):
    seen: list[str | None] = []

    def fake_services(profile):
        seen.append(profile)
        from lib.settings import SettingsError

        raise SettingsError("stop here")

    monkeypatch.setattr(ops, "_services", fake_services)
    ops.run(["health", "ready"])
    assert seen == [None]


def test_demo_refuses_a_port_another_runner_holds_in_one_line(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not services.port_free(port)
        with pytest.raises(RuntimeError) as refused:
            demo.start_runner({}, port, tmp_path / "runner.log")
    message = str(refused.value)
    assert "\n" not in message
    assert f"port {port} is already in use" in message
    assert not (tmp_path / "runner.log").exists()  # nothing was started


def test_demo_interrupted_ends_with_one_line_and_no_traceback(monkeypatch, capsys):
    def interrupted(profile):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    monkeypatch.setattr("sys.argv", ["local.demo"])
    assert demo.main() == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == "demo: interrupted; the services and runner it started are stopped"


def test_devrunner_on_a_taken_port_says_so_in_one_line(capsys):
    from local import devrunner

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        status = devrunner.main(["--app", "tests.unit.devrunner_sample_app", "--port", str(port),
                                 "--settings", "/dev/null", "--no-timers", "--no-queues"])
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert err.startswith(f"devrunner: cannot listen on 127.0.0.1:{port}")
    assert "\n" not in err


def _write_settings(path, offset, monkeypatch):
    monkeypatch.setenv("LOCAL_PORT_OFFSET", str(offset))
    path.write_text(json.dumps(settings_file.local_settings("demo")))


def test_runner_settings_written_under_the_same_offset_fit(tmp_path, monkeypatch):
    path = tmp_path / "local.settings.json"
    _write_settings(path, 4000, monkeypatch)
    assert settings_file.mismatch(path, "demo") is None


def test_runner_refuses_settings_written_under_another_offset(tmp_path, monkeypatch):
    path = tmp_path / "local.settings.json"
    _write_settings(path, 4000, monkeypatch)
    monkeypatch.setenv("LOCAL_PORT_OFFSET", "0")
    problem = settings_file.mismatch(path, "demo")
    assert problem is not None
    assert "COSMOS_ENDPOINT" in problem and "LOCAL_PORT_OFFSET" in problem and "delete it" in problem


def test_the_committed_example_fits_the_demo_profile_without_offset(monkeypatch):
    monkeypatch.delenv("LOCAL_PORT_OFFSET", raising=False)
    assert settings_file.mismatch(settings_file.ROOT / "local.settings.example.json", "demo") is None


def test_an_unreadable_settings_file_is_named(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text("{not json")
    assert "cannot be read" in settings_file.mismatch(path, "demo")


class _Unreachable:
    """Services whose store connection is refused, as when the local services are stopped."""

    @property
    def repos(self):
        from azure.core.exceptions import ServiceRequestError

        raise ServiceRequestError("HTTPSConnectionPool(host='127.0.0.1', port=8181): Connection refused")


def test_ops_says_in_one_line_that_the_store_is_unreachable(capsys):
    assert ops.run(["--profile", "test", "hl7", "rejected", "list", "--env", "e1"], services=_Unreachable()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "ServiceRequestError" in err and "./dev services start --profile test" in err


def test_ops_without_settings_suggests_the_local_profile(capsys, monkeypatch):
    for name in ("COSMOS_ENDPOINT", "LINK_SIGNING_KEY", "PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert ops.run(["health", "ready"]) == 2
    assert "add --profile demo" in capsys.readouterr().err
