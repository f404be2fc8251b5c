"""Benchmark: HL7 SIU extraction throughput, ours against a ``str.split`` floor and python-hl7.

Three workloads, in messages per second:

- ``floor``: decode + ``split("\\r")`` + ``split("|")`` of every segment (the naive lower bound),
  measured on every sample in ``tests/fixtures/hl7-samples`` (``floor_all``) and on the SIU samples
  that parse (``floor``, the same set as the next two, used for the ratios);
- ``parse_siu``: ``lib.hl7.siu.parse_siu`` on the SIU samples that parse (all fields, including
  the phonenumbers normalisation of PID-13/40/14);
- ``python_hl7``: ``hl7.parse`` (after normalising line endings) + ``extract_field`` of the same
  fields.

Target (project issue): ``parse_siu`` within 20x of the floor; python-hl7 measured about 300x.
Each run interleaves the workloads; the reported figure is the median of ``runs`` runs.

Usage: ``python -m local.bench_hl7 [--seconds N]``; ``run(seconds)`` returns the dict.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import hl7

from lib.hl7.errors import HL7Rejected, NotHL7
from lib.hl7.siu import parse_siu

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = ROOT / "tests" / "fixtures" / "hl7-samples"
TIME_ZONE = "America/New_York"
REGION = "US"

# python-hl7 paths equivalent to what parse_siu reads: (segment, field, repetition, component)
_PYHL7_PATHS = (
    ("MSH", 9, 1, 1),
    ("MSH", 9, 1, 2),
    ("MSH", 10, 1, 1),
    ("MSH", 11, 1, 1),
    ("MSH", 12, 1, 1),
    ("SCH", 1, 1, 1),
    ("SCH", 2, 1, 1),
    ("SCH", 7, 1, 1),
    ("SCH", 8, 1, 1),
    ("SCH", 9, 1, 1),
    ("SCH", 10, 1, 1),
    ("SCH", 11, 1, 3),
    ("SCH", 11, 1, 4),
    ("SCH", 11, 1, 5),
    ("SCH", 25, 1, 1),
    ("TQ1", 7, 1, 1),
    ("TQ1", 8, 1, 1),
    ("PID", 13, 1, 1),
    ("PID", 13, 2, 1),
    ("PID", 13, 1, 3),
    ("PID", 15, 1, 1),
    ("PV1", 3, 1, 1),
    ("PV1", 7, 1, 1),
    ("PV1", 19, 1, 1),
    ("AIS", 3, 1, 1),
    ("AIL", 3, 1, 1),
    ("AIP", 3, 1, 1),
)


def load_samples() -> tuple[list[bytes], list[bytes]]:
    """(all samples, SIU samples that parse_siu accepts), as bytes."""
    every = [p.read_bytes() for p in sorted(SAMPLES_DIR.glob("*.hl7"))]
    accepted = []
    for raw in every:
        try:
            parse_siu(raw, time_zone=TIME_ZONE, default_region=REGION)
        except (HL7Rejected, NotHL7):
            continue
        accepted.append(raw)
    if not accepted:
        raise SystemExit(f"no parseable SIU samples in {SAMPLES_DIR}")
    return every, accepted


def _floor(messages: list[bytes]) -> None:
    for raw in messages:
        for segment in raw.decode("utf-8", "replace").split("\r"):
            segment.split("|")


def _ours(messages: list[bytes]) -> None:
    for raw in messages:
        parse_siu(raw, time_zone=TIME_ZONE, default_region=REGION)


def _python_hl7(messages: list[bytes]) -> None:
    for raw in messages:
        text = raw.decode("utf-8", "replace").replace("\r\n", "\r").replace("\n", "\r")
        msg = hl7.parse(text)
        for sid, field, rep, comp in _PYHL7_PATHS:
            try:
                msg.extract_field(sid, 1, field, rep, comp)
            except (KeyError, IndexError):
                pass


def _rate(work: Callable[[list[bytes]], None], messages: list[bytes], budget: float) -> float:
    """Messages per second of ``work`` over ``messages``, repeated for about ``budget`` seconds."""
    work(messages)  # warm-up (imports, caches)
    done = 0
    started = time.perf_counter()
    deadline = started + budget
    while True:
        work(messages)
        done += len(messages)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - started)


def run(seconds: float = 5.0, runs: int = 5) -> dict[str, float | int]:
    """Median messages/second of the floor, parse_siu and python-hl7, and their ratios.

    Args:
        seconds: total time budget, shared by ``runs`` runs of four workloads.
        runs: number of interleaved runs; medians are reported.

    Returns:
        ``floor_all_msgs_per_s``, ``floor_msgs_per_s``, ``parse_siu_msgs_per_s``,
        ``python_hl7_msgs_per_s``, ``parse_siu_x_floor`` and ``python_hl7_x_floor`` (how many
        times slower than the floor, same message set), ``python_hl7_x_parse_siu``, ``samples``,
        ``siu_samples``, ``runs``.
    """
    every, accepted = load_samples()
    budget = max(seconds / (runs * 4), 0.05)
    series: dict[str, list[float]] = {"floor_all": [], "floor": [], "parse_siu": [], "python_hl7": []}
    for _ in range(runs):
        series["floor_all"].append(_rate(_floor, every, budget))
        series["floor"].append(_rate(_floor, accepted, budget))
        series["parse_siu"].append(_rate(_ours, accepted, budget))
        series["python_hl7"].append(_rate(_python_hl7, accepted, budget))
    med = {k: statistics.median(v) for k, v in series.items()}
    return {
        "floor_all_msgs_per_s": round(med["floor_all"]),
        "floor_msgs_per_s": round(med["floor"]),
        "parse_siu_msgs_per_s": round(med["parse_siu"]),
        "python_hl7_msgs_per_s": round(med["python_hl7"]),
        "parse_siu_x_floor": round(med["floor"] / med["parse_siu"], 1),
        "python_hl7_x_floor": round(med["floor"] / med["python_hl7"], 1),
        "python_hl7_x_parse_siu": round(med["parse_siu"] / med["python_hl7"], 1),
        "samples": len(every),
        "siu_samples": len(accepted),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    """CLI entry point: print a small table and the result dict; return the dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="total time budget (default 5)")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs, median reported (default 5)")
    args = parser.parse_args(argv)
    result = run(args.seconds, args.runs)
    r = result
    print(f"HL7 SIU extraction, {r['siu_samples']} SIU samples of {r['samples']}, median of {r['runs']} runs")
    rows = (
        ("floor (split, all samples)", r["floor_all_msgs_per_s"], ""),
        ("floor (split, SIU samples)", r["floor_msgs_per_s"], "1x"),
        ("parse_siu", r["parse_siu_msgs_per_s"], f"{r['parse_siu_x_floor']}x floor"),
        ("python-hl7 + extract_field", r["python_hl7_msgs_per_s"], f"{r['python_hl7_x_floor']}x floor"),
    )
    for label, rate, note in rows:
        print(f"  {label:<28} {rate:>10,} msg/s  {note}")
    print(result)
    return result


if __name__ == "__main__":
    main()
