"""Benchmark: cold import time of ``function_app`` against a bare ``import azure.functions``.

Each sample is a fresh interpreter (``python -X importtime`` is not used: wall time of the import is what
a cold start pays). Reports medians in milliseconds.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_TIMER = "import time; t=time.perf_counter(); import {module}; print((time.perf_counter()-t)*1000)"


def _sample(module: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _TIMER.format(module=module)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def run(runs: int = 7) -> dict[str, float]:
    """Median cold import times (ms) of ``azure.functions`` and ``function_app``, interleaved, and their ratio."""
    bare, app = [], []
    for _ in range(runs):
        bare.append(_sample("azure.functions"))
        app.append(_sample("function_app"))
    bare_ms, app_ms = statistics.median(bare), statistics.median(app)
    return {"azure_functions_ms": round(bare_ms, 1), "function_app_ms": round(app_ms, 1),
            "ratio": round(app_ms / bare_ms, 2), "runs": runs}


if __name__ == "__main__":
    print(run())
