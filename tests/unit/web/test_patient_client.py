"""The patient's browser client: its pure parts pass node's test runner, and the bundle builds from the
locked packages with esbuild (as ./dev setup and scripts/deploy.sh build it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_call_states_pass_nodes_test_runner():
    result = subprocess.run(["node", "--test", "web/patient/test/"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass 4" in result.stdout


def test_the_built_client_is_an_es_module_whose_sdk_chunk_loads_on_join():
    entry = ROOT / "lib/web/static/build/patient.js"
    assert entry.is_file(), "./dev setup builds the web client"
    chunks = list((ROOT / "lib/web/static/build/chunks").glob("call-*.js"))
    assert len(chunks) == 1 and chunks[0].stat().st_size > 1_000_000  # the Calling SDK
    assert entry.stat().st_size < 100_000  # the page itself stays small on a phone
    assert 'import("./chunks/call-' in entry.read_text()
