"""Poor-call flag with the CQD audio thresholds (RTT > 500 ms, loss > 0.1, jitter > 30 ms, > 500 packets)."""

from __future__ import annotations

import pytest

from lib.reports.inputs import StreamQuality, duration_ms, streams_from_media
from lib.reports.quality import stream_is_poor, summarize


def audio(**values: object) -> StreamQuality:
    base: dict[str, object] = {"avg_jitter_ms": 10.0, "avg_loss": 0.01, "avg_rtt_ms": 100.0, "packets": 5000}
    base.update(values)
    return StreamQuality("patient", "patient", "audio", "received", **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("values", "poor"), [
    ({}, False),
    ({"avg_jitter_ms": 30.0}, False), ({"avg_jitter_ms": 30.1}, True),
    ({"avg_loss": 0.1}, False), ({"avg_loss": 0.1001}, True),
    ({"avg_rtt_ms": 500.0}, False), ({"avg_rtt_ms": 501.0}, True),
    ({"avg_jitter_ms": 90.0, "packets": 500}, None),  # 500 packets or fewer: unclassified
])
def test_stream_classification_at_the_thresholds(values: dict[str, object], poor: bool | None) -> None:
    assert stream_is_poor(audio(**values)) is poor


def test_summary_per_role_and_media_averages_means_and_worst_maxima() -> None:
    streams = [
        audio(avg_jitter_ms=10.0, max_jitter_ms=40.0, avg_rtt_ms=100.0, max_rtt_ms=300.0),
        StreamQuality("patient", "patient", "audio", "sent", avg_jitter_ms=20.0, max_jitter_ms=80.0, avg_loss=0.03,
                      max_loss=0.2, avg_rtt_ms=120.0, max_rtt_ms=900.0, packets=4000),
        StreamQuality("E1", "clinician", "video", "received", avg_jitter_ms=5.0, avg_loss=0.15, avg_rtt_ms=50.0),
    ]
    summary = summarize(streams)
    assert summary.by_role_media["patient/audio"] == {
        "avg_jitter_ms": 15.0, "max_jitter_ms": 80.0, "avg_loss": 0.02, "max_loss": 0.2,
        "avg_rtt_ms": 110.0, "max_rtt_ms": 900.0,
    }
    assert summary.poor is True and summary.poor_streams == 1  # the clinician's video lost 15 % of its packets
    assert summarize([]).poor is None


def test_graph_media_streams_are_read_in_milliseconds() -> None:
    assert duration_ms("PT0.025S") == 25.0 and duration_ms("PT1M2.5S") == 62500.0 and duration_ms("P1D") is None
    (stream,) = streams_from_media("patient", "patient", "audio", [{
        "streamDirection": "callerToCallee", "averageJitter": "PT0.012S", "maxJitter": "PT0.051S",
        "averagePacketLossRate": 0.02, "maxPacketLossRate": 0.11, "averageRoundTripTime": "PT0.2S",
        "maxRoundTripTime": "PT0.61S", "packetUtilization": 9000,
    }])
    assert (stream.direction, stream.avg_jitter_ms, stream.max_jitter_ms, stream.avg_rtt_ms, stream.max_rtt_ms,
            stream.packets) == ("sent", 12.0, 51.0, 200.0, 610.0, 9000)
    assert stream_is_poor(stream) is False


def test_streams_of_two_segments_have_different_keys_that_survive_a_round_trip() -> None:
    stream = {"streamDirection": "callerToCallee", "averageJitter": "PT0.012S"}
    (first,) = streams_from_media("patient", "patient", "audio", [dict(stream, streamId="s-1")], segment_id="seg-a")
    (second,) = streams_from_media("patient", "patient", "audio", [stream], segment_id="seg-b")
    assert (first.key, second.key) == ("patient|patient|audio|sent|seg-a/s-1", "patient|patient|audio|sent|seg-b/0")
    assert StreamQuality.from_doc(first.to_doc()) == first
    (unplaced,) = streams_from_media("patient", "patient", "audio", [stream])  # stored before segments counted
    assert unplaced.key == "patient|patient|audio|sent"
