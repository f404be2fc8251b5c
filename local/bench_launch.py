"""Benchmark: server-side time of a SMART provider launch, and its outbound calls, against the local stand-ins.

One launch = what our two HTTP requests run (``LaunchService.begin`` for ``/api/launch/provider`` and
``LaunchService.complete`` for ``/api/launch/callback``), in process, with the real clients: SMART discovery,
token exchange with ``private_key_jwt``, id_token verification, FHIR ``Appointment`` read, Graph ``createOrGet``
through MSAL, Cosmos DB (local Cosmos-compatible server) reads and writes, the ``connected`` event and its
queue message (Azurite). The browser's part (following the authorize redirect) is done between the two calls
and not timed.

**Server-side time** = wall time of ``begin`` + ``complete`` minus the time spent waiting for the Epic and
Graph/Entra stand-ins (every outbound ``requests`` call is timed by wrapping ``requests.Session.send``; calls
to the stand-ins' hosts are subtracted). Cosmos DB and Azurite time stays in: they are our own store.

**Outbound calls per launch** (to Epic and Entra/Graph only): the first launch (cold: discovery, the EHR's JWKS,
MSAL's authority discovery and app token), then warm launches, each into a new visit (token + FHIR read +
``createOrGet``), and warm relaunches into a visit that already has its meeting (token + FHIR read).
Goal from the issue: token + at most one FHIR read + one Graph call.

**Store calls per launch** (issue 15: at most 5 for a new visit): Cosmos DB requests on the wire during the two
requests, and queue sends (Azurite) beside them. The environment is the default kind: clinician sign-in on, the
clinician's EHR user -> Entra mapping stored (its first read is cached, as in a running app).

**The follow-up** (``launch-followup`` queue, lib/visits/launch_followup.py): after each new-visit launch its
message is handled as the queue trigger does, outside the timed requests, for real: the click record and the
meeting's call-events subscription (``POST /beta/subscriptions``; Graph's validation request reaches the app's
real ``graph_notifications`` route, served here at ``PUBLIC_BASE_URL`` when no dev runner is there).
``followup`` reports its store calls, Graph calls and how many subscriptions became active.

Usage: ``python -m local.bench_launch [-n 30] [--profile test|demo]``; ``run(n)`` returns the dict. The
profile's services are started when not running (and stopped again afterwards). Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import re
import secrets
import statistics
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from lib.config.approvals import seeded_approvals
from lib.queues import LAUNCH_FOLLOWUP_QUEUE
from lib.store.users import UserMapping
from local.testing import JwksServer

ROOT = Path(__file__).resolve().parents[1]
_ID = re.compile(r"/(Appointment|users)/[^/]+")


class NotificationEndpoint:
    """The app's ``/api/notifications/graph`` and ``.../lifecycle`` routes on ``PUBLIC_BASE_URL``'s port, so the
    Graph stand-in's validation request at subscription time gets the app's real answer. Nothing is started
    when the port is taken (a dev runner already serves the app there)."""

    def __init__(self, public_base_url: str) -> None:
        self._parts = urllib.parse.urlsplit(public_base_url)
        self._server: Any = None

    def __enter__(self) -> NotificationEndpoint:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import azure.functions as func

        from functions.notifications import graph_lifecycle, graph_notifications

        routes = {"/api/notifications/graph": graph_notifications.build().get_user_function(),
                  "/api/notifications/graph/lifecycle": graph_lifecycle.build().get_user_function()}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = routes.get(url.path)
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                request = func.HttpRequest("POST", self.path, headers=dict(self.headers), body=body,
                                           params=dict(urllib.parse.parse_qsl(url.query)))
                answer = route(request)
                payload = answer.get_body()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.mimetype or "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self._server = ThreadingHTTPServer((self._parts.hostname or "127.0.0.1", self._parts.port or 80), Handler)
        except OSError:  # a dev runner serves the app there already
            return self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class OutboundRecorder:
    """Times every ``requests`` call of this process; ``hosts`` = the stand-ins' ``host:port`` to count."""

    def __init__(self, hosts: set[str]) -> None:
        self.hosts = hosts
        self.calls: list[tuple[str, str, float]] = []  # (method, host + path, seconds)
        self.store_calls: list[tuple[str, float]] = []  # every other call (host, seconds): Cosmos DB, Azurite
        self.recording = False
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[OutboundRecorder]:
        original = requests.Session.send
        recorder = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(session, request, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                parts = urllib.parse.urlsplit(request.url or "")
                if recorder.recording:
                    with recorder._lock:
                        if parts.netloc in recorder.hosts:
                            recorder.calls.append((request.method or "", parts.netloc + parts.path, elapsed))
                        else:
                            recorder.store_calls.append((parts.netloc, elapsed))

        requests.Session.send = send  # type: ignore[method-assign]
        try:
            yield self
        finally:
            requests.Session.send = original  # type: ignore[method-assign]

    def take(self) -> list[tuple[str, str, float]]:
        with self._lock:
            out, self.calls = self.calls, []
        return out

    def take_store(self) -> list[tuple[str, float]]:
        with self._lock:
            out, self.store_calls = self.store_calls, []
        return out


def _browser_authorize(result: Any, verify: str) -> dict[str, str]:
    """Play the browser between our two requests: send the authorize request, return the callback's query."""
    from lib.visits.pages import Redirect

    if isinstance(result, Redirect):
        response = requests.get(result.location, allow_redirects=False, verify=verify, timeout=10)
    else:
        action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', result.html).group(1))  # type: ignore[union-attr]
        fields = {html.unescape(k): html.unescape(v)
                  for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', result.html)}
        response = requests.post(action, data=fields, allow_redirects=False, verify=verify, timeout=10)
    location = response.headers.get("Location", "")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    if "code" not in query:
        raise RuntimeError(f"authorize did not return a code (HTTP {response.status_code})")
    return query


def run(n: int = 30, profile: str = "test") -> dict[str, Any]:
    """Time ``n`` warm provider launches into new visits and ``n`` relaunches, after one cold launch.

    Returns:
        ``server_ms`` (``p50``/``p95``/``mean`` per launch, stand-in time excluded), ``wall_ms`` (the same with
        the stand-ins' time), ``outbound_calls`` (``cold``, ``warm_new_visit``, ``warm_relaunch``: calls per
        launch and what they were), ``launches``.
    """
    import os

    from functions.dependencies import Services
    from lib.models import EnvironmentConfig
    from local import services

    handle = services.start(profile, ROOT)
    settings = services.settings_for(profile, ROOT)
    # MSAL trusts the local CA through REQUESTS_CA_BUNDLE (requests lets it override a session's verify).
    os.environ["REQUESTS_CA_BUNDLE"] = settings["REQUESTS_CA_BUNDLE"]
    verify = settings["LOCAL_CA_BUNDLE"]
    epic, graph, iss = settings["EPIC_STANDIN_URL"], settings["GRAPH_STANDIN_URL"], settings["EPIC_STANDIN_ISS"]
    hosts = {urllib.parse.urlsplit(epic).netloc, urllib.parse.urlsplit(graph).netloc}
    cosmos = urllib.parse.urlsplit(settings["COSMOS_ENDPOINT"]).netloc
    jwks_server = None
    endpoint: NotificationEndpoint | None = None
    displaced: list[EnvironmentConfig] = []
    app: Any = None
    try:
        app = Services(dict(settings))
        app.store.ensure_schema()
        jwks_server = JwksServer(app.smart_keys.jwks()["keys"]).__enter__()
        client_id = f"bench-{uuid.uuid4().hex[:8]}"
        organizer = str(uuid.uuid4())
        requests.post(f"{epic}/_standin/clients", json={
            "client_id": client_id, "jwks_url": jwks_server.url,
            "redirect_uris": [f"{settings['PUBLIC_BASE_URL']}/api/launch/callback"]},
            verify=verify, timeout=10).raise_for_status()
        requests.post(f"{graph}/_standin/users", json={"id": organizer, "policy": True}, verify=verify,
                      timeout=10).raise_for_status()
        for other in app.repos.environments.all():  # a launch is routed by its iss: this one must own it
            if iss in other.fhir_base_urls:
                displaced.append(other)
                app.repos.environments.put(dataclasses.replace(
                    other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != iss)))
        environment = EnvironmentConfig(
            id=f"bench-{uuid.uuid4().hex[:8]}", kind="test", display_name="Bench Health", fhir_base_urls=(iss,),
            approved=True, epic_client_id=client_id, fallback_organizer_id=organizer)
        environment = seeded_approvals(environment, at=datetime.now(UTC))
        app.repos.environments.put(environment)
        app.users.put(UserMapping(environment.id, "E1001", organizer, datetime.now(UTC)))  # signed in once
        launch_service = app.launch
        followups = app.queues.client(LAUNCH_FOLLOWUP_QUEUE)
        endpoint = NotificationEndpoint(settings["PUBLIC_BASE_URL"]).__enter__()

        def follow_up(csn: str, recorder: OutboundRecorder) -> tuple[int, int, bool]:
            """Handle this visit's ``launch-followup`` message as the trigger does: (store calls, Graph calls,
            subscription active?)."""
            from lib.store.graph_subscriptions import subscription_doc_id
            from lib.visits.launch_followup import FollowUp

            key = f"{environment.id}|{csn}"
            for message in followups.receive_messages(max_messages=32, visibility_timeout=30):
                followup = FollowUp.from_message(message.content)
                if followup.appointment_key != key:
                    continue
                recorder.take()
                recorder.take_store()
                recorder.recording = True
                app.launch_followup.handle(followup)
                recorder.recording = False
                followups.delete_message(message)
                graph_calls = len(recorder.take())
                store_calls = sum(1 for host, _ in recorder.take_store() if host == cosmos)
                sub = app.presence_subscriptions._repo.get(subscription_doc_id(key))
                return store_calls, graph_calls, sub is not None and sub.state == "active"
            return 0, 0, False

        def one_launch(csn: str, recorder: OutboundRecorder) -> tuple[float, list[tuple[str, str, float]]]:
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
            minted = requests.post(f"{epic}/_standin/launch", json={
                "client_id": client_id, "appointment_csn": csn, "context": "provider", "user_id": "E1001",
                "start": start.isoformat().replace("+00:00", "Z"),
                "end": (start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")},
                verify=verify, timeout=10).json()
            cookie = secrets.token_urlsafe(32)
            recorder.take()
            recorder.take_store()
            recorder.recording = True
            t0 = time.perf_counter()
            begun = launch_service.begin("provider", {"iss": iss, "launch": minted["launch"]}, cookie)
            t_begin = time.perf_counter() - t0
            recorder.recording = False
            callback = _browser_authorize(begun, verify)
            recorder.recording = True
            t0 = time.perf_counter()
            launch_service.complete(callback, cookie)
            t_complete = time.perf_counter() - t0
            recorder.recording = False
            return t_begin + t_complete, recorder.take()

        def summary(calls: list[tuple[str, str, float]]) -> list[str]:
            return [m + " /" + _ID.sub(r"/\1/{id}", path.split("/", 1)[1]) for m, path, _ in calls]

        with OutboundRecorder(hosts).installed() as recorder:
            cold_csn = f"9{secrets.randbelow(10**8):08d}"
            _, cold = one_launch(cold_csn, recorder)
            follow_up(cold_csn, recorder)
            new_server, new_wall, new_counts, new_store, new_store_calls, new_queue_calls = [], [], [], [], [], []
            followup_store, followup_graph, subscribed = [], [], 0
            csns = []
            for _ in range(n):
                csn = f"9{secrets.randbelow(10**8):08d}"
                csns.append(csn)
                wall, calls = one_launch(csn, recorder)
                new_wall.append(wall)
                new_server.append(wall - sum(c[2] for c in calls))
                new_counts.append(len(calls))
                store = recorder.take_store()
                new_store.append(sum(seconds for _, seconds in store))
                new_store_calls.append(sum(1 for host, _ in store if host == cosmos))
                new_queue_calls.append(sum(1 for host, _ in store if host != cosmos))
                calls_after, graph_after, active = follow_up(csn, recorder)
                followup_store.append(calls_after)
                followup_graph.append(graph_after)
                subscribed += active
            relaunch_server, relaunch_counts, relaunch_store_calls = [], [], []
            relaunch_calls: list[tuple[str, str, float]] = []
            for csn in csns:
                wall, relaunch_calls = one_launch(csn, recorder)
                relaunch_server.append(wall - sum(c[2] for c in relaunch_calls))
                relaunch_counts.append(len(relaunch_calls))
                relaunch_store_calls.append(sum(1 for host, _ in recorder.take_store() if host == cosmos))
            _, sample_new = one_launch(f"9{secrets.randbelow(10**8):08d}", recorder)
    finally:
        if endpoint is not None:
            endpoint.__exit__(None, None, None)
        if app is not None:
            for other in displaced:
                try:
                    app.repos.environments.put(other)
                except Exception:  # noqa: S110 - best effort: another run may have claimed the iss meanwhile
                    pass
        if jwks_server is not None:
            jwks_server.__exit__(None, None, None)
        handle.stop()

    def stats(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"p50": round(statistics.median(ordered) * 1000, 2),
                "p95": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 2),
                "mean": round(statistics.fmean(ordered) * 1000, 2)}

    return {
        "launches": n,
        "server_ms": {"new_visit": stats(new_server), "relaunch": stats(relaunch_server)},
        "of_which_store_ms_new_visit": stats(new_store),
        "store_calls_per_new_visit": round(statistics.fmean(new_store_calls), 1),
        "queue_calls_per_new_visit": round(statistics.fmean(new_queue_calls), 1),
        "store_calls_per_relaunch": round(statistics.fmean(relaunch_store_calls), 1),
        "followup": {"store_calls_per_new_visit": round(statistics.fmean(followup_store), 1),
                     "graph_calls_per_new_visit": round(statistics.fmean(followup_graph), 1),
                     "subscriptions_active": f"{subscribed}/{n}"},
        "wall_ms_new_visit_with_standins": stats(new_wall),
        "outbound_calls": {
            "cold": {"count": len(cold), "calls": summary(cold)},
            "warm_new_visit": {"count_max": max(new_counts), "calls": summary(sample_new)},
            "warm_relaunch": {"count_max": max(relaunch_counts), "calls": summary(relaunch_calls)},
        },
        "measured": "LaunchService.begin + complete in process (what /api/launch/provider and /api/launch/callback "
                    "run); Epic and Graph/Entra stand-in time subtracted; Cosmos DB and Azurite time included",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI entry point: print the result dict and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="launches per series (default 30)")
    parser.add_argument("--profile", default="test", choices=["test", "demo"])
    args = parser.parse_args(argv)
    result = run(args.n, args.profile)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
