"""Benchmark: participant events per second from a Graph notification to the Epic call, and the delay from a
roster change to the live status JSON and to Epic, against the local stand-ins.

Set-up: the app on the dev runner (HTTP and queue triggers, as deployed: the write-back runs from Azurite's
``visit-events`` queue), ``visits`` visits with their meetings and call-event subscriptions (Graph stand-in),
a clinician mapped to an Entra object ID and a patient ACS identity per visit.

Load: one thread per visit scripts ``changes`` roster changes in the Graph stand-in (clinician joins, the
patient joins and leaves repeatedly, the clinician leaves), each one change = one encrypted notification =
one participant event written back. All visits run at once.

Measured per change: **roster -> live JSON**: from the change being scripted to the stand-in's delivery being
answered (our endpoint answers after the roster is stored, so ``/status.json`` shows it from then on; the page
redraws from the JSON every 3 s, so the page adds up to 3 s); **roster -> Epic**: from the change to the
Epic stand-in receiving ``SetExternalConnectionStatus`` (its ``received_at``, ms). **Throughput**: events
written back / (last Epic call - first change). The dev runner polls the queue at most every 2 s (host.json
``maxPollingInterval``), which bounds the Epic delay from below at low load.

Usage: ``python -m local.bench_presence [--visits 10] [--changes 10]``; ``run()`` returns the dict. Numbers,
not assertions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import threading
import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else float("nan")


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50_s": _pct(values, 0.5), "p95_s": _pct(values, 0.95), "max_s": round(max(values), 3),
            "mean_s": round(statistics.fmean(values), 3)}


def run(visits: int = 10, changes: int = 10, profile: str = "test") -> dict[str, Any]:
    """Run the benchmark; returns the figures."""
    from functions import dependencies
    from lib.models import Appointment, EnvironmentConfig
    from lib.store.users import UserMapping
    from local import services
    from local.devrunner import DevRunner

    handle = services.start(profile, ROOT)
    settings = services.settings_for(profile, ROOT)
    saved = dict(os.environ)
    os.environ.update(settings)
    os.environ.pop("DEV_CLOCK_FILE", None)
    dependencies.reset()
    app = dependencies.services()
    app.store.ensure_schema()
    app.queues.client("visit-events").clear_messages()
    spec = importlib.util.spec_from_file_location("function_app_bench_presence", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    public = settings["PUBLIC_BASE_URL"]
    runner = DevRunner(module.app, port=urllib.parse.urlsplit(public).port or 7171, host_json=ROOT / "host.json",
                       timers=False, queues=True)
    runner.start()
    ca = settings["REQUESTS_CA_BUNDLE"]
    epic, graph = settings["EPIC_STANDIN_URL"], settings["GRAPH_STANDIN_URL"]
    try:
        environment_id, client_id, organizer = f"bench-{uuid.uuid4().hex[:6]}", f"vv-{uuid.uuid4().hex[:8]}", \
            str(uuid.uuid4())
        requests.post(f"{epic}/_standin/clients", json={"client_id": client_id, "jwks_url":
                      f"{public}/api/.well-known/jwks.json", "redirect_uris": []}, verify=ca, timeout=30)
        requests.post(f"{graph}/_standin/users", json={"id": organizer, "policy": True}, verify=ca, timeout=30)
        env = EnvironmentConfig(id=environment_id, kind="test", display_name="Bench", approved=True,
                                fhir_base_urls=(settings["EPIC_STANDIN_ISS"],), epic_client_id=client_id,
                                fallback_organizer_id=organizer, provider_signin=False, hl7_auth="none")
        app.repos.environments.put(env)
        clinician = str(uuid.uuid4())
        app.users.put(UserMapping(environment_id, "E1001", clinician, datetime.now(UTC)))
        plans = []
        for _ in range(visits):
            csn = str(uuid.uuid4().int % 10**10)
            start = datetime.now(UTC) + timedelta(minutes=5)
            appointment = app.repos.appointments.create(Appointment(environment_id, csn, "booked", start,
                                                                    start + timedelta(minutes=30), 30, "UTC"))
            appointment = app.meetings.ensure(env, appointment)
            patient = f"8:acs:{uuid.uuid4()}"
            app.participant_identities.register(patient, appointment.key, "patient", expires=start + timedelta(1),
                                                now=datetime.now(UTC))
            steps = [("join", {"user": clinician}, "E1001")]
            while len(steps) < changes - 1:
                steps.append(("join" if len(steps) % 2 else "leave", {"acs": patient}, "patient"))
            steps.append(("leave", {"user": clinician}, "E1001"))
            plans.append((appointment, steps))

        changed: dict[tuple[str, str, int], float] = {}
        live: list[float] = []
        lock = threading.Lock()

        def play(appointment: Any, steps: list[tuple[str, dict[str, str], str]]) -> None:
            seen: dict[str, int] = {}
            for action, who, external_id in steps:
                t0 = time.time()
                answer = requests.post(f"{graph}/_standin/call-events", json={
                    "joinWebUrl": appointment.meeting.join_url,
                    "steps": [{"action": action, "participant": who,
                               "at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}]},
                    verify=ca, timeout=60)
                t1 = time.time()
                assert answer.ok and {d.get("status") for d in answer.json()["deliveries"]} == {202}, answer.text
                with lock:
                    index = seen.get(external_id, 0)
                    seen[external_id] = index + 1
                    changed[(appointment.appointment_id, external_id, index)] = t0
                    live.append(t1 - t0)

        threads = [threading.Thread(target=play, args=plan) for plan in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = visits * changes
        csns = {p[0].appointment_id for p in plans}
        deadline = time.time() + 180
        calls: list[dict[str, Any]] = []
        while time.time() < deadline:
            calls = [c for c in requests.get(f"{epic}/_standin/connection-status", verify=ca, timeout=30).json()
                     if c["ConferenceID"] in csns]
            if len(calls) >= expected:
                break
            time.sleep(0.5)
        to_epic: list[float] = []
        received: list[float] = []
        ordinal: dict[tuple[str, str], int] = {}
        for call in calls:
            key = (call["ConferenceID"], call["ExternalID"])
            index = ordinal.get(key, 0)
            ordinal[key] = index + 1
            at = datetime.fromisoformat(call["received_at"].replace("Z", "+00:00")).timestamp()
            received.append(at)
            if (key[0], key[1], index) in changed:
                to_epic.append(at - changed[(key[0], key[1], index)])
        first = min(changed.values())
        wall = (max(received) - first) if received else float("nan")
        return {
            "visits": visits, "roster_changes": len(changed), "events_written": len(calls),
            "events_expected": expected,
            "events_per_second": round(len(calls) / wall, 2) if received else 0.0,
            "roster_to_live_json": _summary(live),
            "roster_to_live_page_max_s": round(max(live) + 3.0, 3),
            "roster_to_epic": _summary(to_epic) if to_epic else None,
        }
    finally:
        runner.stop(timeout=10)
        dependencies.reset()
        os.environ.clear()
        os.environ.update(saved)
        handle.stop()


def main() -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--visits", type=int, default=10)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--profile", default="test", choices=["test", "demo"])
    args = parser.parse_args()
    print(json.dumps(run(args.visits, args.changes, args.profile), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
