"""The ordering of two HL7 messages about one visit (lib.scheduling.ordering): properties over generated IDs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from lib.scheduling.ordering import OrderKey, compare, natural_sort_key, order_key, same_numbering

T = datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC)
ids = st.text(alphabet="0123456789abcdefXYZ-_.", min_size=1, max_size=24)


def k(control: str, seconds: int = 0) -> OrderKey:
    parsed = OrderKey.parse(order_key(T + timedelta(seconds=seconds), control))
    assert parsed is not None
    return parsed


@given(st.integers(0, 10**30), st.integers(1, 10**6), st.sampled_from(["", "MSG", "7001234-", "A0"]),
       st.integers(0, 12))
def test_counters_order_by_value_whatever_their_length_or_padding(n, step, prefix, width):
    older, newer = f"{prefix}{n:0{width}d}", f"{prefix}{n + step:0{width}d}"
    assert same_numbering(older, newer)
    for older_ends, newer_ends in ((False, True), (True, False), (False, False), (True, True)):
        assert compare(k(newer), newer_ends, k(older), older_ends) > 0
        assert compare(k(older), older_ends, k(newer), newer_ends) < 0


@given(ids, ids, st.booleans(), st.booleans())
def test_two_different_messages_are_never_equal_and_the_order_does_not_depend_on_arrival(a, b, a_ends, b_ends):
    if a == b:
        assert compare(k(a), a_ends, k(b), b_ends) == 0
        return
    assert compare(k(a), a_ends, k(b), b_ends) == -compare(k(b), b_ends, k(a), a_ends) != 0


@given(ids, ids, st.booleans(), st.booleans(), st.integers(1, 3600))
def test_msh7_always_decides_first(a, b, a_ends, b_ends, later):
    assert compare(k(a, later), a_ends, k(b), b_ends) > 0


@given(ids, ids)
def test_between_unrelated_ids_the_ending_message_wins_the_tie(a, b):
    if not same_numbering(a, b):
        assert compare(k(a), True, k(b), False) > 0
        assert compare(k(b), False, k(a), True) < 0


@given(st.lists(ids, min_size=3, max_size=3, unique=True))
def test_natural_order_is_a_total_order(three):
    x, y, z = sorted(three, key=natural_sort_key)
    assert natural_sort_key(x) < natural_sort_key(y) < natural_sort_key(z)


def test_natural_sort_key_compares_digit_runs_as_numbers():
    assert sorted(["M100", "M99", "M9", "M0100", "N1"], key=natural_sort_key) == ["M9", "M99", "M100", "M0100", "N1"]
    assert natural_sort_key("9" * 5000) > natural_sort_key("8" * 5000)  # no int() limit on long runs


def test_keys_parse_as_written_and_garbage_is_not_a_key():
    key = order_key(datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC), "a|b")
    assert OrderKey.parse(key) == OrderKey(datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC), "a|b")
    assert OrderKey.parse("") is None
    assert OrderKey.parse("not a key|1") is None


def test_a_key_stored_before_msh7_spans_existed_is_one_instant():
    old = OrderKey.parse("2026-11-29T12:00:05.000000|4410099")
    assert old is not None and old.last == old.instant == T
    spanned = OrderKey.parse(order_key(T, "4410100", latest=T + timedelta(seconds=1)))
    assert spanned is not None and spanned.last == T + timedelta(seconds=1)
    assert compare(spanned, False, old, False) > 0  # a tie: the counter decides, as before
    assert OrderKey.parse("2026-11-29T12:00:05.000000~not-a-time|1") is None
