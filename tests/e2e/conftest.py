"""Browser fixtures for the end-to-end tests (see ``tests/e2e/browser.py``)."""

from __future__ import annotations

import importlib.util
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import CHROMIUM_ARGS, DESKTOP, PHONE, ROOT, chromium_path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian chromium for the whole session (Playwright, ``executable_path``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                              args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def console_messages() -> list[str]:
    """Every console message and page error of the test's page, as ``"type: text"`` (CSP reports land here)."""
    return []


def _context_page(browser: Any, console_messages: list[str], options: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(**options)
    page = context.new_page()
    page.on("console", lambda message: console_messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console_messages.append(f"pageerror: {error}"))
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, console_messages: list[str]) -> Iterator[Any]:
    """A fresh desktop-sized browser context and page (no cookies shared with other tests)."""
    yield from _context_page(browser, console_messages, DESKTOP)


@pytest.fixture
def phone_page(browser: Any, console_messages: list[str]) -> Iterator[Any]:
    """A fresh phone-sized, touch browser context and page."""
    yield from _context_page(browser, console_messages, PHONE)


@pytest.fixture(scope="module")
def live_app(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    """The Function App on the dev runner at the test profile's ``PUBLIC_BASE_URL`` (HTTP routes only;
    queues and timers are run by the tests). Yields the base URL.

    A private copy of ``function_app`` is served: ``azure-functions`` indexes an app object only once.
    """
    from local.devrunner import DevRunner

    spec = importlib.util.spec_from_file_location(f"function_app_e2e_{id(app)}", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    public = service_settings["PUBLIC_BASE_URL"]
    runner = DevRunner(module.app, port=urllib.parse.urlsplit(public).port or 7171,
                       host_json=ROOT / "host.json", timers=False, queues=False)
    runner.start()
    try:
        yield public
    finally:
        runner.stop(timeout=10)
