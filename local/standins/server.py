"""Shared HTTPS server boilerplate for the stand-ins (stdlib ``http.server`` + ``ssl``).

Each stand-in builds a :class:`StandinApp` (a tiny regex router), and :func:`run_cli` serves it over TLS on
a loopback address. Every app gets the common control API:

- ``GET /_standin/health``   -> ``{"ok": true, "name": ..., "base_url": ...}`` (readiness probe)
- ``POST /_standin/faults``  ``{"path_prefix": "/sms", "responses": [500, 429, {"status": 429,
  "retry_after": 3}, {"delay": 5}, {"delay": 2, "status": 503}]}`` scripts the next responses for requests
  whose path starts with ``path_prefix`` (first entry answers the next matching request, and so on).
  An int is a status; ``retry_after`` (seconds, default 1 for 429/503) sets ``Retry-After``; ``delay``
  (seconds) sleeps first and, without ``status``, then answers normally (for client timeouts).
- ``GET /_standin/faults``   -> the remaining scripted faults; ``DELETE /_standin/faults`` clears them.
- ``POST /_standin/reset``   clears the stand-in's recorded state (each app adds its own reset hook).

Requests are logged one line each to stderr as method, path without query string, and status: query
strings and bodies can carry codes, tokens and phone numbers, so they are never logged.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "Fault",
    "FaultScript",
    "HttpError",
    "Request",
    "Response",
    "StandinApp",
    "html_response",
    "json_response",
    "make_server",
    "redirect",
    "run_cli",
]

MAX_BODY = 10 * 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass
class Response:
    """An HTTP response: ``status`` code, ``body`` bytes and extra ``headers``."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Raise from a handler to answer with ``response`` (e.g. a 400 with an OAuth error body)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (``Content-Type: application/json; charset=utf-8``)."""
    hdrs = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}
    hdrs.update(headers or {})
    return Response(status, json.dumps(obj).encode("utf-8"), hdrs)


def html_response(text: str, status: int = 200) -> Response:
    """An HTML response."""
    return Response(status, text.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})


def redirect(location: str, status: int = 302) -> Response:
    """A redirect to ``location`` (absolute URL)."""
    return Response(status, b"", {"Location": location, "Cache-Control": "no-store"})


@dataclass
class Request:
    """One parsed HTTP request.

    Attributes:
        method: upper-case verb.
        raw_path: request target exactly as sent (path + ``?`` + query), as used by HMAC schemes.
        path: the path part, still percent-encoded.
        query: parsed query string (``parse_qs``, blank values kept).
        headers: header mapping; ``header()`` reads it case-insensitively.
        body: raw body bytes (chunked bodies are de-chunked).
    """

    method: str
    raw_path: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes

    def header(self, name: str) -> str | None:
        """The header value, or None (case-insensitive)."""
        value = self.headers.get(name)
        return None if value is None else str(value)

    def arg(self, name: str) -> str | None:
        """One query parameter; a repeated parameter is a 400 (``invalid_request``)."""
        values = self.query.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise HttpError(json_response(
                {"error": "invalid_request", "error_description": f"parameter {name} repeated"}, 400))
        return values[0]

    def json(self) -> Any:
        """The body parsed as JSON; a 400 when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(json_response({"error": "invalid_json", "message": str(exc)}, 400)) from exc

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` (RFC 6749 §3.2: parameters must not repeat).

        Raises HttpError 400 ``invalid_request`` for another content type or a repeated parameter.
        """
        ctype = (self.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise HttpError(json_response({
                "error": "invalid_request",
                "error_description": "Content-Type must be application/x-www-form-urlencoded",
            }, 400))
        pairs = urllib.parse.parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)
        out: dict[str, str] = {}
        for key, value in pairs:
            if key in out:
                raise HttpError(json_response(
                    {"error": "invalid_request", "error_description": f"parameter {key} repeated"}, 400))
            out[key] = value
        return out


@dataclass
class Fault:
    """One scripted response: a ``status`` (None = answer normally), ``retry_after`` seconds, ``delay``."""

    status: int | None = None
    retry_after: int | None = None
    delay: float = 0.0

    @classmethod
    def parse(cls, entry: Any) -> Fault:
        """From an int status or ``{"status", "retry_after", "delay"}``; ValueError when malformed."""
        if isinstance(entry, bool):
            raise ValueError("fault entries are ints or objects")
        if isinstance(entry, int):
            entry = {"status": entry}
        if not isinstance(entry, dict):
            raise ValueError("fault entries are ints or objects")
        status = entry.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise ValueError("status must be an HTTP status code")
        retry_after = entry.get("retry_after")
        if retry_after is None and status in (429, 503):
            retry_after = 1
        delay = float(entry.get("delay", 0) or 0)
        if status is None and delay <= 0:
            raise ValueError("a fault needs a status or a delay")
        return cls(status=status, retry_after=retry_after, delay=delay)

    def to_json(self) -> dict[str, Any]:
        """JSON form, as accepted by :meth:`parse`."""
        return {"status": self.status, "retry_after": self.retry_after, "delay": self.delay}


class FaultScript:
    """Thread-safe queues of scripted faults, keyed by path prefix (first added prefix wins on overlap)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[Fault]] = {}

    def add(self, prefix: str, faults: Iterable[Fault]) -> None:
        """Append ``faults`` to the queue of ``prefix``."""
        with self._lock:
            self._queues.setdefault(prefix, []).extend(faults)

    def take(self, path: str) -> Fault | None:
        """Pop the next fault for ``path``, or None."""
        with self._lock:
            for prefix, queue in self._queues.items():
                if queue and path.startswith(prefix):
                    return queue.pop(0)
        return None

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Remaining faults per prefix."""
        with self._lock:
            return {p: [f.to_json() for f in q] for p, q in self._queues.items() if q}

    def clear(self) -> None:
        """Drop every scripted fault."""
        with self._lock:
            self._queues.clear()


Handler = Callable[[Request, "re.Match[str]"], Response]
FaultBody = Callable[[int], Any]


def _default_fault_body(status: int) -> Any:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"error": {"code": phrase.replace(" ", ""), "message": f"scripted fault {status}"}}


class StandinApp:
    """A tiny router plus the common control API.

    Args:
        name: short name for logs (``epic``, ``graph``, ``acs``).
        base_url: public base URL, e.g. ``https://127.0.0.1:9501`` (no trailing slash).
        fault_body: maps a scripted status to the JSON body the real service would send.
    """

    def __init__(self, name: str, base_url: str, fault_body: FaultBody | None = None) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.faults = FaultScript()
        self.lock = threading.RLock()
        self._fault_body = fault_body or _default_fault_body
        self._routes: list[tuple[frozenset[str], re.Pattern[str], Handler]] = []
        self._reset_hooks: list[Callable[[], None]] = []
        self.route("GET", r"/_standin/health")(self._health)
        self.route(("GET", "POST", "DELETE"), r"/_standin/faults")(self._faults_api)
        self.route("POST", r"/_standin/reset")(self._reset)

    def route(self, methods: str | tuple[str, ...], pattern: str) -> Callable[[Handler], Handler]:
        """Decorator: serve ``methods`` on paths that fully match the regex ``pattern``."""
        verbs = frozenset((methods,) if isinstance(methods, str) else methods)
        compiled = re.compile(pattern)

        def deco(fn: Handler) -> Handler:
            self._routes.append((verbs, compiled, fn))
            return fn

        return deco

    def on_reset(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` on ``POST /_standin/reset`` (faults are always cleared)."""
        self._reset_hooks.append(hook)

    # -- control API -------------------------------------------------------------------------------
    def _health(self, req: Request, m: re.Match[str]) -> Response:
        return json_response({"ok": True, "name": self.name, "base_url": self.base_url})

    def _faults_api(self, req: Request, m: re.Match[str]) -> Response:
        if req.method == "GET":
            return json_response(self.faults.snapshot())
        if req.method == "DELETE":
            self.faults.clear()
            return Response(204)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("path_prefix"), str):
            return json_response({"error": "path_prefix (string) is required"}, 400)
        entries = body.get("responses")
        if not isinstance(entries, list) or not entries:
            return json_response({"error": "responses must be a non-empty list"}, 400)
        try:
            faults = [Fault.parse(e) for e in entries]
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        self.faults.add(body["path_prefix"], faults)
        return json_response(self.faults.snapshot(), 201)

    def _reset(self, req: Request, m: re.Match[str]) -> Response:
        self.faults.clear()
        for hook in self._reset_hooks:
            hook()
        return Response(204)

    # -- dispatch ------------------------------------------------------------------------------------
    def fault_response(self, status: int, retry_after: int | None) -> Response:
        """The response for a scripted ``status`` in this service's error shape."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return json_response(self._fault_body(status), status, headers)

    def handle(self, req: Request) -> Response:
        """Answer one request: scripted fault, then routing (404/405), then the handler (500 on a bug)."""
        if not req.path.startswith("/_standin/"):
            fault = self.faults.take(req.path)
            if fault is not None:
                if fault.delay > 0:
                    time.sleep(fault.delay)
                if fault.status is not None:
                    return self.fault_response(fault.status, fault.retry_after)
        path_matched = False
        for verbs, pattern, fn in self._routes:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            path_matched = True
            if req.method not in verbs:
                continue
            try:
                return fn(req, m)
            except HttpError as exc:
                return exc.response
            except Exception:  # a bug in the stand-in: show it, answer 500
                traceback.print_exc(file=sys.stderr)
                return json_response({"error": "stand-in internal error"}, 500)
        if path_matched:
            return json_response({"error": "method not allowed"}, 405)
        return json_response({"error": "not found", "path": req.path}, 404)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin/1"
    app: StandinApp  # set on the subclass made by make_server

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(413)
            return
        parsed = urllib.parse.urlsplit(self.path)
        req = Request(
            method=self.command,
            raw_path=self.path,
            path=parsed.path,
            query=urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
        )
        resp = self.app.handle(req)
        self.send_response(resp.status)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urllib.parse.urlsplit(self.path).path if hasattr(self, "path") else "-"
        method = getattr(self, "command", "-")
        sys.stderr.write(f"{self.app.name} {method} {path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        # Only reached for protocol errors (send_error); never includes the query string.
        sys.stderr.write(f"{self.app.name} {format % args}\n" if "%" in format else f"{format}\n")


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type[_Handler], ctx: ssl.SSLContext,
                 ipv6: bool) -> None:
        if ipv6:
            import socket

            self.address_family = socket.AF_INET6
        self._ctx = ctx
        super().__init__(addr, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the worker thread, so a stalled client cannot block accept().
        try:
            tls = self._ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        traceback.print_exc(file=sys.stderr)


def make_server(app: StandinApp, host: str, port: int, cert_file: Path, key_file: Path) -> ThreadingHTTPServer:
    """Bind ``app`` to ``host:port`` over TLS (not yet serving; call ``serve_forever``).

    Raises:
        ValueError: when ``host`` is not a loopback address (the stand-ins never listen on the network).
        OSError: when the port is busy.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing to bind {host!r}: stand-ins listen on loopback only")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    handler = type(f"{app.name}Handler", (_Handler,), {"app": app})
    return _TLSServer((host, port), handler, ctx, ipv6=":" in host)


def base_url_for(host: str, port: int) -> str:
    """``https://host:port`` (IPv6 in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}"


def run_cli(name: str, build: Callable[[argparse.Namespace, str], StandinApp],
            add_args: Callable[[argparse.ArgumentParser], None] | None = None,
            argv: list[str] | None = None) -> int:
    """Parse ``--port --host --tls-dir`` (+ ``add_args``), build the app and serve until SIGTERM/SIGINT.

    ``build(args, base_url)`` returns the app. ``--tls-dir`` must hold ``server.pem``, ``server-key.pem``
    and ``ca-bundle.pem`` (see ``local.tls``). Exit code 2 with one line on a busy port or missing files.
    """
    parser = argparse.ArgumentParser(prog=f"python -m local.standins.{name}")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", choices=LOOPBACK_HOSTS)
    parser.add_argument("--tls-dir", type=Path, default=Path(".local/tls"))
    if add_args:
        add_args(parser)
    args = parser.parse_args(argv)
    cert, key = args.tls_dir / "server.pem", args.tls_dir / "server-key.pem"
    if not cert.exists() or not key.exists():
        print(f"{name}: no TLS certificate in {args.tls_dir}: run python -m local.tls first", file=sys.stderr)
        return 2
    base_url = base_url_for(args.host, args.port)
    app = build(args, base_url)
    try:
        server = make_server(app, args.host, args.port, cert, key)
    except OSError as exc:
        print(f"{name}: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    import signal

    def _stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    sys.stderr.write(f"{name} stand-in listening on {base_url}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
