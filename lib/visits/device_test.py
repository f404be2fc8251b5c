"""The device test's result as the patient's page posts it, checked before anything is stored.

Body: ``{"type": "device_test", "attempt": "<page id>", "steps": {"speaker": "passed" | "failed" |
"skipped", "microphone": ..., "camera": ..., "connection": ..., "test_call": ...}, "measures": {...}}``.
Every step must be present. The test passed when no step failed and at least one passed; its EHR event is
``device_test_passed`` or ``device_test_failed`` (the existing write-back codes). Measures are a few
numbers and words (round trip, speed, relay reachability, microphone peak), never anything personal;
unknown keys are dropped, odd values refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

STEPS = ("speaker", "microphone", "camera", "connection", "test_call")
RESULTS = frozenset({"passed", "failed", "skipped"})
#: measure name -> accepted kind: "number" (0..1e6), "bool", or a set of words.
MEASURES: dict[str, Any] = {
    "rttMs": "number", "mbps": "number", "callRttMs": "number", "microphonePeak": "number",
    "relays": {"reachable", "blocked", "not_configured", "unknown"},
    "callConnected": "bool", "callVideo": "bool", "callAudio": "bool",
    "microphoneProblem": {"blocked", "no_camera", "no_microphone", "unsupported"},
    "cameraProblem": {"blocked", "no_camera", "no_microphone", "unsupported"},
    "test_callProblem": {"blocked", "no_camera", "no_microphone", "unsupported"},
}


class InvalidDeviceTest(ValueError):
    """The posted result is not acceptable; ``reason`` is safe to return to the page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DeviceTestResult:
    """Each step's result and the measures kept."""

    steps: dict[str, str]
    measures: dict[str, float | bool | str]

    @property
    def outcome(self) -> Literal["device_test_passed", "device_test_failed"]:
        """The event written back to the EHR."""
        results = self.steps.values()
        passed = "failed" not in results and "passed" in results
        return "device_test_passed" if passed else "device_test_failed"


def _measure(name: str, value: Any) -> float | bool | str | None:
    kind = MEASURES[name]
    if value is None:
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e6:
            raise InvalidDeviceTest(f"measures.{name} must be a number from 0 to 1000000")
        return round(float(value), 3)
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidDeviceTest(f"measures.{name} must be true or false")
        return value
    if value not in kind:
        raise InvalidDeviceTest(f"measures.{name} must be one of {sorted(kind)}")
    return str(value)


def parse_device_test(body: Mapping[str, Any]) -> DeviceTestResult:
    """Check and parse a posted device-test result.

    Raises:
        InvalidDeviceTest: a step is missing or has an unknown result, or a measure is malformed.
    """
    steps = body.get("steps")
    if not isinstance(steps, Mapping):
        raise InvalidDeviceTest("steps must be an object with " + ", ".join(STEPS))
    parsed: dict[str, str] = {}
    for step in STEPS:
        result = steps.get(step)
        if result not in RESULTS:
            raise InvalidDeviceTest(f"steps.{step} must be one of {sorted(RESULTS)}")
        parsed[step] = result
    raw = body.get("measures")
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise InvalidDeviceTest("measures must be an object")
    measures = {name: value for name in MEASURES if (value := _measure(name, raw.get(name))) is not None}
    return DeviceTestResult(steps=parsed, measures=measures)
