"""The app on the dev runner in its own process, with settings a test overrides (a secret that did not
resolve, a queue endpoint that is down), so faults of the platform reach it exactly as in Azure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def runner_process(settings: Mapping[str, str], overrides: Mapping[str, str], *, log: Path) -> Iterator[str]:
    """Start ``python -m local.devrunner`` (no timers, no queue polling; the admin endpoint runs them) with
    ``settings`` updated by ``overrides``; yields its base URL. Stopped with SIGTERM, killed if it hangs."""
    port = free_port()
    env = {**os.environ, **settings, **overrides}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.devrunner", "--settings", str(log.with_suffix(".none")), "--port",
             str(port), "--no-timers", "--no-queues"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{base}/admin/host/status", timeout=1).raise_for_status()
                    break
                except requests.RequestException:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the dev runner did not start; see {log}") from None
                    time.sleep(0.2)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Blackhole:
    """A TCP listener that accepts connections and never answers (a service that hangs); counts accepts."""

    def __init__(self) -> None:
        import threading

        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        """Stop listening and drop every held connection."""
        self._listener.close()
        for conn in self._held:
            conn.close()
