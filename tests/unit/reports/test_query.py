"""The report query string: defaults, limits and the message for each bad value."""

from __future__ import annotations

from datetime import date

import pytest

from lib.reports.query import parse_query
from lib.reports.reader import RangeError

TODAY = date(2026, 3, 10)


def test_defaults_to_the_last_seven_days_and_a_page_of_200() -> None:
    query = parse_query({}, today=TODAY)
    assert (query.first, query.last, query.offset, query.limit) == (date(2026, 3, 4), TODAY, 0, 200)
    assert query.params() == {"from": "2026-03-04", "to": "2026-03-10"}


def test_every_value_is_parsed_once() -> None:
    query = parse_query({"from": "2026-02-01", "to": "2026-02-28", "environment": "prod-1", "department": "10501",
                         "offset": "400", "limit": "50"}, today=TODAY)
    assert (query.first, query.last, query.environment_id, query.department, query.offset, query.limit) == (
        date(2026, 2, 1), date(2026, 2, 28), "prod-1", "10501", 400, 50)


@pytest.mark.parametrize(("params", "message"), [
    ({"from": "03/02/2026"}, "'from' must be a date written YYYY-MM-DD"),
    ({"from": "2026-03-09", "to": "2026-03-01"}, "The end date is before the start date."),
    ({"from": "2024-01-01", "to": "2026-01-01"}, "A report covers at most 366 days"),
    ({"environment": "../x"}, "The environment ID may use letters"),
    ({"department": "<script>"}, "The department is at most 64 characters"),
    ({"limit": "5000"}, "'limit' must be a whole number from 1 to 1000."),
    ({"offset": "-1"}, "'offset' must be a whole number"),
    ({"offset": "\u00b2"}, "'offset' must be a whole number from 0 to 10000000."),  # isdigit(), but not int()
    ({"from": "0001-01-01", "to": "0001-01-05"}, "'from' is outside the dates reports cover: choose dates from "
                                                 "2000-01-01 to 2099-12-31."),
    ({"to": "0001-01-03"}, "'to' is outside the dates reports cover"),  # the default week would start before year 1
    ({"from": "9999-12-30", "to": "9999-12-31"}, "'from' is outside the dates reports cover"),
    ({"from": "2099-12-30", "to": "9999-12-31"}, "'to' is outside the dates reports cover"),
])
def test_bad_values_are_refused_with_what_to_send(params: dict[str, str], message: str) -> None:
    with pytest.raises(RangeError) as refused:
        parse_query(params, today=TODAY)
    assert str(refused.value).startswith(message)


def test_the_default_week_before_the_first_day_reports_cover_starts_on_that_day() -> None:
    query = parse_query({"to": "2000-01-03"}, today=TODAY)
    assert (query.first, query.last) == (date(2000, 1, 1), date(2000, 1, 3))


def test_the_service_refuses_a_range_outside_the_dates_reports_cover() -> None:
    from lib.reports.reader import check_range

    with pytest.raises(RangeError, match="choose dates from 2000-01-01 to 2099-12-31"):
        check_range(date(1, 1, 1), date(1, 1, 5))  # callers other than the query string (benchmarks, the page)
