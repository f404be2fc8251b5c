"""``local/bench_reports.py`` end to end on small sizes: the store calls of a report do not change with what is
stored outside its range (counts, never timings)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_report_store_calls_do_not_grow_with_the_visits_stored(service_settings: Any) -> None:
    from local import bench_reports

    small = bench_reports.run(1_600, 800, 400)   # 4 days stored, 2 in the range
    large = bench_reports.run(4_000, 800, 400)   # 10 days stored, the same 2-day range
    for case in (small, large):
        assert case["summary"]["visits_counted"] == 800
        assert case["all_rows_csv"]["rows"] == 800
        assert case["first_page"]["rows"] == 200
    for section in ("summary", "first_page", "all_rows_csv", "update_placed_visit"):
        assert small[section]["store_calls"] == large[section]["store_calls"], section
    assert set(large["all_rows_csv"]["store_calls"]) == {"read"}  # point reads only, no query
