"""Benchmark: one reminder-timer run against the local Cosmos-compatible server, with N reminders stored.

The issue's claim to check: the due-work cost of a timer run grows with the reminders *due*, not with the
reminders *stored*. Each case gets its own database on the test profile's Cosmos-compatible server, filled
directly (concurrent upserts through the real ``azure-cosmos`` SDK) with:

- ``due`` pending reminders due now, each in its visit's partition with its appointment and phone number;
- ``stored - due`` pending reminders due later (spread over 30 days), never returned by the run's query.

Then one ``Dispatcher.run_due()`` runs (steady state: the timer runs every minute) with an in-process SMS
sender that accepts every text at once, so the figures are our cost, not ACS's. Reported per case: load time
(separately), the run's wall time, the due-item queries and the documents they returned (``RunReport``), and
every store call the run made, counted on the wire
(:mod:`local.store_calls`: point reads, queries (a ReadMany is one query per partition range), writes,
metadata), with ``store_calls_per_due``. The instance is warm, as every minute's run is: the containers'
properties were read once before (``CosmosStore.warm_up``). The database is deleted afterwards.

Usage: ``python -m local.bench_reminders [--stored 10000 100000] [--due 1000]``; ``run(stored, due)`` returns
one case's dict. Needs the local services (``./dev services start --profile test``, or it starts them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
SENDER = "+18005550100"


class _AcceptAll:
    """An SMS sender that accepts every text at once (no network)."""

    def send(self, *, sender: str, to: str, message: str, tag: str | None = None, repeat: Any = None) -> Any:
        from lib.sms.sender import SendResult

        return SendResult("sent", message_id=f"Outgoing_bench_{uuid.uuid4().hex}")


def _settings(database: str, endpoint: str | None) -> Any:
    from lib.settings import load_settings
    from local import services

    env = services.settings_for("test", ROOT)
    env["COSMOS_DATABASE"] = database
    if endpoint:
        env["COSMOS_ENDPOINT"] = endpoint
    return load_settings(env)


@contextlib.contextmanager
def private_cosmos_server() -> Iterator[str]:
    """A Cosmos-compatible server of its own on a free loopback port (so the figures do not include other
    clients of the shared test server); yields its endpoint and stops it (by its process ID) afterwards."""
    import shutil
    import socket
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [shutil.which("node") or "node", str(ROOT / "local" / "cosmosdb_server.js"), "-p", str(port),
         "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"https://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _load(store: Any, stored: int, due: int, environment_id: str, *, workers: int = 8) -> float:
    """Fill the database; returns the seconds it took."""
    from lib.models import Appointment, EnvironmentConfig, OutboxItem, SmsSettings, hour_bucket
    from lib.sms.planner import outbox_id
    from lib.store.contacts import phone_document

    started = time.perf_counter()
    env = EnvironmentConfig(
        id=environment_id, kind="test", display_name="Contoso Health", fhir_base_urls=(), approved=True,
        epic_client_id="bench", sms=SmsSettings(enabled=True, sender=SENDER, rate_per_minute=1_000_000,
                                                 # 100 fictional numbers serve every due text: no cap here
                                                 per_number_cap=0),
    )
    store.container("environments").upsert_item(env.to_doc())
    visits = store.container("visits")  # appointments, phone numbers and texts: one partition per visit
    start = NOW + timedelta(hours=6)

    def due_docs(n: int) -> list[tuple[Any, dict[str, Any]]]:
        appointment = Appointment(
            environment_id=environment_id, appointment_id=f"B{n:07d}", status="booked", start_utc=start,
            end_utc=start + timedelta(minutes=30), duration_minutes=30, source_time_zone="America/New_York",
            schedule_revision=1, link_id=secrets.token_urlsafe(16),
        )
        item = OutboxItem(
            id=outbox_id(appointment.key, "reminder-360", 1), bucket=hour_bucket(NOW),
            appointment_key=appointment.key, environment_id=environment_id, kind="reminder", revision=1,
            due_utc=NOW - timedelta(minutes=n % 30),
        )
        contact = phone_document(appointment.key, environment_id, f"+1201555{n % 100:04d}",
                                 delete_after=start + timedelta(hours=3), now=NOW)
        return [(visits, appointment.to_doc()), (visits, contact), (visits, item.to_doc())]

    def future_doc(n: int) -> tuple[Any, dict[str, Any]]:
        due_at = NOW + timedelta(hours=1 + n % 720, minutes=n % 60)
        key = f"{environment_id}|F{n:07d}"
        item = OutboxItem(
            id=outbox_id(key, "reminder-1440", 1), bucket=hour_bucket(due_at), appointment_key=key,
            environment_id=environment_id, kind="reminder", revision=1, due_utc=due_at,
        )
        return visits, item.to_doc()

    jobs: list[tuple[Any, dict[str, Any]]] = [d for n in range(due) for d in due_docs(n)]
    jobs += [future_doc(n) for n in range(stored - due)]
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda job: job[0].upsert_item(job[1]), jobs, chunksize=64):
            pass
    return time.perf_counter() - started


def run(stored: int, due: int, *, endpoint: str | None = None) -> dict[str, Any]:
    """Load ``stored`` reminders (``due`` of them due now), run the timer once, report the figures.

    ``endpoint``: a Cosmos-compatible server (default: the test profile's).
    """
    from lib.clock import FixedClock
    from lib.sms.dispatcher import Dispatcher
    from lib.sms.links import JoinLinks
    from lib.store.appointments import AppointmentRepository
    from lib.store.contacts import ContactRepository
    from lib.store.cosmos import CosmosStore
    from lib.store.environments import EnvironmentRepository
    from lib.store.opt_outs import OptOutRepository, opt_out_key
    from lib.store.outbox import OutboxRepository
    from lib.store.sender_rate import SenderRateLimiter
    from lib.store.sms_messages import SmsMessageRepository
    from local.store_calls import StoreCallCounter

    database = f"bench_reminders_{stored}_{uuid.uuid4().hex[:6]}"
    settings = _settings(database, endpoint)
    # The local server filters every document of a container for a cross-partition query (real Cosmos DB
    # answers it from each partition's index): at 100k stored the due query outlasts the SDK's default timeout.
    store = CosmosStore.from_settings(settings, read_timeout=1800)
    store.ensure_schema()
    try:
        environment_id = f"bench-{stored}"
        load_seconds = _load(store, stored, due, environment_id)
        store.warm_up()
        dispatcher = Dispatcher(
            outbox=OutboxRepository(store), appointments=AppointmentRepository(store),
            contacts=ContactRepository(store), environments=EnvironmentRepository(store),
            sender=_AcceptAll(), links=JoinLinks(settings.link_signing_key),
            public_base_url=settings.public_base_url, clock=FixedClock(NOW),
            opt_outs=OptOutRepository(store, opt_out_key(settings.link_signing_key)),
            messages=SmsMessageRepository(store), rate_limiter=SenderRateLimiter(store),
        )
        counter = StoreCallCounter(settings.cosmos_endpoint)
        with counter.installed():
            started = time.perf_counter()
            report = dispatcher.run_due()
            wall = time.perf_counter() - started
        return {
            "stored": stored,
            "due": due,
            "load_seconds": round(load_seconds, 1),
            "run_seconds": round(wall, 2),
            "outcomes": report.outcomes,
            "due_queries": report.queries,
            "due_documents_read": report.documents_read,
            "store_calls": counter.snapshot(),
            "store_calls_per_due": round(counter.total / max(1, due), 2),
        }
    finally:
        store.client.delete_database(database)  # the bench owns this database


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints one JSON object per case, then the comparison."""
    parser = argparse.ArgumentParser(description="Reminder timer cost against reminders stored")
    parser.add_argument("--stored", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--shared-server", action="store_true", help="use the test profile's server")
    args = parser.parse_args(argv)
    results = run_all(args.stored, args.due, private=not args.shared_server,
                      progress=lambda case: print(json.dumps(case), file=sys.stderr, flush=True))
    print(json.dumps(results, indent=2))
    return 0


def run_all(
    stored: list[int], due: int, *, private: bool = True, progress: Any = None
) -> list[dict[str, Any]]:
    """One case per ``stored`` value, each in a fresh database (on a private server by default);
    ``progress(case)`` is called as each case completes."""

    def cases(endpoint: str | None) -> list[dict[str, Any]]:
        results = []
        for n in stored:
            results.append(run(n, due, endpoint=endpoint))
            if progress is not None:
                progress(results[-1])
        return results

    if private:
        with private_cosmos_server() as endpoint:
            return cases(endpoint)
    from local import services

    handle = services.start("test", ROOT, only=["cosmos"])
    try:
        return cases(None)
    finally:
        handle.stop()


if __name__ == "__main__":
    sys.exit(main())
