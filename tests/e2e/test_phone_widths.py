"""Portal pages on a 390 px wide phone (Debian chromium): nothing is wider than the screen. Long values
(URLs, thumbprints, SMS previews with join links) wrap, wide tables scroll inside their own container."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from lib.models import SmsSettings
from tests.e2e.browser import save_screenshot
from tests.support.environments import SENDER, make_environment

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

LONG_BASE = "https://virtual-visits-patient-links.contoso-health-system.example/a/really/long/path"


def sign_in_admin(page: Any, base: str) -> None:
    page.goto(f"{base}/api/portal/signin")
    page.fill("#name", "admin@contoso.example")
    page.check("#role-Admin")
    page.click("button[type=submit]")
    page.wait_for_load_state()


def page_width(page: Any) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def widest(page: Any) -> list[str]:
    """The elements sticking out of a 390 px viewport (tag#id.class and right edge), for the failure message."""
    return page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > 391 && !e.closest('.table-scroll'))
        .slice(0, 8).map(e => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)""")


@pytest.mark.parametrize("path", ["", "/sms"])
def test_environment_and_sms_pages_fit_a_390px_phone(live_app: str, app: Any, phone_page: Any, path: str) -> None:
    env_id = f"wide-{uuid.uuid4().hex[:8]}"
    make_environment(app, env_id, fhir_base_urls=(f"https://fhir.contoso-health-system.example/{env_id}"
                                                  "/interconnect-prd-oauth/api/FHIR/R4",),
                     sms=SmsSettings(enabled=True, sender=SENDER, join_link_base_url=LONG_BASE))
    sign_in_admin(phone_page, live_app)
    phone_page.goto(f"{live_app}/api/portal/environments/{env_id}{path}")
    phone_page.wait_for_load_state("networkidle")
    assert phone_page.viewport_size["width"] == 390
    save_screenshot(phone_page, f"portal-environment{path.replace('/', '-')}-390")
    assert page_width(phone_page) <= 390, widest(phone_page)


def test_a_join_link_cut_after_join_slash_gets_the_patient_page_on_a_phone(live_app: str, phone_page: Any) -> None:
    answer = phone_page.goto(f"{live_app}/api/join/")  # an SMS app that cut the link after "join/"
    assert answer is not None and answer.status == 404
    assert phone_page.inner_text("#notice-title") == "This link does not work"
    assert "newest link your clinic sent you" in phone_page.inner_text("#notice-action")
    assert page_width(phone_page) <= 390, widest(phone_page)
