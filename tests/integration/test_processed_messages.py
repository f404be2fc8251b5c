"""Processed HL7 messages with their signatures' single use (``lib/store/messages.py``), on both paths:
transactional batches within the message's partition, and one document at a time (a store without batches).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lib.store.messages import ProcessedMessages, Signature
from local.store_calls import StoreCallCounter

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(params=[True, False], ids=["transactional-batch", "one-document-at-a-time"])
def ledger(app, request) -> ProcessedMessages:
    return ProcessedMessages(app.store, transactional_batch=request.param)


@pytest.fixture
def key() -> str:
    return f"t-{uuid.uuid4().hex[:10]}|DEMO HOSPITAL|MSG-1"


def signature(jti: str) -> Signature:
    return Signature(jti=jti, expires=NOW + timedelta(minutes=6), now=NOW)


def test_a_new_message_is_new_and_its_check_claims_no_signature(ledger, key):
    assert ledger.check(key, signature("jti-one-0001")) == ("new", None)
    assert ledger.check(key, signature("jti-one-0001")) == ("new", None)


def test_a_resend_with_a_new_signature_gets_the_recorded_ack_and_uses_that_signature(ledger, key):
    assert ledger.record(key, signature("jti-one-0001"), b"MSH|ACK-1", code="AA", now=NOW) is True
    assert ledger.check(key, signature("jti-two-0002")) == ("duplicate", b"MSH|ACK-1")
    assert ledger.check(key, signature("jti-two-0002")) == ("replayed", None)


def test_the_signature_the_message_was_recorded_with_is_refused_as_replayed(ledger, key):
    ledger.record(key, signature("jti-one-0001"), b"MSH|ACK-1", code="AA", now=NOW)
    assert ledger.check(key, signature("jti-one-0001")) == ("replayed", None)


def test_a_second_record_with_the_same_signature_records_nothing(ledger, key):
    assert ledger.record(key, signature("jti-one-0001"), b"MSH|ACK-1", code="AA", now=NOW) is True
    assert ledger.record(key, signature("jti-one-0001"), b"MSH|ACK-2", code="AA", now=NOW) is False
    assert ledger.check(key, signature("jti-three-03")) == ("duplicate", b"MSH|ACK-1")


def test_an_unsigned_message_is_recorded_and_found(ledger, key):
    assert ledger.check(key, None) == ("new", None)
    assert ledger.record(key, None, b"MSH|ACK-1", code="AA", now=NOW) is True
    assert ledger.check(key, None) == ("duplicate", b"MSH|ACK-1")


def test_a_duplicate_costs_one_round_trip_with_batches_and_two_without(app, key):
    counts = {}
    for batch in (True, False):
        ledger = ProcessedMessages(app.store, transactional_batch=batch)
        message = f"{key}-{batch}"
        ledger.record(message, signature("jti-one-0001"), b"MSH|ACK-1", code="AA", now=NOW)
        counter = StoreCallCounter(app.settings.cosmos_endpoint)
        with counter.installed():
            assert ledger.check(message, signature("jti-two-0002"))[0] == "duplicate"
        counts[batch] = counter.total
    assert counts == {True: 1, False: 2}
