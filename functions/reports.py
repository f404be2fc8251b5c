"""Reports (issue 14): the ``report-updates`` queue trigger that keeps the report documents current.

The report page, its JSON API and the CSV exports are served here too once the portal's sign-in and roles are
in place (``docs/reports.md``).
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("report_update")
@bp.queue_trigger(arg_name="msg", queue_name="report-updates", connection="AzureWebJobsStorage")
@observed("report_update")
def report_update(msg: func.QueueMessage) -> None:
    """Apply one report update (idempotent: a redelivery changes nothing twice).

    A malformed message raises, like a store outage: the host retries it and then moves it to
    ``report-updates-poison``, where it stays visible instead of being dropped with a log line.
    """
    from lib.queues import decode
    from lib.reports.inputs import InvalidReportInput, ReportUpdate

    try:
        update = ReportUpdate.from_message(decode(msg.get_body()))
    except (ValueError, UnicodeDecodeError, InvalidReportInput) as exc:
        from lib.observability import metrics

        metrics.queue_malformed("report-updates")  # the malformed-queue-messages alert
        log.error("report-updates message %s is malformed (%s)", msg.id, type(exc).__name__)
        raise InvalidReportInput("malformed report-updates message") from exc
    outcome = services().report_recorder.apply(update)
    log.info("report-updates message=%s type=%s outcome=%s", msg.id, update.type, outcome)
# ---- the report page, its JSON API and the CSV exports (roles Admin and ReportsReader) --------------------
ADMIN, REPORTS_READER = "Admin", "ReportsReader"


def _query(req: func.HttpRequest):
    from lib.reports.query import parse_query

    svc = services()
    return parse_query({k: req.params.get(k) or "" for k in ("from", "to", "environment", "department", "offset",
                                                             "limit")},
                       today=svc.clock.now().date())


def _api(req: func.HttpRequest, build) -> func.HttpResponse:  # type: ignore[no-untyped-def]
    """Authorize (Admin or ReportsReader), parse the query, build the answer; every failure is a problem."""
    from functions.http import correlation_id, problem
    from functions.portal_access import Denied, authorize
    from lib.reports.reader import RangeError
    from lib.store.errors import StoreUnavailable

    correlation = correlation_id(req)
    try:
        authorize(req, ADMIN, REPORTS_READER)
        return build(_query(req), correlation)
    except Denied as exc:
        return problem(exc.status, exc.title, exc.detail, correlation=correlation, code=exc.code)
    except RangeError as exc:
        return problem(400, "Invalid report request", str(exc), correlation=correlation, code="INVALID_QUERY")
    except StoreUnavailable:
        return problem(503, "Try again in a moment", "The database is busy; try again in a moment.",
                       correlation=correlation, code="STORE_UNAVAILABLE")
    except Exception as exc:
        log.error("report request failed type=%s correlation=%s", type(exc).__name__, correlation)
        return problem(500, "Report failed", "The report could not be built; give the reference to your IT team.",
                       correlation=correlation, code="INTERNAL_ERROR")


def _json(body: dict, correlation: str) -> func.HttpResponse:
    import json

    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json",
                             headers={"Cache-Control": "no-store", "x-correlation-id": correlation,
                                      "X-Content-Type-Options": "nosniff"})


def _csv(data: bytes, name: str, query, correlation: str) -> func.HttpResponse:  # type: ignore[no-untyped-def]
    filename = f"{name}-{query.first.isoformat()}-{query.last.isoformat()}.csv"
    return func.HttpResponse(data, status_code=200, headers={
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store", "x-correlation-id": correlation, "X-Content-Type-Options": "nosniff"})


def _select(query) -> dict:  # type: ignore[no-untyped-def]
    return {"environment_id": query.environment_id, "department": query.department}


@bp.function_name("report_visits")
@bp.route(route="reports/visits", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("report_visits")
def report_visits(req: func.HttpRequest) -> func.HttpResponse:
    """The visits report as JSON: the aggregates of the whole range and one page of rows."""
    def build(query, correlation):  # type: ignore[no-untyped-def]
        reports = services().reports
        summary = reports.summary(query.first, query.last, **_select(query))
        rows = reports.rows(query.first, query.last, limit=query.limit, offset=query.offset, texts=False,
                            **_select(query))
        return _json({"query": query.params(), "summary": summary.body, "total": summary.body["visits"]["total"],
                      "offset": query.offset, "limit": query.limit, "rows": rows.visits,
                      "point_reads": summary.point_reads + rows.point_reads}, correlation)

    return _api(req, build)


@bp.function_name("report_texts")
@bp.route(route="reports/texts", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("report_texts")
def report_texts(req: func.HttpRequest) -> func.HttpResponse:
    """The texts report as JSON: per-day totals, states, opt-outs and failures by reason, one page of rows."""
    def build(query, correlation):  # type: ignore[no-untyped-def]
        reports = services().reports
        summary = reports.summary(query.first, query.last, **_select(query))
        rows = reports.rows(query.first, query.last, limit=query.limit, offset=query.offset, **_select(query))
        return _json({"query": query.params(), "summary": summary.body["texts"], "per_day": summary.body["per_day"],
                      "total": summary.body["texts"]["total"], "offset": query.offset, "limit": query.limit,
                      "rows": rows.texts, "point_reads": summary.point_reads + rows.point_reads}, correlation)

    return _api(req, build)


@bp.function_name("report_visits_csv")
@bp.route(route="reports/visits.csv", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("report_visits_csv")
def report_visits_csv(req: func.HttpRequest) -> func.HttpResponse:
    """Every visit of the range as CSV (UTF-8, header row, one row per visit)."""
    from lib.reports.csv_export import visits_csv

    def build(query, correlation):  # type: ignore[no-untyped-def]
        rows = services().reports.rows(query.first, query.last, texts=False, **_select(query))
        return _csv(visits_csv(rows.visits), "visits", query, correlation)

    return _api(req, build)


@bp.function_name("report_texts_csv")
@bp.route(route="reports/texts.csv", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("report_texts_csv")
def report_texts_csv(req: func.HttpRequest) -> func.HttpResponse:
    """Every text of the range as CSV (UTF-8, header row, one row per text; the number's last two digits only)."""
    from lib.reports.csv_export import texts_csv

    def build(query, correlation):  # type: ignore[no-untyped-def]
        rows = services().reports.rows(query.first, query.last, **_select(query))
        return _csv(texts_csv(rows.texts), "texts", query, correlation)

    return _api(req, build)


@bp.function_name("report_page")
@bp.route(route="portal/reports", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("report_page")
def report_page(req: func.HttpRequest) -> func.HttpResponse:
    """The report page: filters (a plain GET form), then charts and tables drawn by ``js/reports.js`` from the
    JSON API. Page data travels in ``data-`` attributes; no inline script or style."""
    import urllib.parse

    from functions.http import correlation_id
    from functions.portal_access import Denied, authorize
    from lib.reports.reader import RangeError
    from lib.visits.pages import BASE_HEADERS
    from lib.web import render

    correlation = correlation_id(req)
    svc = services()
    try:
        principal = authorize(req, ADMIN, REPORTS_READER)
    except Denied as exc:
        if exc.status == 401 and exc.code == "NOT_SIGNED_IN":
            return func.HttpResponse(status_code=303, headers={
                "Location": "/api/portal/signin?" + urllib.parse.urlencode({"next": req.url}),
                "Cache-Control": "no-store"})
        page = render("reports/denied.html", {"user": None, "csrf_token": "", "problems": [], "notice": None,
                                              "section": "reports", "title": exc.title, "detail": exc.detail,
                                              "code": exc.code, "correlation_id": correlation}, status=exc.status)
        return func.HttpResponse(page.html, status_code=page.status, headers={**BASE_HEADERS, **page.headers},
                                 mimetype="text/html", charset="utf-8")
    problems = []
    try:
        query = _query(req)
    except RangeError as exc:
        from lib.reports.query import parse_query

        problems.append({"field": "from", "message": str(exc)})
        query = parse_query({}, today=svc.clock.now().date())
    environments = [{"id": e.id, "name": e.display_name, "kind": e.kind} for e in svc.reports.environments()]
    context = {
        "user": principal, "csrf_token": svc.portal.csrf.issue(principal), "problems": problems, "notice": None,
        "section": "reports", "title": "Reports", "query": query, "environments": environments,
        "api_query": urllib.parse.urlencode(query.params()),
    }
    page = render("reports/report.html", context, status=400 if problems else 200)
    return func.HttpResponse(page.html, status_code=page.status,
                             headers={**BASE_HEADERS, **page.headers, "x-correlation-id": correlation},
                             mimetype="text/html", charset="utf-8")
