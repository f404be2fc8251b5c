"""Processed HL7 messages with their signatures' single use (``lib/store/messages.py``), on both paths:
transactional batches within the message's partition, and one document at a time (a store without batches).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lib.store.links import LinkRepository, link_document
from lib.store.messages import ProcessedMessages, Signature
from local.store_calls import StoreCallCounter

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SECRET = b"partition-secret-for-these-tests!"


@pytest.fixture(params=[True, False], ids=["transactional-batch", "one-document-at-a-time"])
def ledger(app, request) -> ProcessedMessages:
    return ProcessedMessages(app.store, SECRET, transactional_batch=request.param)


@pytest.fixture
def key(ledger) -> str:
    """The partition of a fresh message key."""
    return ledger.partition(f"t-{uuid.uuid4().hex[:10]}|DEMO HOSPITAL|MSG-1")


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


def test_a_duplicate_costs_one_round_trip_with_batches_and_two_without(app):
    key = f"t-{uuid.uuid4().hex[:10]}|DEMO HOSPITAL|MSG-1"
    counts = {}
    for batch in (True, False):
        ledger = ProcessedMessages(app.store, SECRET, transactional_batch=batch)
        message = ledger.partition(f"{key}-{batch}")
        ledger.record(message, signature("jti-one-0001"), b"MSH|ACK-1", code="AA", now=NOW)
        counter = StoreCallCounter(app.settings.cosmos_endpoint)
        with counter.installed():
            assert ledger.check(message, signature("jti-two-0002"))[0] == "duplicate"
        counts[batch] = counter.total
    assert counts == {True: 1, False: 2}


def test_a_partition_is_a_link_id_named_by_the_message_key_and_the_secret(app):
    ledger = ProcessedMessages(app.store, SECRET)
    first = ledger.partition("env-1|DEMO HOSPITAL|MSG-1")
    assert first == ledger.partition("env-1|DEMO HOSPITAL|MSG-1")
    assert len(first) == 22 and all(c.isalnum() or c in "-_" for c in first)
    assert first != ledger.partition("env-1|DEMO HOSPITAL|MSG-2")
    assert first != ProcessedMessages(app.store, b"another-secret-of-32-bytes-long!").partition(
        "env-1|DEMO HOSPITAL|MSG-1")


def test_the_link_of_the_visit_a_message_booked_is_recorded_with_it(app, ledger, key):
    links = LinkRepository(app.store)
    link = link_document(key, "env-1|4455", expires=NOW + timedelta(days=3), now=NOW)
    assert ledger.record(key, signature("jti-link-0001"), b"MSH|ACK-1", code="AA", now=NOW, link=link) is True
    assert links.appointment_key(key, now=NOW) == "env-1|4455"
    assert ledger.check(key, signature("jti-link-0002")) == ("duplicate", b"MSH|ACK-1")


def test_a_record_refused_as_replayed_writes_no_link(app, key):
    ledger = ProcessedMessages(app.store, SECRET)  # atomic: the link goes with the record or not at all
    ledger.record(key, signature("jti-link-0001"), b"MSH|ACK-1", code="AA", now=NOW)
    link = link_document(key, "env-1|4455", expires=NOW + timedelta(days=3), now=NOW)
    assert ledger.record(key, signature("jti-link-0001"), b"MSH|ACK-2", code="AA", now=NOW, link=link) is False
    assert LinkRepository(app.store).appointment_key(key, now=NOW) is None


def test_a_link_is_recorded_only_in_its_own_partition(ledger, key):
    elsewhere = link_document("another-link-id-000000", "env-1|4455", expires=NOW + timedelta(days=3), now=NOW)
    with pytest.raises(ValueError):
        ledger.record(key, None, b"MSH|ACK-1", code="AA", now=NOW, link=elsewhere)
