"""Portal pages on a 390 px wide phone (Debian chromium): nothing is wider than the screen. Long values
(URLs, thumbprints, SMS previews with join links) wrap; tables become cards (tests/e2e/test_portal_tables.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from lib.models import SmsSettings
from tests.e2e.browser import save_screenshot, sign_in
from tests.e2e.layout import horizontal_overflow
from tests.support.environments import SENDER, make_environment

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

LONG_BASE = "https://virtual-visits-patient-links.contoso-health-system.example/a/really/long/path"


@pytest.mark.parametrize("path", ["", "/sms"])
def test_environment_and_sms_pages_fit_a_390px_phone(live_app: str, app: Any, phone_page: Any, path: str) -> None:
    env_id = f"wide-{uuid.uuid4().hex[:8]}"
    make_environment(app, env_id, fhir_base_urls=(f"https://fhir.contoso-health-system.example/{env_id}"
                                                  "/interconnect-prd-oauth/api/FHIR/R4",),
                     sms=SmsSettings(enabled=True, sender=SENDER, join_link_base_url=LONG_BASE))
    sign_in(phone_page, live_app)
    phone_page.goto(f"{live_app}/api/portal/environments/{env_id}{path}")
    phone_page.wait_for_load_state("networkidle")
    assert phone_page.viewport_size["width"] == 390
    save_screenshot(phone_page, f"portal-environment{path.replace('/', '-')}-390")
    overflow = horizontal_overflow(phone_page)
    assert overflow == {"extra": 0, "sticking_out": [], "wide_tables": []}, overflow


def test_a_join_link_cut_after_join_slash_gets_the_patient_page_on_a_phone(live_app: str, phone_page: Any) -> None:
    answer = phone_page.goto(f"{live_app}/api/join/")  # an SMS app that cut the link after "join/"
    assert answer is not None and answer.status == 404
    assert phone_page.inner_text("#notice-title") == "This link does not work"
    assert "newest link your clinic sent you" in phone_page.inner_text("#notice-action")
    assert horizontal_overflow(phone_page)["extra"] == 0
