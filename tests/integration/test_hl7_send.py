"""``python -m local.hl7_send``: signs a file, posts it, prints only the ACK (never the message)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from local import hl7_send
from local.siu_builder import siu
from tests.support.calls import post_hl7
from tests.support.environments import make_environment
from tests.support.hl7_signing import default_signer, signer

pytestmark = pytest.mark.integration


class _Intake(BaseHTTPRequestHandler):
    """Serves the app's HL7 trigger in-process over real HTTP."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        environment_id = self.path.rstrip("/").rsplit("/", 1)[-1]
        response = post_hl7(environment_id, body, dict(self.headers.items()), sign=False)
        self.send_response(response.status_code)
        self.send_header("content-type", response.mimetype)
        self.end_headers()
        self.wfile.write(response.get_body())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Intake)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def files(tmp_path, app, clock, environment_id):
    clock.set(datetime(2026, 11, 29, 12, tzinfo=UTC))
    make_environment(app, environment_id)
    message = tmp_path / "s12.hl7"
    message.write_bytes(siu("S12", csn="8100001", start=datetime(2026, 12, 3, 15, tzinfo=UTC), control_id="SEND-1",
                            sent=datetime(2026, 11, 29, 12, tzinfo=UTC), phone="(201) 555-0177"))
    key = tmp_path / "engine-key.pem"
    key.write_bytes(default_signer().key_pem)
    cert = tmp_path / "engine.pem"
    cert.write_bytes(default_signer().cert_pem)
    return message, key, cert


def test_signs_posts_and_prints_the_ack_only(server, files, environment_id):
    message, key, cert = files
    lines: list[str] = []
    status = hl7_send.main(["--url", f"{server}/api/hl7/{environment_id}", "--key", str(key), "--cert", str(cert),
                            str(message)], out=lines.append)
    assert status == 0
    assert lines[0] == "HTTP 200"
    assert lines[1].startswith("MSA|AA|SEND-1")
    printed = "\n".join(lines)
    assert "5550177" not in printed and "555-0177" not in printed and "PATIENT" not in printed


def test_a_key_the_environment_does_not_know_is_refused_with_its_reason(server, files, environment_id, tmp_path):
    message, _key, _cert = files
    other = tmp_path / "other.pem"
    other.write_bytes(signer(kind="ec").key_pem)
    lines: list[str] = []
    status = hl7_send.main(["--url", f"{server}/api/hl7/{environment_id}", "--key", str(other), str(message)],
                           out=lines.append)
    assert status == 1
    assert lines[0] == "HTTP 401"
    assert lines[1].startswith("problem: signature_invalid:")


def test_unreachable_url_exits_2(files, environment_id):
    message, key, _cert = files
    lines: list[str] = []
    assert hl7_send.main(["--url", f"http://127.0.0.1:9/api/hl7/{environment_id}", "--key", str(key), str(message)],
                         out=lines.append) == 2
