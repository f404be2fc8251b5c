"""Benchmark: grow the work 10x and see which costs grow (``./dev bench --only growth``).

Three dimensions, each grown tenfold while the others stay put; store calls are counted on the wire
(:mod:`local.store_calls`), so "grows" and "stays" are exact, while times are only indicative on a loaded
machine:

- **visits stored** (``intake_by_visits_stored``): the intake's store calls and median time per new S12 with
  ``visits`` and ``10 * visits`` other appointments (and their phone numbers) stored. Expected: the same.
- **messages in flight** (``intake_by_messages_in_flight``): 1 and 10 senders posting new S12s at once.
  Expected: the same store calls per message (the total grows with the messages).
- **reminders due** (``reminders_by_due``) and **reminders stored** (``reminders_by_stored``): one timer run
  with ``due`` and ``10 * due`` due (stored fixed), and with ``stored`` and ``10 * stored`` stored (due
  fixed). Expected: calls per due reminder the same; total calls grow with the due reminders only.

Each case runs against a private Cosmos-compatible server (``bench_reminders.private_cosmos_server``) so
other clients of the shared one do not disturb the counts. Numbers, not assertions.
"""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _intake_case(endpoint: str, *, visits: int, in_flight: int, messages: int) -> dict[str, Any]:
    """``messages`` new S12s through the whole handler, ``in_flight`` at a time, with ``visits`` stored."""
    from functions.dependencies import Services
    from lib.models import Appointment, EnvironmentConfig, SmsSettings
    from lib.scheduling.signature import sign_request
    from lib.store.contacts import phone_document
    from local import services
    from local.bench_intake import _sender
    from local.siu_builder import siu
    from local.store_calls import StoreCallCounter

    settings = services.settings_for("test", ROOT)
    settings.update({"COSMOS_ENDPOINT": endpoint, "COSMOS_DATABASE": f"growth_{uuid.uuid4().hex[:8]}"})
    app = Services(settings)
    app.store.ensure_schema()
    try:
        key_pem, cert = _sender()
        env_id = f"growth-{uuid.uuid4().hex[:6]}"
        environment = EnvironmentConfig(
            id=env_id, kind="test", display_name="Bench Health", fhir_base_urls=(), approved=True,
            epic_client_id="bench", sms=SmsSettings(enabled=True, sender="+18005550100"), hl7_auth="jws",
            hl7_certificates=(cert,))
        app.repos.environments.put(environment)
        now = datetime.now(UTC)
        start = now + timedelta(days=7)
        container = app.store.container("visits")

        def preload(n: int) -> None:
            doc = Appointment(environment_id=env_id, appointment_id=f"V{n:07d}", status="booked", start_utc=start,
                              end_utc=start + timedelta(minutes=30), duration_minutes=30,
                              source_time_zone="America/New_York", schedule_revision=1).to_doc()
            container.upsert_item(doc)
            container.upsert_item(phone_document(doc["id"], env_id, "+12015550150",
                                              delete_after=start + timedelta(hours=3), now=now))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(preload, range(visits)))
        app.store.warm_up()
        signed = []
        for i in range(messages + 1):
            body = siu("S12", csn=f"G{i:07d}", start=start, control_id=f"GROWTH-{i}", sent=now)
            signed.append((body, {"X-HL7-Signature": sign_request(body, private_key_pem=key_pem,
                                                                  environment_id=env_id)}))
        app.intake.handle(env_id, *signed[0])  # warm: environment cache, connections
        counter = StoreCallCounter(endpoint)
        latencies: list[float] = []

        def one(message: tuple[bytes, dict[str, str]]) -> None:
            t0 = time.perf_counter()
            result = app.intake.handle(env_id, *message)
            latencies.append(time.perf_counter() - t0)
            assert result.ack_code == "AA", result.body

        with counter.installed(), ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(one, signed[1:]))
        return {"visits_stored": visits, "in_flight": in_flight, "messages": messages,
                "store_calls_per_message": round(counter.total / messages, 2),
                "ms_p50": round(statistics.median(latencies) * 1000, 1)}
    finally:
        app.store.client.delete_database(app.settings.cosmos_database)


def run(*, visits: int = 300, messages: int = 40, due: int = 100, stored: int = 1_000) -> dict[str, Any]:
    """The four 10x comparisons; see the module docstring."""
    from local import bench_reminders

    with bench_reminders.private_cosmos_server() as endpoint:
        by_visits = [_intake_case(endpoint, visits=v, in_flight=1, messages=messages) for v in (visits, 10 * visits)]
        by_flight = [_intake_case(endpoint, visits=visits, in_flight=f, messages=messages) for f in (1, 10)]
        by_due = [bench_reminders.run(stored, d, endpoint=endpoint) for d in (due, 10 * due)]
        by_stored = [bench_reminders.run(s, due, endpoint=endpoint) for s in (stored, 10 * stored)]

    def reminder_view(case: dict[str, Any]) -> dict[str, Any]:
        return {k: case[k] for k in ("stored", "due", "run_seconds", "store_calls", "store_calls_per_due")}

    return {
        "intake_by_visits_stored": by_visits,
        "intake_by_messages_in_flight": by_flight,
        "reminders_by_due": [reminder_view(c) for c in by_due],
        "reminders_by_stored": [reminder_view(c) for c in by_stored],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
