"""``./dev bench``: the project's benchmarks, written to ``bench-results/latest.json`` and printed.

Numbers, not assertions: tests never time anything. Each section says what it measures.
- ``import``: cold import of ``function_app`` against a bare ``import azure.functions`` (medians, ms).
- ``memory``: peak resident memory (VmHWM, MiB) of the dev runner and of each local service after the
  demo scenario.
- ``hl7``: messages per second of HL7 extraction, a naive ``str.split`` floor, and python-hl7.
- ``intake``: messages per second of the whole HL7 intake handler (signature check, parse, store in the local
  Cosmos-compatible server), and of the signature check alone; store calls of a new S12
  (``intake.store_calls_new_s12``) and of a resend (``intake.store_calls_duplicate``); the handler's time over
  its floor, signature check + parse + one upsert (``intake.handler_over_floor``) (``local/bench_intake.py``).
- ``logging``: per log call and per request cost of the logging and telemetry setup, telemetry off and on
  against no-op / in-memory OpenTelemetry exporters (``local/bench_logging.py``).
- ``launch``: server-side ms per SMART provider launch without the stand-ins' time (p50, p95:
  ``launch.server_ms.new_visit.p95``), Cosmos DB calls per launch into a new visit
  (``launch.store_calls_per_new_visit``) and outbound calls per launch, cold and warm (``local/bench_launch.py``).
- ``reminders``: one reminder-timer run, by default with 200 reminders due and 2,000 stored (``--reminders-due``,
  ``--reminders-stored 10000 100000`` for bigger cases); store calls per due reminder
  (``reminders.store_calls_per_due``, the largest case's), wall time, queries and documents read
  (``local/bench_reminders.py``).
- ``cold_start``: a fresh process's first HL7 request over a warm one, with the ``warmup`` function run at start
  (``cold_start.first_over_warm``) and without it (``local/bench_cold_start.py``).
- ``presence`` (only with ``--only presence``: it runs the dev runner with its queues): participant events per
  second from a Graph notification to the Epic call, and the delay from a roster change to the live status
  JSON and to Epic at that rate (``local/bench_presence.py``).
- ``growth`` (only with ``--only growth``): each kind of work grown 10x (visits stored, messages in flight,
  reminders due, reminders stored) and what each cost did (``local/bench_growth.py``).
- ``reports`` (only with ``--only reports``: it loads hundreds of thousands of visit rows): the visits report
  for a range of 100,000 visits with 100,000 / 300,000 stored (``--reports-stored``); summary, first page, all
  rows as CSV, and one report update; wall time and store calls (``local/bench_reports.py``).

Every store-call count is taken on the wire (``local/store_calls.py``): every request to Cosmos DB, the SDK's
metadata requests included.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib(pid: int) -> float | None:
    """The peak resident set size of a process (``VmHWM`` in ``/proc``), in MiB; ``None`` if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def memory_after_demo() -> dict[str, float | None]:
    """Run the demo scenario quietly and read every process's peak memory before it stops."""
    from local.demo import run_demo

    peaks: dict[str, float | None] = {}

    def read(pids: dict[str, int]) -> None:
        peaks.update({name: peak_rss_mib(pid) for name, pid in sorted(pids.items())})

    run_demo("demo", out=lambda _line: None, after=read)
    return peaks


def main() -> int:
    """CLI entry point."""
    from local import bench_hl7, bench_import, bench_intake, bench_launch, bench_logging

    parser = argparse.ArgumentParser(description="Run the benchmarks")
    parser.add_argument("--only", choices=["import", "memory", "hl7", "intake", "logging", "launch", "reminders",
                                           "cold_start", "growth", "reports", "presence"], action="append")
    parser.add_argument("--reminders-stored", type=int, nargs="+", default=[2_000],
                        help="reminders stored in each case of the reminders section")
    parser.add_argument("--reminders-due", type=int, default=200, help="reminders due in each case")
    parser.add_argument("--reports-stored", type=int, nargs="+", default=[100_000, 300_000],
                        help="visits stored in each case of the reports section (100,000 of them in the range)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget of the throughput benchmarks")
    args = parser.parse_args()
    sections = args.only or ["import", "memory", "hl7", "intake", "logging", "launch", "reminders", "cold_start"]
    results: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in __import__("os").getloadavg()]},
    }
    if "import" in sections:
        results["import"] = bench_import.run()
    if "memory" in sections:
        results["memory_peak_mib"] = memory_after_demo()
    if "hl7" in sections:
        results["hl7"] = bench_hl7.run(seconds=args.seconds)
    if "intake" in sections:
        results["intake"] = bench_intake.run(seconds=args.seconds)
    if "launch" in sections:
        results["launch"] = bench_launch.run()
    if "presence" in sections:
        from local import bench_presence

        results["presence"] = bench_presence.run()
    if "logging" in sections:
        results["logging"] = bench_logging.run()
    if "reminders" in sections:
        from local import bench_reminders

        cases = bench_reminders.run_all(args.reminders_stored, args.reminders_due)
        results["reminders"] = {"store_calls_per_due": cases[-1]["store_calls_per_due"], "cases": cases}
    if "cold_start" in sections:
        from local import bench_cold_start

        results["cold_start"] = bench_cold_start.run()
    if "growth" in sections:
        from local import bench_growth

        results["growth"] = bench_growth.run()
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in __import__("os").getloadavg()]  # type: ignore[index]
    if "reports" in sections:
        from local import bench_reports

        results["reports"] = bench_reports.run_all(args.reports_stored, 100_000, 10_000)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
