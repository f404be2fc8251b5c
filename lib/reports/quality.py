"""Call quality of a visit from the call record's media streams, and the poor-call flag.

Thresholds (a stream is *poor* when any one is exceeded):

- **Audio**, Microsoft Teams Call Quality Dashboard "Stream Classification in Call Quality Dashboard (CQD)",
  Audio Classifier (learn.microsoft.com/microsoftteams/stream-classification-in-call-quality-dashboard):
  average round trip > 500 ms, average packet loss rate > 0.1, average jitter > 30 ms; only streams with more
  than 500 packets are classified (fewer: *unclassified*, never poor).
- **Video**: the same page's video classifier works on frame-level metrics the call record does not always
  carry; we use the Lync 2013 / Skype for Business QoE "ClassifiedPoorCall" video condition on the packet loss
  rate (> 0.1, "What is the basis for classifying a call as poor in Lync 2013 QoE?", Microsoft TechNet blog,
  2013) together with CQD's round-trip and jitter limits.

A visit is a *poor call* when any classified stream of any participant is poor; ``None`` when the visit has no
classified stream (no call record yet, or too short to classify).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lib.reports.inputs import StreamQuality

MAX_RTT_MS = 500.0
MAX_LOSS = 0.1
MAX_JITTER_MS = 30.0
MIN_PACKETS = 500

ROLES = ("clinician", "patient", "interpreter", "other")
MEDIA = ("audio", "video")
METRICS = ("avg_jitter_ms", "max_jitter_ms", "avg_loss", "max_loss", "avg_rtt_ms", "max_rtt_ms")


def stream_is_poor(stream: StreamQuality) -> bool | None:
    """``True`` poor, ``False`` good, ``None`` unclassified (500 packets or fewer, or no metric at all)."""
    if stream.packets is not None and stream.packets <= MIN_PACKETS:
        return None
    values = (stream.avg_rtt_ms, stream.avg_loss, stream.avg_jitter_ms)
    if all(v is None for v in values):
        return None
    return ((stream.avg_rtt_ms or 0) > MAX_RTT_MS or (stream.avg_loss or 0) > MAX_LOSS
            or (stream.avg_jitter_ms or 0) > MAX_JITTER_MS)


@dataclass(frozen=True)
class QualitySummary:
    """Per (role, media): mean of the streams' averages and the worst of their maxima; the poor flag."""

    by_role_media: dict[str, dict[str, float | None]]
    poor: bool | None
    poor_streams: int

    def to_doc(self) -> dict[str, Any]:
        """Document form (``{"clinician/audio": {...}}``)."""
        return {"by": self.by_role_media, "poor": self.poor, "poor_streams": self.poor_streams}


def summarize(streams: Iterable[StreamQuality]) -> QualitySummary:
    """Summarize a visit's streams (see the module docstring for the thresholds)."""
    groups: dict[str, list[StreamQuality]] = {}
    verdicts: list[bool] = []
    for stream in streams:
        groups.setdefault(f"{stream.role}/{stream.media}", []).append(stream)
        verdict = stream_is_poor(stream)
        if verdict is not None:
            verdicts.append(verdict)
    by: dict[str, dict[str, float | None]] = {}
    for name, members in sorted(groups.items()):
        by[name] = {
            "avg_jitter_ms": _mean(s.avg_jitter_ms for s in members),
            "max_jitter_ms": _max(s.max_jitter_ms if s.max_jitter_ms is not None else s.avg_jitter_ms for s in members),
            "avg_loss": _mean(s.avg_loss for s in members),
            "max_loss": _max(s.max_loss if s.max_loss is not None else s.avg_loss for s in members),
            "avg_rtt_ms": _mean(s.avg_rtt_ms for s in members),
            "max_rtt_ms": _max(s.max_rtt_ms if s.max_rtt_ms is not None else s.avg_rtt_ms for s in members),
        }
    poor = any(verdicts) if verdicts else None
    return QualitySummary(by, poor, sum(verdicts))


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
