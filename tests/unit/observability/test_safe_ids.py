"""MSH-10 in logs (lib.observability.safe_ids): counters and UUIDs as they are, anything else hashed."""

from __future__ import annotations

import hashlib

import pytest

from lib.observability.safe_ids import log_control_id


@pytest.mark.parametrize("value", ["C1", "7001234-1", "MSG00001", "2010052711090000",
                                   "3f2a9b1c-4d5e-6f70-8192-a3b4c5d6e7f8"])
def test_counters_and_uuids_are_logged_as_they_are(value):
    assert log_control_id(value) == value


@pytest.mark.parametrize("value", ["JOHNSMITH-DOB19800101", "SMITH^JOHN", "Jane Doe 555-0123", "A" * 41 + "1"])
def test_anything_else_is_logged_as_a_short_hash(value):
    assert log_control_id(value) == "#" + hashlib.sha256(value.encode()).hexdigest()[:12]
    assert value not in log_control_id(value)


def test_a_missing_control_id_is_a_dash():
    assert log_control_id(None) == "-" and log_control_id("") == "-"
