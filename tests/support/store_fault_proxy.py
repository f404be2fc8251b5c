"""An HTTPS proxy in front of the local Cosmos-compatible server that fails chosen store calls *after* they ran.

A write whose answer is lost is the hard case of at-least-once: the store did the work, the caller saw an
error. :class:`StoreFaultProxy` terminates TLS (the app's local-only Cosmos client does not verify the
server), forwards every request to the real server, and, once armed, lets the first matching request reach
the server and then answers ``503`` or drops the connection without an answer; every later request is
refused the same way (without reaching the server) until :meth:`disarm`, as when the store stays down for the
rest of the caller's request. The ``hang`` fault is a store that stops answering: the first matching request
and every later one are held, unanswered and without reaching the server, until :meth:`disarm` (then closed).
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

Fault = Literal["503", "drop", "hang"]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class StoreCall:
    """What a rule sees of a store request: ``POST``/``PUT``/..., the path, and the request headers."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def collection(self) -> str | None:
        """The container named in the path (``/dbs/{db}/colls/{name}/...``), if any."""
        parts = self.path.split("?")[0].strip("/").split("/")
        return parts[3] if len(parts) > 3 and parts[2] == "colls" else None

    @property
    def is_write(self) -> bool:
        """A create, upsert, replace, delete or batch (not a query, not a read)."""
        if self.method in ("PUT", "DELETE", "PATCH"):
            return True
        return self.method == "POST" and self.headers.get("x-ms-documentdb-isquery", "").lower() != "true"


class StoreFaultProxy:
    """Forwards ``https://127.0.0.1:{port}`` to ``target`` (``host``, ``port``), with one armed fault at most.

    Args:
        target: the Cosmos-compatible server's address.
        cert_file, key_file: the local TLS server certificate (``.local/tls/server.pem`` and its key).
    """

    def __init__(self, target: tuple[str, int], *, cert_file: Path, key_file: Path) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._rule: Callable[[StoreCall], bool] | None = None
        self._fault: Fault = "503"
        self._tripped = False
        self._released = threading.Event()
        self._released.set()
        self.faulted: list[StoreCall] = []
        self._upstream_context = ssl.create_default_context()
        self._upstream_context.check_hostname = False
        self._upstream_context.verify_mode = ssl.CERT_NONE  # the local server's bundled certificate expired
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        """The URL to give the app as ``COSMOS_ENDPOINT``."""
        return f"https://127.0.0.1:{self.port}/"

    def arm(self, rule: Callable[[StoreCall], bool], fault: Fault) -> None:
        """Fail the first request ``rule`` matches after it reached the store, and every request after it."""
        with self._lock:
            self._rule, self._fault, self._tripped = rule, fault, False
            self.faulted = []
            if fault == "hang":
                self._released.clear()

    def disarm(self) -> None:
        """Forward everything again (the store is back); held requests are closed unanswered."""
        with self._lock:
            self._rule, self._tripped = None, False
            self._released.set()

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        call = StoreCall(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()})
        with self._lock:
            refuse_now = self._tripped
            trip_after = not refuse_now and self._rule is not None and self._rule(call)
            if trip_after:
                self._tripped = True
            fault = self._fault
            if refuse_now or trip_after:
                self.faulted.append(call)
        if (refuse_now or trip_after) and fault == "hang":  # held before it reaches the store
            self._released.wait(timeout=300)
            self._answer_fault(handler, "drop")
            return
        if refuse_now:
            self._answer_fault(handler, fault)
            return
        status, reason, headers, payload = self._forward(call, body)
        if trip_after:
            self._answer_fault(handler, fault)
            return
        handler.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _forward(self, call: StoreCall, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPSConnection(*self._target, context=self._upstream_context, timeout=60)
        try:
            headers = {k: v for k, v in call.headers.items() if k not in _HOP_BY_HOP}
            connection.request(call.method, call.path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            connection.close()

    @staticmethod
    def _answer_fault(handler: BaseHTTPRequestHandler, fault: Fault) -> None:
        if fault == "drop":
            handler.close_connection = True
            try:
                handler.connection.shutdown(2)
            except OSError:
                pass
            return
        payload = b'{"code":"ServiceUnavailable","message":"injected by the test proxy"}'
        handler.send_response(503, "Service Unavailable")
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
