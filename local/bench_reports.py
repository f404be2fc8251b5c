"""Benchmark: the visits report for a range holding ``in_range`` visits, with ``stored`` visits stored in all.

The claim to check: a report's cost grows with the range (days, and for rows the visits in it), not with the
visits stored outside it. Each case gets a private Cosmos-compatible server (``local.bench_reminders``), filled
directly with the day documents the recorder writes (parts of up to 400 visit rows and their text rows, each with
its totals per department, and one totals document per day; the same functions as ``lib.reports.recorder``):
``stored`` visits over ``stored / per_day`` days, two texts per visit, of which the ``in_range / per_day`` days
in the middle are the range. Then, through ``lib.reports.service.ReportService`` and the real ``azure-cosmos``
SDK, with every store call counted on the wire (``local.store_calls``):

- ``summary``: the aggregates of the range (what the page's figures and charts show);
- ``first_page``: the first 200 visit rows (the page's table);
- ``all_rows_csv``: every visit row of the range encoded as the CSV export.

And the write side: one ``report-updates`` message applied by ``ReportRecorder`` to a visit of a full day.

Usage: ``python -m local.bench_reports [--stored 100000 300000] [--in-range 100000] [--per-day 10000]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

ENV = "bench-reports"
FIRST_DAY = date(2026, 1, 1)
_OUTCOME_MIX = ("completed",) * 8 + ("patient_never_joined", "cancelled", "no_show", "clinician_never_joined")


def _visit_row(n: int, day: date, rng: random.Random) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One realistic visit row (and its two text rows), as ``lib.reports.recorder`` stores them."""
    start = datetime(day.year, day.month, day.day, 13, tzinfo=UTC) + timedelta(minutes=rng.randrange(0, 600))
    kind = rng.choice(_OUTCOME_MIX)
    together = kind == "completed"
    metrics = {"avg_jitter_ms": 12.5, "max_jitter_ms": 48.0, "avg_loss": 0.012, "max_loss": 0.09,
               "avg_rtt_ms": 85.0, "max_rtt_ms": 240.0}
    row: dict[str, Any] = {
        "appointment_id": f"{900000000 + n}", "environment_id": ENV, "department": f"10{rng.randrange(20):03d}",
        "status": {"cancelled": "cancelled", "no_show": "noshow"}.get(kind, "booked"),
        "scheduled_start_utc": start.isoformat(), "scheduled_end_utc": (start + timedelta(minutes=30)).isoformat(),
        "organizer": f"E{rng.randrange(1000, 9999)}", "time_zone": "UTC", "day": day.isoformat(),
        "start_utc": (start + timedelta(minutes=3)).isoformat() if together else None,
        "end_utc": (start + timedelta(minutes=24)).isoformat() if together else None,
        "duration_seconds": 1260 if together else None, "peak_participants": 2 if together else 1,
        "lobby_wait_seconds": rng.randrange(0, 1200) if together else None,
        "clinician_joined": kind != "clinician_never_joined", "patient_joined": kind != "patient_never_joined",
        "clinicians": [f"E{rng.randrange(1000, 9999)}"], "start_local": None, "texts_sent": 2, "texts_delivered": 2,
        "quality": {"by": dict.fromkeys(("clinician/audio", "clinician/video", "patient/audio", "patient/video"),
                                        metrics),
                    "poor": rng.random() < 0.1 if together else None, "poor_streams": 0},
        "version": 3,
    }
    texts = [{
        "id": f"{ENV}|{row['appointment_id']}|{kind_}|0", "appointment_id": row["appointment_id"],
        "environment_id": ENV, "kind": kind_, "revision": 0, "language": "en", "segments": 1,
        "state": "delivered" if rng.random() < 0.95 else "failed", "reason": None, "quiet_hours_moved": False,
        "due_utc": (start - timedelta(hours=h)).isoformat(), "sent_utc": (start - timedelta(hours=h)).isoformat(),
        "delivery_utc": (start - timedelta(hours=h, minutes=-1)).isoformat(), "recipient": "••42",
        "day": day.isoformat(), "department": row["department"], "version": 3,
    } for kind_, h in (("booked", 0), ("reminder-60", 1))]
    return row, texts


def _load(store: Any, days: list[date], per_day: int, *, workers: int = 4) -> float:
    from lib.reports.summary import totals_by_department
    from lib.store.reports import PART_VISITS, part_id, totals_id

    started = time.perf_counter()
    container = store.container("report_days")

    def one_day(index_day: tuple[int, date]) -> None:
        index, day = index_day
        rng = random.Random(index)
        rows = [_visit_row(index * per_day + n, day, rng) for n in range(per_day)]
        parts: dict[str, Any] = {}
        for number in range(0, len(rows), PART_VISITS):
            chunk = rows[number:number + PART_VISITS]
            visits = {r["appointment_id"]: r for r, _ in chunk}
            texts = {t["id"]: t for _, ts in chunk for t in ts}
            doc = {"id": part_id(ENV, day.isoformat(), number // PART_VISITS), "environmentId": ENV,
                   "day": day.isoformat(), "seq": 1, "visits": visits, "texts": texts,
                   "totals": totals_by_department(visits.values(), texts.values())}
            container.upsert_item(doc)
            parts[f"p{number // PART_VISITS}"] = {"seq": 1, "totals": doc["totals"], "visits": len(visits),
                                                  "texts": len(texts)}
        container.upsert_item({"id": totals_id(ENV, day.isoformat()), "environmentId": ENV, "day": day.isoformat(),
                               "parts": parts})

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one_day, enumerate(days)))
    return time.perf_counter() - started


def run(stored: int, in_range: int, per_day: int, *, endpoint: str | None = None) -> dict[str, Any]:
    """One case: load, then time the summary, the first page and all rows of the range, and one update."""
    from lib.clock import FixedClock
    from lib.models import Appointment, EnvironmentConfig
    from lib.reports.csv_export import visits_csv
    from lib.reports.inputs import ParticipantEvent, ReportUpdate
    from lib.reports.recorder import ReportRecorder
    from lib.reports.service import ReportService
    from lib.store.appointments import AppointmentRepository
    from lib.store.cosmos import CosmosStore
    from lib.store.environments import EnvironmentRepository
    from lib.store.outbox import OutboxRepository
    from lib.store.reports import ReportSheetRepository, ReportVisitRepository
    from local.bench_reminders import _settings
    from local.store_calls import StoreCallCounter

    database = f"bench_reports_{stored}_{uuid.uuid4().hex[:6]}"
    settings = _settings(database, endpoint)
    store = CosmosStore.from_settings(settings, read_timeout=600)
    store.ensure_schema()
    try:
        days = [FIRST_DAY + timedelta(days=n) for n in range(stored // per_day)]
        range_days = in_range // per_day
        offset = (len(days) - range_days) // 2
        first, last = days[offset], days[offset + range_days - 1]
        environment = EnvironmentConfig(id=ENV, kind="production", display_name="Bench", fhir_base_urls=(),
                                        approved=True, epic_client_id="bench", time_zone="UTC")
        store.container("environments").upsert_item(environment.to_doc())
        load_seconds = _load(store, days, per_day)
        store.warm_up()
        counter = StoreCallCounter(settings.cosmos_endpoint)
        clock = FixedClock(datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=30))
        service = ReportService(sheets=ReportSheetRepository(store), environments=EnvironmentRepository(store),
                                clock=clock)
        results: dict[str, Any] = {"stored_visits": stored, "visits_in_range": in_range, "per_day": per_day,
                                   "range": [first.isoformat(), last.isoformat()], "days_stored": len(days),
                                   "load_seconds": round(load_seconds, 1)}

        def measure(name: str, action: Any) -> Any:
            counter.reset()
            with counter.installed():
                started = time.perf_counter()
                value = action()
                seconds = time.perf_counter() - started
            results[name] = {"seconds": round(seconds, 3), "store_calls": counter.snapshot()}
            return value

        summary = measure("summary", lambda: service.summary(first, last, environment_id=ENV))
        results["summary"]["visits_counted"] = summary.body["visits"]["total"]
        page = measure("first_page", lambda: service.rows(first, last, environment_id=ENV, limit=200, texts=False))
        results["first_page"]["rows"] = len(page.visits)
        csv_bytes = measure("all_rows_csv", lambda: visits_csv(
            service.rows(first, last, environment_id=ENV, texts=False).visits))
        results["all_rows_csv"]["megabytes"] = round(len(csv_bytes) / 1e6, 1)
        results["all_rows_csv"]["rows"] = csv_bytes.count(b"\r\n") - 1
        # the write side: one roster event for a new visit on a full day (placement reads the day's parts)
        appointments = AppointmentRepository(store)
        start = datetime(first.year, first.month, first.day, 15, tzinfo=UTC)
        appointments.create(Appointment(environment_id=ENV, appointment_id="BENCH1", status="booked",
                                        start_utc=start, end_utc=start + timedelta(minutes=30), duration_minutes=30,
                                        source_time_zone="UTC", department="10001", provider_ehr_id="E1"))
        recorder = ReportRecorder(visits=ReportVisitRepository(store), sheets=ReportSheetRepository(store),
                                  appointments=appointments, outbox=OutboxRepository(store),
                                  environments=EnvironmentRepository(store), clock=clock)
        event = ParticipantEvent("bench-1", "joined", "clinician", "E1", start)
        measure("update_new_visit", lambda: recorder.apply(ReportUpdate("presence", f"{ENV}|BENCH1", event=event)))
        event = ParticipantEvent("bench-2", "joined", "patient", "patient", start + timedelta(minutes=1))
        measure("update_placed_visit", lambda: recorder.apply(ReportUpdate("presence", f"{ENV}|BENCH1",
                                                                           event=event)))
        return results
    finally:
        store.client.delete_database(database)  # the bench owns this database


def run_all(stored: list[int], in_range: int, per_day: int, *, progress: Any = None) -> list[dict[str, Any]]:
    """One case per ``stored`` value, each on its own private server (so earlier cases do not weigh on it)."""
    from local.bench_reminders import private_cosmos_server

    results = []
    for n in stored:
        with private_cosmos_server() as endpoint:
            results.append(run(n, in_range, per_day, endpoint=endpoint))
        if progress is not None:
            progress(results[-1])
    return results


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints each case as it completes, then all of them."""
    parser = argparse.ArgumentParser(description="Report cost against visits stored")
    parser.add_argument("--stored", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--in-range", type=int, default=100_000)
    parser.add_argument("--per-day", type=int, default=10_000)
    args = parser.parse_args(argv)
    results = run_all(args.stored, args.in_range, args.per_day,
                      progress=lambda case: print(json.dumps(case), file=sys.stderr, flush=True))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
