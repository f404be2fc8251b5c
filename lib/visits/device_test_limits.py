"""How many device tests a join link may record, and which of them reach Epic.

A device test is posted by the join page (``POST /api/join/{token}/events``), so anyone holding the
patient's link (a forwarded text, a second phone) can post as many as they like, each with a new ``attempt``.
Two limits keep that from flooding the hospital's Interconnect or rewriting the patient's status in Epic:

- at most :data:`MAX_DEVICE_TESTS_PER_VISIT` device tests are recorded per visit; more are refused
  (:class:`TooManyDeviceTests`, a 429 problem); a retried POST of one already recorded is not counted again;
- at most :data:`MAX_DEVICE_TEST_WRITEBACKS` of them are written back to Epic, and none while the patient is
  in the meeting (their latest roster status is ``connected``): a device test then would replace
  "connected" in Epic with a test result. Those are recorded for the reports with ``writeback`` ``none`` and
  the reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from lib.store.visit_events import VisitEvent

MAX_DEVICE_TESTS_PER_VISIT = 10
MAX_DEVICE_TEST_WRITEBACKS = 3
DEVICE_TEST_TYPES = frozenset({"device_test_passed", "device_test_failed"})

IN_MEETING = "the patient is in the meeting: Epic keeps showing them connected"
ENOUGH_WRITTEN = f"{MAX_DEVICE_TEST_WRITEBACKS} device tests of this visit already went to Epic"


class TooManyDeviceTests(Exception):
    """The visit already has :data:`MAX_DEVICE_TESTS_PER_VISIT` device tests recorded."""


def writeback_hold(events: Iterable[VisitEvent]) -> str | None:
    """Why a new device test of the visit whose events are ``events`` must not be written back to Epic, or
    ``None`` when it may be.

    Raises:
        TooManyDeviceTests: the visit already has the most device tests it may record.
    """
    tests = [e for e in events if e.type in DEVICE_TEST_TYPES]
    if len(tests) >= MAX_DEVICE_TESTS_PER_VISIT:
        raise TooManyDeviceTests(f"at most {MAX_DEVICE_TESTS_PER_VISIT} device tests are recorded per visit")
    if _patient_in_meeting(events):
        return IN_MEETING
    if sum(1 for e in tests if e.writeback != "none") >= MAX_DEVICE_TEST_WRITEBACKS:
        return ENOUGH_WRITTEN
    return None


def _patient_in_meeting(events: Iterable[VisitEvent]) -> bool:
    """The patient's latest meeting status (from the roster or the call record, not a superseded one) is
    ``connected``."""
    statuses = [e for e in events if e.role == "patient" and e.type in ("connected", "disconnected")
                and e.source != "click" and e.writeback != "superseded"]
    return bool(statuses) and max(statuses, key=lambda e: e.at_utc).type == "connected"
