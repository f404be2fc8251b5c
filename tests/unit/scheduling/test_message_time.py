"""MSH-7 as the span of time it names (lib.scheduling.message_time) and how two such spans order two messages
(lib.scheduling.ordering): precision and the hour a zone repeats when clocks go back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.hl7.header import read_header
from lib.scheduling.message_time import message_time
from lib.scheduling.ordering import OrderKey, compare, order_key

NOW = datetime(2027, 1, 1, tzinfo=UTC)


def span(msh7: str, zone: str = "America/New_York"):
    header = read_header(f"MSH|^~\\&|A|B|C|D|{msh7}||SIU^S12|1|P|2.5.1\rSCH||1\r".encode())
    return message_time(header, zone, NOW)


def key(msh7: str, control_id: str, zone: str = "America/New_York") -> OrderKey:
    sent = span(msh7, zone)
    parsed = OrderKey.parse(order_key(sent.earliest, control_id, latest=sent.latest))
    assert parsed is not None
    return parsed


def newer(later: tuple[str, str, bool], earlier: tuple[str, str, bool], zone: str = "America/New_York") -> bool:
    """Whether message ``later`` (MSH-7, MSH-10, ends the visit) is applied over the stored ``earlier``."""
    return compare(key(later[0], later[1], zone), later[2], key(earlier[0], earlier[1], zone), earlier[2]) > 0


def us(n: int) -> timedelta:
    return timedelta(microseconds=n)


@pytest.mark.parametrize(("msh7", "earliest", "width"), [
    ("202612061137", datetime(2026, 12, 6, 16, 37, tzinfo=UTC), timedelta(minutes=1)),
    ("20261206113707", datetime(2026, 12, 6, 16, 37, 7, tzinfo=UTC), timedelta(seconds=1)),
    ("20261206113707.1", datetime(2026, 12, 6, 16, 37, 7, 100000, tzinfo=UTC), timedelta(milliseconds=100)),
    ("20261206113707.123", datetime(2026, 12, 6, 16, 37, 7, 123000, tzinfo=UTC), timedelta(milliseconds=1)),
    ("2026120611370712", datetime(2026, 12, 6, 16, 37, 7, 120000, tzinfo=UTC), timedelta(milliseconds=10)),  # Epic
    ("20261206113707.123456", datetime(2026, 12, 6, 16, 37, 7, 123456, tzinfo=UTC), us(1)),
    ("20261206113707-0500", datetime(2026, 12, 6, 16, 37, 7, tzinfo=UTC), timedelta(seconds=1)),
])
def test_msh7_covers_what_its_precision_leaves_open(msh7, earliest, width):
    sent = span(msh7)
    assert (sent.earliest, sent.latest) == (earliest, earliest + width - us(1))


@pytest.mark.parametrize(("booking", "cancel"), [
    ("20261206113707.123", "20261206113707"),      # millisecond booking, cancel to the second
    ("20261206113707.5", "20261206113707"),
    ("2026120611370799", "20261206113707"),        # Epic's 16 digits
    ("20261206113707", "202612061137"),            # second booking, cancel to the minute
    ("20261206113759.999", "202612061137"),
    ("20261206163707.123+0000", "20261206113707"),  # an offset and none, one second
])
def test_a_less_precise_msh7_containing_the_other_is_a_tie_that_the_cancel_wins(booking, cancel):
    assert newer((cancel, "c-guid-b", True), (booking, "a-guid-a", False))
    # and a booking arriving after its cancel stays stale, as for an exact tie
    assert not newer((booking, "a-guid-a", False), (cancel, "c-guid-b", True))


def test_precision_never_hides_a_real_difference():
    assert not newer(("20261206113706", "9", True), ("20261206113707.001", "1", False))  # the second before
    assert newer(("202612061138", "1", False), ("20261206113759.999", "9", True))          # the minute after
    assert newer(("20261206113707.124", "1", False), ("20261206113707.123", "9", True))


REPEATED = [  # (zone, first-pass stamp, its UTC, second-pass stamp 20 minutes later, its UTC)
    ("America/New_York", "20261101015000", datetime(2026, 11, 1, 5, 50, tzinfo=UTC),
     "20261101011000", datetime(2026, 11, 1, 6, 10, tzinfo=UTC)),
    ("Europe/London", "20261025015000", datetime(2026, 10, 25, 0, 50, tzinfo=UTC),
     "20261025011000", datetime(2026, 10, 25, 1, 10, tzinfo=UTC)),
    ("Australia/Lord_Howe", "20260405015500", datetime(2026, 4, 4, 14, 55, tzinfo=UTC),  # 30-minute shift
     "20260405014500", datetime(2026, 4, 4, 15, 15, tzinfo=UTC)),
]


@pytest.mark.parametrize(("zone", "first", "first_utc", "second", "second_utc"), REPEATED)
def test_a_local_msh7_in_the_repeated_hour_covers_both_readings(zone, first, first_utc, second, second_utc):
    shift = timedelta(minutes=30) if zone == "Australia/Lord_Howe" else timedelta(hours=1)
    sent = span(second, zone)
    assert sent.earliest == second_utc - shift  # the first pass's reading
    assert sent.latest == second_utc + timedelta(seconds=1) - us(1)
    assert span(first, zone).earliest == first_utc


@pytest.mark.parametrize(("zone", "first", "first_utc", "second", "second_utc"), REPEATED)
def test_a_cancel_in_the_second_pass_of_the_repeated_hour_is_not_an_hour_older(
    zone, first, first_utc, second, second_utc,
):
    booking, cancel = (first, "1f0c7a", False), (second, "9be21d", True)
    assert newer(cancel, booking, zone)
    assert not newer(booking, cancel, zone)
    # counters still order two messages of the repeated hour
    assert newer((second, "MSG0100", False), (first, "MSG0099", False), zone)


@pytest.mark.parametrize(("zone", "before", "after"), [
    ("America/New_York", "20261101005900", "20261101011000"),   # just before the repeated hour, then in it
    ("America/New_York", "20261101011000", "20261101020500"),   # in it, then after it (02:05 EST)
    ("Europe/London", "20261025005900", "20261025013000"),
    ("Australia/Lord_Howe", "20260405012900", "20260405014000"),
])
def test_messages_around_the_repeated_hour_keep_their_order(zone, before, after):
    assert newer((after, "b", False), (before, "a", True), zone)
    assert not newer((before, "a", True), (after, "b", False), zone)


@pytest.mark.parametrize(("zone", "before", "gap", "after"), [
    ("America/New_York", "20260308015930", "20260308020010", "20260308030500"),  # 02:00-03:00 does not exist
    ("Europe/London", "20260329005930", "20260329013000", "20260329023100"),
    ("Australia/Lord_Howe", "20261004015930", "20261004021000", "20261004024500"),  # 02:00-02:30 does not exist
])
def test_a_time_in_the_spring_forward_gap_is_read_on_the_clock_that_has_not_moved_yet(zone, before, gap, after):
    sent = span(gap, zone)
    assert sent.latest == sent.earliest + timedelta(seconds=1) - us(1)  # one reading, not a span
    assert newer((gap, "b", False), (before, "a", True), zone)
    assert newer((after, "c", False), (gap, "b", True), zone)
