"""Benchmark: the first HL7 request of a fresh process against a warm one, with and without the warm-up.

Each case is a fresh interpreter (what a new Functions instance is): it imports ``function_app``, runs the
``warmup`` function as the host does when an instance is added (or not, for the comparison), then times the
first ``POST /api/hl7/{environmentId}`` (a new S12, signed, SMS on; the function called in process as the
host calls it) and then ``warm`` more requests of the same kind. Signing is the sender's work and happens
outside the timed part. Reported: ``first_ms``, ``warm_ms_p50``, ``first_over_warm`` (with the warm-up: what
an instance added by scale-out serves), the same without the warm-up, and the warm-up's own time.

Usage: ``python -m local.bench_cold_start [--warm 15]``; ``run()`` returns the dict. Uses the test profile's
services (started when not running). Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r'''
import json, os, statistics, sys, time
from datetime import UTC, datetime, timedelta

started = time.perf_counter()
import azure.functions as func
import function_app  # noqa: F401  (registration only, as the host imports it)
from functions.hl7_intake import hl7_intake
from local.siu_builder import siu
from lib.scheduling.signature import sign_request

warm_up_ms = None
if os.environ["BENCH_WARM_UP"] == "1":
    from functions.warmup import warmup
    t0 = time.perf_counter()
    warmup.build().get_user_function()(None)
    warm_up_ms = (time.perf_counter() - t0) * 1000
env_id, key_pem = os.environ["BENCH_ENV"], open(os.environ["BENCH_KEY"], "rb").read()
handler = hl7_intake.build().get_user_function()
now = datetime.now(UTC)
start = now + timedelta(days=7)

def request(i):
    body = siu("S12", csn=f"C{os.getpid()}{i:05d}", start=start, control_id=f"COLD-{os.getpid()}-{i}", sent=now)
    headers = {"content-type": "application/hl7-v2+er7",
               "X-HL7-Signature": sign_request(body, private_key_pem=key_pem, environment_id=env_id)}
    return func.HttpRequest(method="POST", url=f"http://127.0.0.1/api/hl7/{env_id}", headers=headers, params={},
                            route_params={"environmentId": env_id}, body=body)

times = []
for i in range(int(os.environ["BENCH_WARM"]) + 1):
    req = request(i)
    t0 = time.perf_counter()
    response = handler(req)
    times.append((time.perf_counter() - t0) * 1000)
    assert response.status_code == 200, response.get_body()
print(json.dumps({"first_ms": times[0], "warm_ms": times[1:], "warm_up_ms": warm_up_ms}))
'''


def _case(settings: dict[str, str], env_id: str, key_file: str, *, warm_up: bool, warm: int) -> dict[str, Any]:
    env = {**os.environ, **settings, "BENCH_ENV": env_id, "BENCH_KEY": key_file, "BENCH_WARM": str(warm),
           "BENCH_WARM_UP": "1" if warm_up else "0"}
    out = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    warm_p50 = statistics.median(data["warm_ms"])
    return {"first_ms": round(data["first_ms"], 1), "warm_ms_p50": round(warm_p50, 1),
            "first_over_warm": round(data["first_ms"] / warm_p50, 2),
            "warm_up_ms": round(data["warm_up_ms"], 1) if data["warm_up_ms"] is not None else None}


def run(warm: int = 15, runs: int = 3, profile: str = "test") -> dict[str, Any]:
    """``runs`` fresh processes with the warm-up and ``runs`` without; medians of their figures."""
    from functions.dependencies import Services
    from lib.models import EnvironmentConfig, SmsSettings
    from local import services
    from local.bench_intake import _sender

    handle = services.start(profile, ROOT)
    try:
        settings = services.settings_for(profile, ROOT)
        app = Services(dict(settings))
        app.store.ensure_schema()
        key_pem, cert = _sender()
        env_id = f"cold-{uuid.uuid4().hex[:8]}"
        app.repos.environments.put(EnvironmentConfig(
            id=env_id, kind="test", display_name="Bench Health", fhir_base_urls=(), approved=True,
            epic_client_id="bench", sms=SmsSettings(enabled=True, sender="+18005550100"), hl7_auth="jws",
            hl7_certificates=(cert,)))
        with tempfile.NamedTemporaryFile(suffix=".pem") as key_file:
            key_file.write(key_pem)
            key_file.flush()
            cases = {"with_warm_up": [], "without_warm_up": []}
            for _ in range(runs):  # interleaved, so both see the same machine load
                cases["with_warm_up"].append(_case(settings, env_id, key_file.name, warm_up=True, warm=warm))
                cases["without_warm_up"].append(_case(settings, env_id, key_file.name, warm_up=False, warm=warm))
    finally:
        handle.stop()

    def median_of(name: str, key: str) -> float | None:
        values = [c[key] for c in cases[name] if c[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "first_over_warm": median_of("with_warm_up", "first_over_warm"),
        "first_ms": median_of("with_warm_up", "first_ms"),
        "warm_ms_p50": median_of("with_warm_up", "warm_ms_p50"),
        "warm_up_ms": median_of("with_warm_up", "warm_up_ms"),
        "without_warm_up": {"first_over_warm": median_of("without_warm_up", "first_over_warm"),
                            "first_ms": median_of("without_warm_up", "first_ms"),
                            "warm_ms_p50": median_of("without_warm_up", "warm_ms_p50")},
        "runs": runs,
        "measured": "fresh interpreter per run: import function_app, warmup function (or not), then the first and "
                    f"{warm} warm HL7 S12 requests in process (signing excluded); medians over runs",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI entry point: print the result dict and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.warm, args.runs)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
