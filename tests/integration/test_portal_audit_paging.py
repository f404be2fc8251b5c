"""The audit trail a page at a time (dev runner, Cosmos-compatible server): every entry of a long trail is
reachable newest first through "Older" (the portal) or ``Link: rel="next"`` (the API), filtered by environment
and date range, with each page read by a ``TOP`` query rather than the whole container; bad parameters are
refused with what to write."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lib.config.audit import AuditQuery
from tests.integration.portal_client import PortalUser, problem_code, served_app

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
COUNT = 130


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_audit_paging_tests") as public:
        yield public


@pytest.fixture(scope="module")
def admin(runner: str, service_settings: dict[str, str]) -> PortalUser:
    return PortalUser(runner, "auditor@contoso.example", ("Admin",), service_settings["REQUESTS_CA_BUNDLE"])


@pytest.fixture(scope="module")
def trail(app: Any) -> tuple[str, list[str]]:
    """130 entries of one environment, one hour apart, except three recorded at the same instant (a tie the
    pages must neither repeat nor skip); returns the environment ID and the summaries newest first."""
    env_id = f"aud-{uuid.uuid4().hex[:8]}"
    times = [START + timedelta(hours=i) for i in range(COUNT)]
    times[60] = times[61] = times[62]  # three entries at one instant, across a page boundary (limit 50: 61st)
    for i, at in enumerate(times):
        app.portal.audit.record(environment_id=env_id, at=at, actor_id="local:a", actor_name="a@contoso.example",
                                action="environment.update", summary=f"change {i:03d}", before=None, after=None)
    ordered = sorted(range(COUNT), key=lambda i: times[i], reverse=True)
    return env_id, [f"change {i:03d}" for i in ordered]


def api_pages(admin: PortalUser, path: str) -> list[list[dict[str, Any]]]:
    pages = []
    while path:
        answer = admin.get(path)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())
        link = answer.headers.get("Link")
        path = re.fullmatch(r'<([^>]+)>; rel="next"', link).group(1) if link else ""  # type: ignore[union-attr]
        assert len(pages) < 10
    return pages


def test_the_api_pages_through_every_entry_newest_first(admin: PortalUser, trail: tuple[str, list[str]]) -> None:
    env_id, newest_first = trail
    pages = api_pages(admin, f"/api/config/audit?environmentId={env_id}&limit=50")
    assert [len(p) for p in pages] == [50, 50, 30]
    summaries = [e["summary"] for page in pages for e in page]
    assert len(set(summaries)) == COUNT  # none repeated, none skipped (also across the tie)
    assert summaries == newest_first
    ats = [e["at"] for page in pages for e in page]
    assert ats == sorted(ats, reverse=True)
    assert "change 000" in summaries  # the oldest, far beyond the old cap of 100


def test_a_date_range_selects_the_entries_of_those_days(admin: PortalUser, trail: tuple[str, list[str]]) -> None:
    env_id, _ = trail
    day = (START + timedelta(days=2)).date().isoformat()  # 2025-03-03: entries 39 (00:00) to 62 (23:00)
    answer = admin.get(f"/api/config/audit?environmentId={env_id}&from={day}&to={day}&limit=200")
    assert answer.status_code == 200 and "Link" not in answer.headers
    assert {e["summary"] for e in answer.json()} == {f"change {i:03d}" for i in range(39, 63)}
    exact = admin.get(f"/api/config/audit?environmentId={env_id}&from={day}T10:00:00Z&to={day}T11:00:00Z")
    assert [e["summary"] for e in exact.json()] == ["change 050", "change 049"]  # to is inclusive


@pytest.mark.parametrize(("query", "says"), [
    ("limit=0", "limit: a whole number of entries, 1 to 200"),
    ("limit=-1", "limit: a whole number of entries, 1 to 200"),
    ("limit=201", "limit: a whole number of entries, 1 to 200"),
    ("before=abc", "before: use the link of the previous page (Older)"),
    ("from=yesterday", "from: a date (2026-01-31)"),
    ("from=2026-02-01&to=2026-01-01", "from: must not be after to"),
    ("continuation=x", "continuation: unknown parameter"),
])
def test_bad_paging_parameters_are_refused_with_what_to_write(admin: PortalUser, query: str, says: str) -> None:
    answer = admin.get(f"/api/config/audit?{query}")
    assert answer.status_code == 422 and problem_code(answer) == "INVALID_QUERY"
    assert says in answer.text


def test_the_portal_page_has_older_and_newest_links_to_every_entry(admin: PortalUser,
                                                                   trail: tuple[str, list[str]]) -> None:
    env_id, newest_first = trail
    seen: list[str] = []
    path = f"/api/portal/audit?environmentId={env_id}"
    for _ in range(5):
        page = admin.get(path)
        assert page.status_code == 200
        seen += re.findall(r"change \d{3}", page.text)
        older = re.search(r'<a href="([^"]+)" id="older"', page.text)
        if not older:
            break
        assert 'id="newest"' in page.text or path.endswith(env_id)
        path = older.group(1).replace("&amp;", "&")
    assert seen == newest_first  # 50 per page by default: three pages


def test_a_page_is_read_with_a_top_query_not_the_whole_trail(app: Any, trail: tuple[str, list[str]]) -> None:
    env_id, _ = trail
    container = app.portal.audit._container
    original, read = container.query_items, []

    def counted(*args: Any, **kwargs: Any) -> Any:
        items = list(original(*args, **kwargs))
        read.append(len(items))
        return items

    container.query_items = counted
    try:
        page = app.portal.audit.page(AuditQuery(environmentId=env_id, limit=10))
    finally:
        del container.query_items
    assert len(page.entries) == 10 and page.older
    assert read == [11]  # one more than the page, to know whether an older page exists


def test_a_bad_filter_on_the_portal_page_is_named_in_the_error_summary(admin: PortalUser) -> None:
    page = admin.get("/api/portal/audit?from=yesterday&environmentId=x")
    assert page.status_code == 400
    assert 'href="#from">from: a date (2026-01-31)' in page.text
    assert 'value="yesterday"' in page.text  # what was typed stays in the filter
