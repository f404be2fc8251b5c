"""``local/bench_launch.py`` runs end to end (a smoke test of the command, never a timing assertion)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_launch_benchmark_counts_token_fhir_read_and_graph_call_per_warm_launch(service_settings):
    from local import bench_launch

    result = bench_launch.run(n=2)
    calls = result["outbound_calls"]
    # A launch that creates the meeting also subscribes to its call events (presence, docs/presence.md).
    assert calls["warm_new_visit"]["calls"] == ["POST /oauth2/token", "GET /api/FHIR/R4/Appointment/{id}",
                                                "POST /v1.0/users/{id}/onlineMeetings/createOrGet",
                                                "POST /beta/subscriptions"]
    assert calls["warm_relaunch"]["calls"] == ["POST /oauth2/token", "GET /api/FHIR/R4/Appointment/{id}"]
    assert calls["cold"]["count"] >= calls["warm_new_visit"]["count_max"]
    assert result["server_ms"]["new_visit"]["p50"] > 0
