"""The device test's posted result: every step named, results checked, measures typed; the outcome
written back to the EHR is passed only when nothing failed and something passed."""

from __future__ import annotations

import pytest

from lib.visits.device_test import InvalidDeviceTest, parse_device_test

ALL_PASSED = {"speaker": "passed", "microphone": "passed", "camera": "passed", "connection": "passed",
              "test_call": "passed"}


def test_all_passed_is_device_test_passed_and_measures_are_kept():
    result = parse_device_test({"steps": ALL_PASSED, "measures": {"rttMs": 42, "mbps": 12.5, "relays": "reachable",
                                                                  "callVideo": True, "unknown": "dropped"}})
    assert result.outcome == "device_test_passed"
    assert result.measures == {"rttMs": 42.0, "mbps": 12.5, "relays": "reachable", "callVideo": True}


def test_one_failed_step_fails_the_test():
    steps = {**ALL_PASSED, "camera": "failed"}
    assert parse_device_test({"steps": steps}).outcome == "device_test_failed"


def test_skipped_steps_do_not_fail_it_but_skipping_everything_is_not_a_pass():
    some = {**ALL_PASSED, "speaker": "skipped", "test_call": "skipped"}
    assert parse_device_test({"steps": some}).outcome == "device_test_passed"
    none = dict.fromkeys(ALL_PASSED, "skipped")
    assert parse_device_test({"steps": none}).outcome == "device_test_failed"


@pytest.mark.parametrize(("body", "reason"), [
    ({}, "steps must be an object"),
    ({"steps": {**ALL_PASSED, "camera": "great"}}, "steps.camera must be one of"),
    ({"steps": {k: v for k, v in ALL_PASSED.items() if k != "speaker"}}, "steps.speaker must be one of"),
    ({"steps": ALL_PASSED, "measures": {"rttMs": "fast"}}, "measures.rttMs must be a number"),
    ({"steps": ALL_PASSED, "measures": {"rttMs": -1}}, "measures.rttMs must be a number"),
    ({"steps": ALL_PASSED, "measures": {"relays": "<script>"}}, "measures.relays must be one of"),
    ({"steps": ALL_PASSED, "measures": {"callVideo": "yes"}}, "measures.callVideo must be true or false"),
    ({"steps": ALL_PASSED, "measures": []}, "measures must be an object"),
])
def test_malformed_results_are_refused_with_the_reason(body, reason):
    with pytest.raises(InvalidDeviceTest) as caught:
        parse_device_test(body)
    assert reason in caught.value.reason
