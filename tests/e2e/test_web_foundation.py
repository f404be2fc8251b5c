"""The web foundation in a real browser: static files under a strict CSP, a template page with no CSP
violation, accessible (axe, WCAG 2.1 AA), at phone and desktop sizes."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.e2e.browser import axe_violations, save_screenshot

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_static_css_is_cacheable_by_version_and_revalidates_by_etag(live_app: str) -> None:
    first = requests.get(f"{live_app}/api/static/css/site.css?v=1", timeout=10)
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("text/css")
    assert "immutable" in first.headers["Cache-Control"]
    again = requests.get(f"{live_app}/api/static/css/site.css", headers={"If-None-Match": first.headers["ETag"]},
                         timeout=10)
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["../function_app.py", "..%2F..%2Ffunction_app.py", "templates/layout.html",
                                  "css/nope.css"])
def test_anything_outside_the_static_folder_is_not_found(live_app: str, path: str) -> None:
    response = requests.get(f"{live_app}/api/static/{path}", timeout=10)
    assert response.status_code == 404
    assert "def " not in response.text


@pytest.mark.parametrize("size", ["page", "phone_page"])
def test_error_page_renders_styled_without_csp_violations_and_passes_axe(
    request: pytest.FixtureRequest, live_app: str, console_messages: list[str], size: str
) -> None:
    page: Any = request.getfixturevalue(size)
    response = page.goto(f"{live_app}/api/launch/provider")  # no iss: the ISS_MISSING error page
    assert response is not None and response.status == 400
    assert page.locator("#error-code").inner_text() == "ISS_MISSING"
    # the stylesheet applied (served from /api/static under the page's CSP): the body font size is 18px
    assert page.evaluate("getComputedStyle(document.body).fontSize") == "18px"
    assert axe_violations(page) == []
    save_screenshot(page, f"launch-error-{size}")
    assert not [m for m in console_messages if "Content Security Policy" in m], console_messages


def test_every_page_links_a_versioned_favicon_that_is_served(live_app: str, page: Any,
                                                             console_messages: list[str]) -> None:
    page.goto(f"{live_app}/api/launch/provider")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href is not None and href.startswith("/api/static/img/favicon.svg?v=")
    icon = requests.get(f"{live_app}{href}", timeout=10)
    assert (icon.status_code, icon.headers["Content-Type"]) == (200, "image/svg+xml")
    assert "immutable" in icon.headers["Cache-Control"]
    # (the page itself answers 400, which Chromium also reports; no resource of it may be missing)
    assert not [m for m in console_messages if "status of 404" in m], console_messages


def test_the_axe_check_itself_reports_a_serious_violation(page: Any) -> None:
    page.set_content("<html><body><img src='data:,'><input type='text'></body></html>")
    found = {v["id"] for v in axe_violations(page)}
    assert {"image-alt", "html-has-lang", "label"} <= found
