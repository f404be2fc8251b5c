"""A small dev-only host for ``function_app.app`` when Azure Functions Core Tools are not installed.

Run it from the directory that holds ``function_app.py``, ``host.json`` and ``local.settings.json``::

    python -m local.devrunner [--app function_app] [--port 7071] [--settings local.settings.json]
                              [--no-timers] [--no-queues]

What it does, as the Functions host does it (differences are listed under "Limitations"):

* **Settings.** ``local.settings.json`` ``Values`` are copied into ``os.environ`` *before* the app module is
  imported. A variable that is already set in the environment wins over the file (so a shell or CI can
  override one setting without editing the file). ``Host.LocalHttpPort`` is the default port.
* **Index.** ``app.get_functions()`` is called once per app object (a second call raises in
  ``azure-functions``, so the result is cached). Trigger types served: ``httpTrigger``, ``timerTrigger``,
  ``queueTrigger``, and ``warmupTrigger`` (run once by :meth:`DevRunner.start` before HTTP is served, as the
  host runs it when it adds an instance). A parameter named ``context`` receives a minimal ``Context``
  (``invocation_id``, ``function_name``, ``function_directory``).
* **HTTP** on loopback only, routes under ``/{routePrefix}/`` (host.json ``extensions.http.routePrefix``,
  default ``api``). Templates support ``{name}``, ``{name?}`` (last segment), ``{*rest}`` (catch-all, last
  segment) and the constraints ``int``, ``long``, ``bool``, ``alpha``, ``guid``; literal segments win over
  parameters. Unknown path: 404; known path, method not allowed: 405 with ``Allow``. A function that raises
  gives 500 with ``{"title": "Internal error", "status": 500, "correlationId": <invocation id>}``; the
  exception goes to the log only. Repeated query keys and headers are joined with ``,`` (as the .NET host
  hands them to the worker). All ``Set-Cookie`` headers of the response are sent.
* **Admin.** ``POST /admin/functions/{name}`` with ``{"input": "..."}`` runs a timer or queue function now
  and answers 202 (404 unknown function, 400 HTTP function or bad body). ``GET /admin/host/status`` answers
  ``{"state": "Running"}``. No master key is needed locally.
* **Timers.** Six-field NCRONTAB in UTC (:mod:`local.ncrontab`), ``runOnStartup`` honoured; one run of a
  timer function at a time (the host's singleton lock): a firing that finds the previous run still going is
  skipped. ``past_due`` is true when a run starts more than a second after its occurrence.
* **Queues.** Polls each queue trigger's queue (``%SETTING%`` names resolved from the environment; the
  ``connection`` setting, default ``AzureWebJobsStorage``, must hold a connection string), creating it when
  missing. host.json ``extensions.queues``: ``messageEncoding`` (``base64`` default, or ``none``),
  ``batchSize`` (16), ``maxDequeueCount`` (5), ``visibilityTimeout`` (0), ``maxPollingInterval`` (capped at
  2 s locally). Success deletes the message; a failure makes it visible again after ``visibilityTimeout``;
  a failure at ``dequeue_count >= maxDequeueCount`` (or a message received with a higher count) copies the
  original message text to ``<queue>-poison`` and deletes it. A body that is not valid base64 under
  ``base64`` encoding counts as a failed attempt, so it ends in the poison queue, as in the host.
* **Logging.** One line per invocation: function, trigger, route *template* (never the URL, query string,
  headers or body, which can carry PHI or tokens), outcome, duration in ms, invocation id.

Limitations compared with the real host: no function or host keys (auth levels are ignored, as Core Tools
does locally), no bindings other than the trigger and the HTTP ``$return`` (a function with extra
input/output bindings fails when called), no retry policies, no binding expressions other than ``%SETTING%``
in queue names, identity-based connections (``<name>__queueServiceUri``) are not supported, no timer
schedule monitor (missed occurrences while stopped are not replayed), no message-lease renewal (messages are
received invisible for 10 minutes), no ``newBatchThreshold`` (a batch is finished before the next poll), no
``functionTimeout``, no CORS (``Host.CORS`` in local.settings.json is ignored), no Application Insights.
The admin endpoint answers after the run has finished (the host answers 202 at once and runs in the
background). Dev-only: never deploy this module.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import importlib
import inspect
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from local.ncrontab import Schedule, parse_schedule

__all__ = ["DevRunner", "HostConfig", "load_app", "load_local_settings", "main", "parse_timespan"]

logger = logging.getLogger("devrunner")

MAX_LOCAL_POLL_SECONDS = 2.0  # upper bound for maxPollingInterval when running locally
MIN_POLL_SECONDS = 0.1  # first back-off step after an empty poll
RECEIVE_VISIBILITY_SECONDS = 600  # how long a received message stays invisible while it is being processed
MAX_BODY_BYTES = 100 * 1024 * 1024  # the host's default request size limit (100 MB)
SCHEDULER_TICK_SECONDS = 0.2
PAST_DUE_TOLERANCE = timedelta(seconds=1)

_PROBLEM_TYPE = "application/problem+json"


# --------------------------------------------------------------------------------------------------- config


def parse_timespan(text: str) -> float:
    """Parse a .NET TimeSpan string ``[d.]hh:mm:ss[.fff]`` into seconds.

    Raises ``ValueError`` for anything else.
    """
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a TimeSpan (expected [d.]hh:mm:ss)")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class HostConfig:
    """The host.json settings the dev runner honours. Durations are in seconds."""

    route_prefix: str = "api"
    message_encoding: str = "base64"  # "base64" or "none"
    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = MAX_LOCAL_POLL_SECONDS

    @classmethod
    def load(cls, path: Path | None) -> HostConfig:
        """Read ``path`` (a host.json); a missing file gives the defaults.

        Raises ``ValueError`` for an unsupported ``messageEncoding``, a ``batchSize`` outside 1-32, a
        non-positive ``maxDequeueCount`` or a malformed TimeSpan.
        """
        if path is None or not path.is_file():
            return cls()
        document = json.loads(path.read_text(encoding="utf-8"))
        extensions = document.get("extensions") or {}
        http_section = extensions.get("http") or {}
        queues = extensions.get("queues") or {}
        encoding = str(queues.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError(f"host.json messageEncoding {encoding!r} is not supported (base64 or none)")
        batch_size = int(queues.get("batchSize", 16))
        if not 1 <= batch_size <= 32:
            raise ValueError(f"host.json batchSize {batch_size} must be between 1 and 32")
        max_dequeue = int(queues.get("maxDequeueCount", 5))
        if max_dequeue < 1:
            raise ValueError(f"host.json maxDequeueCount {max_dequeue} must be at least 1")
        max_poll = MAX_LOCAL_POLL_SECONDS
        if "maxPollingInterval" in queues:
            max_poll = min(max_poll, max(MIN_POLL_SECONDS, parse_timespan(queues["maxPollingInterval"])))
        return cls(
            route_prefix=str(http_section.get("routePrefix", "api")).strip("/"),
            message_encoding=encoding,
            batch_size=batch_size,
            max_dequeue_count=max_dequeue,
            visibility_timeout=parse_timespan(queues.get("visibilityTimeout", "00:00:00")),
            max_polling_interval=max_poll,
        )


def load_local_settings(path: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """Copy ``Values`` of a local.settings.json into ``environ`` (default ``os.environ``).

    Variables already present in ``environ`` are left alone (the environment wins). Non-string values are
    converted with ``str()``. Returns the parsed document, or ``{}`` when the file does not exist; raises
    ``ValueError`` when it is not valid JSON.
    """
    target = os.environ if environ is None else environ
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    for name, value in (document.get("Values") or {}).items():
        if name not in target and value is not None:
            target[name] = value if isinstance(value, str) else str(value)
    return document


def load_app(spec: str) -> func.FunctionRegister:
    """Import ``module`` (or ``module:attribute``) and return its single ``FunctionApp``-like object.

    Like the Python worker, a bare module name must hold exactly one ``FunctionRegister`` at module level;
    raises ``RuntimeError`` otherwise.
    """
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    if attribute:
        app = getattr(module, attribute)
        if not isinstance(app, func.FunctionRegister):
            raise RuntimeError(f"{spec} is not an azure.functions FunctionApp")
        return app
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) != 1:
        raise RuntimeError(f"module {module_name} must define exactly one FunctionApp, found {len(apps)}")
    return apps[0]


# ---------------------------------------------------------------------------------------------------- index


@dataclass(frozen=True)
class FunctionInfo:
    """One indexed function. ``binding`` is its trigger binding as in function.json."""

    name: str
    trigger: str  # "httpTrigger", "timerTrigger", "queueTrigger" or "warmupTrigger"
    binding: Mapping[str, Any]
    user_function: Callable[..., Any]
    takes_context: bool


_INDEX_CACHE: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()
_SUPPORTED_TRIGGERS = ("httpTrigger", "timerTrigger", "queueTrigger", "warmupTrigger")


def index_functions(app: func.FunctionRegister) -> list[FunctionInfo]:
    """Index ``app`` (``get_functions()`` is called at most once per app object).

    Raises ``ValueError`` for a trigger type the dev runner does not serve. Functions with bindings other
    than the trigger and ``$return`` are indexed with a warning: calling them fails.
    """
    with _INDEX_LOCK:
        if app not in _INDEX_CACHE:
            _INDEX_CACHE[app] = list(app.get_functions())
        functions = _INDEX_CACHE[app]
    infos = []
    for function in functions:
        name = function.get_function_name()
        bindings = json.loads(function.get_function_json())["bindings"]
        triggers = [b for b in bindings if b["type"].endswith("Trigger")]
        if len(triggers) != 1 or triggers[0]["type"] not in _SUPPORTED_TRIGGERS:
            raise ValueError(f"function {name}: trigger {[b['type'] for b in triggers]} is not supported")
        others = [b["type"] for b in bindings if b not in triggers and b.get("name") != "$return"]
        if others:
            logger.warning("function %s has bindings %s that the dev runner cannot provide", name, others)
        user_function = function.get_user_function()
        parameters = inspect.signature(user_function).parameters
        infos.append(FunctionInfo(name, triggers[0]["type"], triggers[0], user_function, "context" in parameters))
    return infos


_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
}
_PARAMETER = re.compile(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?(\?)?\}")


@dataclass(frozen=True)
class Route:
    """A compiled HTTP route. ``methods`` is None when every method is allowed."""

    template: str
    pattern: re.Pattern[str]
    precedence: tuple[int, ...]
    methods: frozenset[str] | None
    function: FunctionInfo


def compile_route(template: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
    """Compile a route template (without the prefix) into a regex matching ``/seg/seg`` paths.

    Returns the pattern and a precedence key (lower sorts first: literal < ``{p}`` < ``{p?}`` <
    ``{*p}``). Raises ``ValueError`` for segments mixing text and parameters, or an optional/catch-all
    parameter that is not the last segment.
    """
    segments = [s for s in template.strip("/").split("/") if s]
    parts: list[str] = []
    precedence: list[int] = []
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        match = _PARAMETER.fullmatch(segment)
        if match is None:
            if "{" in segment or "}" in segment:
                raise ValueError(f"route {template!r}: segment {segment!r} is not supported")
            parts.append("/" + re.escape(segment))
            precedence.append(0)
            continue
        star, name, constraint, optional = match.groups()
        if constraint and constraint.lower() not in _CONSTRAINTS:
            logger.warning("route %s: constraint %r is not checked by the dev runner", template, constraint)
        value = _CONSTRAINTS.get((constraint or "").lower(), "[^/]+")
        if (star or optional) and not last:
            raise ValueError(f"route {template!r}: {segment} must be the last segment")
        if star:
            parts.append(f"(?:/(?P<{name}>.*))?")
            precedence.append(3)
        elif optional:
            parts.append(f"(?:/(?P<{name}>{value}))?")
            precedence.append(2)
        else:
            parts.append(f"/(?P<{name}>{value})")
            precedence.append(1)
    return re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE), tuple(precedence)


# ----------------------------------------------------------------------------------------------- invocation


@dataclass(frozen=True)
class _Context:
    """The parts of ``azure.functions.Context`` a function can rely on here."""

    invocation_id: str
    function_name: str
    function_directory: str = field(default_factory=os.getcwd)
    trace_context: Any = None
    retry_context: Any = None


@dataclass
class _Outcome:
    ok: bool
    invocation_id: str
    value: Any = None


@dataclass
class _Timer:
    function: FunctionInfo
    schedule: Schedule
    run_on_startup: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_check: datetime | None = None


@dataclass
class HttpResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _problem(status: int, title: str, **extra: Any) -> HttpResult:
    body = json.dumps({"title": title, "status": status, **extra}).encode()
    return HttpResult(status, [("Content-Type", _PROBLEM_TYPE)], body)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DevRunner:
    """Serves one ``FunctionApp``: HTTP on loopback, NCRONTAB timers and Azurite queue triggers.

    ``port`` 0 picks a free port (read :attr:`port` after :meth:`start`). ``host_json`` is read once, here
    (missing file: defaults). ``environ`` (default ``os.environ``) resolves ``%SETTING%`` queue names and
    connection strings. ``timers`` / ``queues`` False turn the background timer scheduler / queue pollers
    off; :meth:`trigger` and :meth:`run_timers_due` still work.

    Raises ``ValueError`` for a non-loopback ``host``, an unsupported trigger, route or schedule, or a bad
    host.json.
    """

    def __init__(
        self,
        app: func.FunctionRegister,
        *,
        host: str = "127.0.0.1",
        port: int = 7071,
        host_json: Path | None = Path("host.json"),
        environ: Mapping[str, str] | None = None,
        timers: bool = True,
        queues: bool = True,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the dev runner listens on loopback only, not {host!r}")
        self.host = host
        self.port = port
        self.config = HostConfig.load(host_json)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._enable_timers = timers
        self._enable_queues = queues
        self.functions = {info.name.lower(): info for info in index_functions(app)}
        self.routes: list[Route] = []
        self.timers: dict[str, _Timer] = {}
        for info in self.functions.values():
            if info.trigger == "httpTrigger":
                self.routes.append(self._make_route(info))
            elif info.trigger == "timerTrigger":
                schedule = parse_schedule(info.binding["schedule"])
                self.timers[info.name.lower()] = _Timer(info, schedule, bool(info.binding.get("runOnStartup")))
        self.routes.sort(key=lambda route: route.precedence)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._timer_state_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Bind the HTTP server and start the server, timer and queue threads; returns at once.

        Raises ``OSError`` when the port is taken and ``ValueError`` when a queue trigger's name or
        connection setting cannot be resolved.
        """
        listeners = self._queue_listeners() if self._enable_queues else []
        for info in self.functions.values():
            if info.trigger == "warmupTrigger":  # the host runs it when an instance is added, before traffic
                self._invoke(info, None, "warmup")
        self._server = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._server.daemon_threads = True
        self._server.runner = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._spawn("devrunner-http", self._server.serve_forever, 0.1)
        if self._enable_timers and self.timers:
            now = _utcnow()
            for timer in self.timers.values():
                timer.last_check = now
                if timer.run_on_startup:
                    self._spawn(f"timer-{timer.function.name}", self._run_timer, timer, False, False)
            self._spawn("devrunner-scheduler", self._scheduler_loop)
        for function, queue_name, connection_string in listeners:
            self._spawn(f"queue-{queue_name}", self._poll_queue, function, queue_name, connection_string)
        for route in self.routes:
            methods = ",".join(sorted(route.methods)) if route.methods else "*"
            logger.info("%s: [%s] %s", route.function.name, methods, self.url_for(route.template))
        for info in self.functions.values():
            if info.trigger != "httpTrigger":
                logger.info("%s: %s", info.name, info.trigger)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling and scheduling, close the HTTP server and join the threads (waiting up to
        ``timeout`` seconds in total for running invocations to finish)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        deadline = time.monotonic() + timeout
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("thread %s did not stop within %.0f s", thread.name, timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url_for(self, route_template: str) -> str:
        """The local URL of a route template, e.g. ``http://127.0.0.1:7071/api/items/{itemId}``."""
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        return f"http://{self.host}:{self.port}{prefix}/{route_template.lstrip('/')}"

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._threads_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    # ---------------------------------------------------------------------------------------- invocations

    def _invoke(self, info: FunctionInfo, argument: Any, trigger: str, detail: str = "") -> _Outcome:
        """Call the user function with its trigger argument; log one line; never raises."""
        invocation_id = str(uuid.uuid4())
        kwargs = {info.binding["name"]: argument}
        if info.takes_context:
            kwargs["context"] = _Context(invocation_id, info.name)
        started = time.perf_counter()
        try:
            value = info.user_function(**kwargs)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        except Exception:
            elapsed = (time.perf_counter() - started) * 1000
            logger.exception(
                "function=%s trigger=%s%s outcome=failed duration_ms=%.1f invocation=%s",
                info.name, trigger, detail, elapsed, invocation_id,
            )
            return _Outcome(False, invocation_id)
        elapsed = (time.perf_counter() - started) * 1000
        status = f" status={value.status_code}" if isinstance(value, func.HttpResponse) else ""
        logger.info(
            "function=%s trigger=%s%s outcome=succeeded%s duration_ms=%.1f invocation=%s",
            info.name, trigger, detail, status, elapsed, invocation_id,
        )
        return _Outcome(True, invocation_id, value)

    def trigger(self, function_name: str, input: str = "") -> bool:
        """Run a timer or queue function now, in the calling thread (the admin endpoint's behaviour).

        Timer functions get ``TimerRequest(past_due=False)`` and wait for a run in progress to finish (one
        run at a time). Queue functions get a ``QueueMessage`` whose body is ``input`` as UTF-8 bytes,
        ``dequeue_count`` 1; the message does not go through the queue. Returns True when the function
        returned normally (False: it raised; the exception is logged). Raises ``KeyError`` for an unknown
        function and ``ValueError`` for an HTTP function.
        """
        info = self.functions.get(function_name.lower())
        if info is None:
            raise KeyError(function_name)
        if info.trigger == "timerTrigger":
            return bool(self._run_timer(self.timers[info.name.lower()], False, True))
        if info.trigger == "queueTrigger":
            now = _utcnow()
            message = QueueMessage(
                id=str(uuid.uuid4()), body=input.encode("utf-8"), dequeue_count=1, insertion_time=now,
                expiration_time=now + timedelta(days=7), time_next_visible=now, pop_receipt=None,
            )
            return self._invoke(info, message, "queue", " source=admin").ok
        raise ValueError(f"{info.name} is an HTTP function: call its route instead")

    # --------------------------------------------------------------------------------------------- timers

    def run_timers_due(self, now: datetime) -> list[str]:
        """Run, in the calling thread, each timer function with an occurrence since the last check.

        The window is (previous ``now`` given to this method or the scheduler, ``now``]; on the very first
        check it is (``now`` - 1 s, ``now``]. Each timer runs at most once per call, with ``past_due`` true
        when ``now`` is more than a second after the occurrence. A timer whose previous run is still in
        progress is skipped. ``now`` is a UTC datetime (naive is taken as UTC). Returns the names of the
        functions that ran, in index order. Meant for tests and scripts with ``timers=False``: the
        background scheduler moves the same last-check time.
        """
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
        ran = []
        for timer, past_due in self._take_due_timers(now):
            if self._run_timer(timer, past_due, False) is not None:
                ran.append(timer.function.name)
        return ran

    def _take_due_timers(self, now: datetime) -> list[tuple[_Timer, bool]]:
        due = []
        with self._timer_state_lock:
            for timer in self.timers.values():
                since = timer.last_check or now - timedelta(seconds=1)
                if now <= since:
                    continue
                timer.last_check = now
                occurrence = timer.schedule.next_after(since)
                if occurrence <= now:
                    due.append((timer, now - occurrence > PAST_DUE_TOLERANCE))
        return due

    def _run_timer(self, timer: _Timer, past_due: bool, wait: bool) -> bool | None:
        """Run one timer invocation under the timer's lock; None when skipped because it is busy."""
        if not timer.lock.acquire(blocking=wait):
            logger.info("function=%s trigger=timer outcome=skipped reason=previous-run-in-progress",
                        timer.function.name)
            return None
        try:
            request = TimerRequest(past_due=past_due, schedule={"AdjustForDST": True})
            return self._invoke(timer.function, request, "timer", f" past_due={past_due}").ok
        finally:
            timer.lock.release()

    def _scheduler_loop(self) -> None:
        while not self._stop.wait(SCHEDULER_TICK_SECONDS):
            for timer, past_due in self._take_due_timers(_utcnow()):
                if timer.lock.locked():
                    logger.info("function=%s trigger=timer outcome=skipped reason=previous-run-in-progress",
                                timer.function.name)
                    continue
                self._spawn(f"timer-{timer.function.name}", self._run_timer, timer, past_due, False)

    # --------------------------------------------------------------------------------------------- queues

    def _resolve(self, text: str) -> str:
        """Replace ``%NAME%`` with the setting's value; raises ``ValueError`` for a missing setting."""

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if not self.environ.get(name):
                raise ValueError(f"binding expression %{name}% has no value: set {name} in local.settings.json")
            return self.environ[name]

        return re.sub(r"%([^%]+)%", lookup, text)

    def _queue_listeners(self) -> list[tuple[FunctionInfo, str, str]]:
        listeners = []
        for info in self.functions.values():
            if info.trigger != "queueTrigger":
                continue
            queue_name = self._resolve(info.binding["queueName"]).lower()
            setting = info.binding.get("connection") or "AzureWebJobsStorage"
            connection = self.environ.get(setting) or self.environ.get(f"AzureWebJobs{setting}")
            if not connection:
                raise ValueError(f"function {info.name}: setting {setting} (a storage connection string) is not set")
            listeners.append((info, queue_name, connection))
        return listeners

    @staticmethod
    def _queue_client(connection_string: str, queue_name: str) -> Any:
        """A raw-text QueueClient: encoding is handled here so a bad message can still be moved."""
        from azure.storage.queue import QueueClient

        return QueueClient.from_connection_string(connection_string, queue_name)

    @staticmethod
    def _ensure_queue(client: Any) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            client.create_queue()
        except ResourceExistsError:
            pass

    def _poll_queue(self, info: FunctionInfo, queue_name: str, connection_string: str) -> None:
        from azure.core.exceptions import AzureError

        client = self._queue_client(connection_string, queue_name)
        poison = self._queue_client(connection_string, f"{queue_name}-poison")
        batch_size = self.config.batch_size
        delay = MIN_POLL_SECONDS
        created = False
        with ThreadPoolExecutor(batch_size, thread_name_prefix=f"queue-{queue_name}") as pool:
            while not self._stop.is_set():
                try:
                    if not created:
                        self._ensure_queue(client)
                        created = True
                    messages = list(client.receive_messages(
                        messages_per_page=batch_size, max_messages=batch_size,
                        visibility_timeout=RECEIVE_VISIBILITY_SECONDS,
                    ))
                except AzureError as exc:
                    logger.warning("queue %s: polling failed (%s); retrying", queue_name, type(exc).__name__)
                    messages = []
                    delay = self.config.max_polling_interval
                if messages:
                    delay = MIN_POLL_SECONDS
                    list(pool.map(lambda m: self._process(info, client, poison, queue_name, m), messages))
                    continue
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.max_polling_interval)

    def _decode(self, content: str) -> bytes:
        """The message body the function sees; raises ``ValueError`` for invalid base64."""
        if self.config.message_encoding == "none":
            return content.encode("utf-8")
        try:
            return base64.b64decode("".join(content.split()).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError("message is not valid base64 (producers must use TextBase64EncodePolicy)") from None

    def _process(self, info: FunctionInfo, client: Any, poison: Any, queue_name: str, message: Any) -> None:
        """Handle one received message with the host's delete / release / poison rules."""
        from azure.core.exceptions import AzureError

        limit = self.config.max_dequeue_count
        detail = f" queue={queue_name} dequeue_count={message.dequeue_count}"
        try:
            if message.dequeue_count > limit:
                ok = False  # already over the limit (e.g. a crash mid-run): poison without another attempt
            else:
                try:
                    body = self._decode(message.content or "")
                except ValueError as exc:
                    logger.error("function=%s trigger=queue%s outcome=failed reason=%s", info.name, detail, exc)
                    ok = False
                else:
                    argument = QueueMessage(
                        id=message.id, body=body, dequeue_count=message.dequeue_count,
                        expiration_time=message.expires_on, insertion_time=message.inserted_on,
                        time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt,
                    )
                    ok = self._invoke(info, argument, "queue", detail).ok
            if ok:
                client.delete_message(message.id, message.pop_receipt)
            elif message.dequeue_count >= limit:
                self._ensure_queue(poison)
                poison.send_message(message.content)
                client.delete_message(message.id, message.pop_receipt)
                logger.warning("function=%s queue=%s message=%s moved to %s-poison after %d attempts",
                               info.name, queue_name, message.id, queue_name, message.dequeue_count)
            else:
                client.update_message(message.id, pop_receipt=message.pop_receipt,
                                      visibility_timeout=int(self.config.visibility_timeout))
        except AzureError as exc:
            logger.warning("queue %s: message %s: storage call failed (%s)", queue_name, message.id,
                           type(exc).__name__)

    # ----------------------------------------------------------------------------------------------- HTTP

    def _make_route(self, info: FunctionInfo) -> Route:
        template = info.binding.get("route") or info.name
        pattern, precedence = compile_route(template)
        methods = info.binding.get("methods")
        allowed = frozenset(str(m).upper() for m in methods) if methods else None
        return Route(template, pattern, precedence, allowed, info)

    def handle_http(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                    host_header: str | None = None) -> HttpResult:
        """Dispatch one request (``target`` is the path plus query string); used by the HTTP server."""
        split = urlsplit(target)
        path = split.path
        if path.rstrip("/").lower().startswith("/admin/"):
            return self._handle_admin(method, path.rstrip("/"), body)
        prefix = f"/{self.config.route_prefix}".rstrip("/") if self.config.route_prefix else ""
        if prefix and path.lower() != prefix.lower() and not path.lower().startswith(prefix.lower() + "/"):
            return _problem(404, "Not found")
        relative = path[len(prefix):]
        matches = [(route, m) for route in self.routes if (m := route.pattern.match(relative))]
        if not matches:
            return _problem(404, "Not found")
        allowed = [(route, m) for route, m in matches if route.methods is None or method in route.methods]
        if not allowed:
            methods = sorted({x for route, _ in matches for x in route.methods or ()})
            result = _problem(405, "Method not allowed")
            result.headers.append(("Allow", ", ".join(methods)))
            return result
        route, match = allowed[0]
        route_params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        params: dict[str, str] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        joined: dict[str, str] = {}
        for key, value in headers:
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        url = f"http://{host_header or f'{self.host}:{self.port}'}{target}"
        request = func.HttpRequest(method, url, headers=joined, params=params, route_params=route_params,
                                   body=body)
        outcome = self._invoke(route.function, request, "http", f' route="{method} {route.template}"')
        if not outcome.ok:
            return _problem(500, "Internal error", correlationId=outcome.invocation_id)
        return self._http_result(outcome.value)

    @staticmethod
    def _http_result(value: Any) -> HttpResult:
        if value is None:
            return HttpResult(204, [], b"")
        if isinstance(value, str):
            return HttpResult(200, [("Content-Type", "text/plain; charset=utf-8")], value.encode("utf-8"))
        if not isinstance(value, func.HttpResponse):
            logger.error("HTTP function returned %s, not an HttpResponse", type(value).__name__)
            return _problem(500, "Internal error")
        cookies = value.headers.getlist("Set-Cookie")
        others: dict[str, tuple[str, str]] = {}
        for key, header_value in value.headers.items():
            if key.lower() not in ("set-cookie", "content-length", "transfer-encoding", "connection"):
                others[key.lower()] = (key, header_value)  # one value per name, as the worker sends them
        if "content-type" not in others:
            mimetype = value.mimetype
            content_type = f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
            others["content-type"] = ("Content-Type", content_type)
        headers = list(others.values()) + [("Set-Cookie", cookie) for cookie in cookies]
        return HttpResult(int(value.status_code), headers, value.get_body())

    def _handle_admin(self, method: str, path: str, body: bytes) -> HttpResult:
        if path.lower() == "/admin/host/status" and method in ("GET", "HEAD"):
            return HttpResult(200, [("Content-Type", "application/json")], b'{"state": "Running"}')
        match = re.fullmatch(r"/admin/functions/([^/]+)", path, re.IGNORECASE)
        if match is None:
            return _problem(404, "Not found")
        if method != "POST":
            return _problem(405, "Method not allowed")
        info = self.functions.get(unquote(match.group(1)).lower())
        if info is None:
            return _problem(404, "Not found")
        if info.trigger == "httpTrigger":
            return _problem(400, "HTTP functions cannot be run through the admin endpoint")
        try:
            document = json.loads(body or b"{}")
        except ValueError:
            document = None
        payload = document.get("input", "") if isinstance(document, dict) else None
        if not isinstance(payload, str):
            return _problem(400, 'Body must be JSON {"input": "<string>"}')
        self.trigger(info.name, payload)
        return HttpResult(202, [], b"")


class _BodyError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to :meth:`DevRunner.handle_http`."""

    server_version = "devrunner"

    def _serve(self) -> None:
        runner: DevRunner = self.server.runner  # type: ignore[attr-defined]
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            result = _problem(exc.status, "Request body too large" if exc.status == 413 else "Bad request body")
        else:
            # Like App Service's front end, append the peer address to X-Forwarded-For (the app trusts only
            # the last entry: lib/visits/throttle.client_address).
            headers = [*self.headers.items(), ("X-Forwarded-For", self.client_address[0])]
            result = runner.handle_http(self.command, self.path, headers, body, self.headers.get("Host"))
        self.send_response(result.status)
        for key, value in result.headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(result.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(result.body)

    def _read_body(self) -> bytes:
        """The request body; raises ``_BodyError`` (400 bad framing, 413 over ``MAX_BODY_BYTES``)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                try:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise _BodyError(400) from None
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise _BodyError(413)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _BodyError(400) from None
        if length < 0:
            raise _BodyError(400)
        if length > MAX_BODY_BYTES:
            raise _BodyError(413)
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: its request line carries the query string."""


# ------------------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m local.devrunner``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m local.devrunner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default="function_app", help="module[:attribute] holding the FunctionApp")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: Host.LocalHttpPort or 7071)")
    parser.add_argument("--settings", default="local.settings.json", help="local settings file")
    parser.add_argument("--no-timers", action="store_true", help="do not fire timer functions on schedule")
    parser.add_argument("--no-queues", action="store_true", help="do not poll queues")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs request URLs and headers at INFO

    settings = load_local_settings(Path(args.settings))
    port = args.port if args.port is not None else int((settings.get("Host") or {}).get("LocalHttpPort") or 7071)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    runner = DevRunner(load_app(args.app), port=port, host_json=Path("host.json"),
                       timers=not args.no_timers, queues=not args.no_queues)

    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    try:
        runner.start()
    except OSError as exc:
        print(f"devrunner: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}): is another runner using it?",
              file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    logger.info("dev runner listening on http://%s:%d (Ctrl+C to stop)", runner.host, runner.port)
    while not stopping.wait(0.5):
        pass
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
