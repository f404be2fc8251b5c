"""Report filters at their edges answer a 400 problem that says what to send, never a bare 500: dates at year 1
and year 9999, ranges that reach the edges (with and without a monthly allocation, whose month-before read
once overflowed), a default week before an early date, numbers Python calls digits but cannot read. The real
HTTP functions (``functions/reports.py``) over the Cosmos-compatible server."""

from __future__ import annotations

from typing import Any

import azure.functions as func
import pytest

from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

OUTSIDE = "choose dates from 2000-01-01 to 2099-12-31."


@pytest.fixture(params=[None, 100], ids=["no-allocation", "monthly-allocation"])
def env(app: Any, environment_id: str, request: Any) -> str:
    make_environment(app, environment_id, monthly_visit_allocation=request.param)
    return environment_id


def call(app: Any, route: str, query: str, *, roles: tuple[str, ...] = ("ReportsReader",)) -> func.HttpResponse:
    import urllib.parse

    from functions import reports
    from lib.config.access import DEV_COOKIE

    function = {"reports/visits": reports.report_visits, "reports/texts": reports.report_texts,
                "reports/visits.csv": reports.report_visits_csv, "reports/texts.csv": reports.report_texts_csv,
                "portal/reports": reports.report_page}[route]
    cookie = f"{DEV_COOKIE}={app.portal.access.dev_cookie('reader@contoso.example', list(roles))}"
    request = func.HttpRequest(method="GET", url=f"http://127.0.0.1/api/{route}?{query}", body=b"",
                               headers={"cookie": cookie}, params=dict(urllib.parse.parse_qsl(query)))
    return function.build().get_user_function()(request)


API = ["reports/visits", "reports/texts", "reports/visits.csv", "reports/texts.csv"]


@pytest.mark.parametrize("route", API)
@pytest.mark.parametrize(("query", "detail"), [
    ("from=0001-01-01&to=0001-01-05", f"'from' is outside the dates reports cover: {OUTSIDE}"),
    ("from=0001-01-01&to=2026-01-05", f"'from' is outside the dates reports cover: {OUTSIDE}"),
    ("to=0001-01-03", f"'to' is outside the dates reports cover: {OUTSIDE}"),  # the default week before it
    ("from=9999-12-30&to=9999-12-31", f"'from' is outside the dates reports cover: {OUTSIDE}"),
    ("from=2099-12-30&to=9999-12-31", f"'to' is outside the dates reports cover: {OUTSIDE}"),
    ("from=2000-01-01&to=2099-12-31", "A report covers at most 366 days; choose a shorter range."),
    ("from=2026-01-01&offset=%C2%B2", "'offset' must be a whole number from 0 to 10000000."),  # "²"
    ("limit=%EF%BC%95", "'limit' must be a whole number from 1 to 1000."),  # a fullwidth 5
    ("offset=99999999999999999999999", "'offset' must be a whole number from 0 to 10000000."),
])
def test_edge_filters_answer_a_400_problem_saying_what_to_send(app: Any, env: str, route: str, query: str,
                                                               detail: str) -> None:
    import json

    response = call(app, route, f"{query}&environment={env}")
    body = json.loads(response.get_body())
    assert (response.status_code, body["code"], body["detail"]) == (400, "INVALID_QUERY", detail)


@pytest.mark.parametrize("query", ["from=2000-01-01&to=2000-01-31", "from=2099-12-01&to=2099-12-31",
                                   "to=2000-01-02"])
def test_the_first_and_last_months_reports_cover_are_answered(app: Any, env: str, query: str) -> None:
    import json

    for route in API:
        response = call(app, route, f"{query}&environment={env}")
        assert response.status_code == 200, response.get_body()[:300]
    body = json.loads(call(app, "reports/visits", f"{query}&environment={env}").get_body())
    assert body["total"] == 0 and body["summary"]["visits"]["within_allocation"] == 0


def test_the_report_page_shows_the_allowed_range_for_an_edge_date(app: Any, env: str) -> None:
    response = call(app, "portal/reports", f"from=0001-01-01&to=0001-01-05&environment={env}")
    assert response.status_code == 400
    assert OUTSIDE in response.get_body().decode()
