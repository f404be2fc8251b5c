"""The SMS page's live preview in a real browser (Debian chromium): a template the preview API refuses shows
the API's reason in place of a count, and a good template brings the count back."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import DESKTOP, save_screenshot, sign_in
from tests.support.environments import make_environment

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_a_refused_preview_shows_why_instead_of_zero_segments(live_app: str, browser: Any, app: Any,
                                                              console_messages: list[str]) -> None:
    environment = make_environment(app, f"e2e-{uuid.uuid4().hex[:8]}")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    page.on("console", lambda m: console_messages.append(f"{m.type}: {m.text}"))
    try:
        sign_in(page, live_app)
        page.goto(f"{live_app}/api/portal/environments/{environment.id}/sms")
        preview = page.locator("#preview-en-reminder")
        page.fill("#tpl-en-reminder", "{org}: your video visit is {when}. Join: {link} " + "x" * 1200)
        expect(preview.locator(".field-error")).to_contain_text("at most 1000 characters")
        expect(preview.locator(".preview-count")).to_be_hidden()
        save_screenshot(page, "portal-sms-preview-refused")
        page.fill("#tpl-en-reminder", "{org}: your video visit is {when}. Join: {link}")
        expect(preview.locator(".preview-text")).to_contain_text("Contoso Health: your video visit")
        expect(preview.locator(".preview-count")).to_be_visible()
        expect(preview.locator(".preview-segments")).to_have_text(re.compile(r"^[12]$"))
        expect(preview.locator(".field-error")).to_have_count(0)
    finally:
        context.close()
    assert not [m for m in console_messages if "Content Security Policy" in m], console_messages
