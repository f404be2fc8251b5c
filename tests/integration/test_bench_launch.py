"""``local/bench_launch.py`` runs end to end (a smoke test of the command and its round-trip counts, never a
timing assertion)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_launch_benchmark_counts_token_fhir_read_and_graph_call_per_warm_launch(service_settings):
    from local import bench_launch

    result = bench_launch.run(n=2)
    calls = result["outbound_calls"]
    # The call-events subscription of a new meeting is the follow-up's (launch-followup queue), after the redirect.
    assert calls["warm_new_visit"]["calls"] == ["POST /oauth2/token", "GET /api/FHIR/R4/Appointment/{id}",
                                                "POST /v1.0/users/{id}/onlineMeetings/createOrGet"]
    assert calls["warm_relaunch"]["calls"] == ["POST /oauth2/token", "GET /api/FHIR/R4/Appointment/{id}"]
    assert calls["cold"]["count"] >= calls["warm_new_visit"]["count_max"]
    assert result["server_ms"]["new_visit"]["p50"] > 0
    # Issue 15: at most 5 Cosmos DB calls for a new visit (state create + take, appointment read, organizer
    # claim, meeting) and one queue send; a relaunch: state create + take, appointment read, click.
    assert result["store_calls_per_new_visit"] == 5.0
    assert result["queue_calls_per_new_visit"] == 1.0
    assert result["store_calls_per_relaunch"] == 4.0
    # The follow-up really subscribes (Graph's validation request answered by the app's notifications route).
    assert result["followup"]["subscriptions_active"] == "2/2"
    assert result["followup"]["graph_calls_per_new_visit"] == 1.0
