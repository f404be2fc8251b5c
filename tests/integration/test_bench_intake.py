"""``local/bench_intake.py`` runs end to end (a smoke test of the command, never a timing assertion)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_whole_handler_benchmark_reports_only_accepted_messages(service_settings):
    from local import bench_intake

    result = bench_intake.run(seconds=0.3)
    assert result["messages"] >= 1
    assert result["acks"] == {"AA": result["messages"]}
    assert result["intake_msgs_per_s"] > 0 and result["verify_only_msgs_per_s"] > 0
