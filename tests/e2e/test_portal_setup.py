"""The set-up path in a real browser (Debian chromium): the admin creates an environment with a certificate and
SMS, generates a phone number (a purchase that takes a while), the Epic analyst signs in to the Epic stand-in
(SMART standalone launch) and approves, the integration records appear, and a provider launch then works
against that environment. Each page is checked with axe (no serious or critical WCAG 2.1 AA violation) and
saved as a screenshot in test-artifacts/screenshots/."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.browser import DESKTOP, assert_clean, sign_in
from tests.support.hl7_signing import signer

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EPIC_USER, EPIC_PASSWORD = "ANALYST7", "epic-pass-7"


def new_page(browser: Any, console: list[str]) -> tuple[Any, Any]:
    """A fresh desktop context. The Epic stand-in serves TLS with the local CA, which Chromium's own store does
    not hold: certificate errors are ignored (every server here is on loopback)."""
    context = browser.new_context(**DESKTOP, ignore_https_errors=True)
    page = context.new_page()
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    return context, page


def test_admin_configures_analyst_approves_records_appear_and_a_launch_works(
        live_app: str, browser: Any, console_messages: list[str], app: Any,
        service_settings: dict[str, str]) -> None:
    ca, epic, iss = (service_settings["REQUESTS_CA_BUNDLE"], service_settings["EPIC_STANDIN_URL"],
                     service_settings["EPIC_STANDIN_ISS"])
    client_id, env_id = f"vv-{uuid.uuid4().hex[:8]}", f"e2e-{uuid.uuid4().hex[:8]}"
    analyst, organizer = f"analyst-{uuid.uuid4().hex[:6]}@contoso.example", str(uuid.uuid4())
    # What the hospital did in Epic and Entra beforehand: our client registered with both redirect URIs, the
    # analyst's Epic account, the fallback organizer's Teams account.
    requests.post(f"{epic}/_standin/clients", verify=ca, timeout=10, json={
        "client_id": client_id, "jwks_url": f"{live_app}/api/.well-known/jwks.json",
        "redirect_uris": [f"{live_app}/api/launch/callback", f"{live_app}/api/portal/approvals/callback"]})
    requests.post(f"{epic}/_standin/users", verify=ca, timeout=10,
                  json={"username": EPIC_USER, "password": EPIC_PASSWORD, "practitioner_id": "E7001"})
    requests.post(f"{service_settings['GRAPH_STANDIN_URL']}/_standin/users", verify=ca, timeout=10,
                  json={"id": organizer, "policy": True})
    requests.post(f"{service_settings['ACS_STANDIN_URL']}/_standin/phone-numbers/behaviour", verify=ca, timeout=10,
                  json={"purchase_seconds": 3, "fail_next_purchase": None})
    import dataclasses

    for other in app.repos.environments.all():  # a launch is routed by its iss: this environment must own it
        if iss in other.fhir_base_urls:
            app.repos.environments.put(dataclasses.replace(
                other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != iss), approvals={},
                approvers={}))

    # ---- the admin ------------------------------------------------------------------------------------------
    admin_context, page = new_page(browser, console_messages)
    sign_in(page, live_app)
    page.wait_for_url(re.compile(r".*/api/portal/environments$"))
    assert_clean(page, "portal-01-environments", console_messages)
    page.click("#add-environment")
    page.fill("#id", env_id)
    page.fill("#display_name", "Contoso Health")
    page.fill("#fhir_base_urls", iss)
    page.fill("#approvers", f"{iss} = {analyst}")
    page.fill("#epic_client_id", client_id)
    page.fill("#time_zone", "America/Chicago")
    page.fill("#fallback_organizer_id", organizer)
    page.uncheck("#provider_signin")
    assert_clean(page, "portal-02-new-environment", console_messages)
    page.click("#save")
    page.wait_for_load_state()
    assert page.locator("#error-summary").count() == 0, page.locator("#error-summary").inner_text()
    page.wait_for_url(re.compile(rf".*/api/portal/environments/{env_id}\?saved=1$"))
    assert page.locator("[data-url-status]").inner_text() == "Waiting for approval"

    page.set_input_files("#certificate", files=[{"name": "engine.cer", "mimeType": "application/pkix-cert",
                                                 "buffer": signer().cert_pem}])
    page.click("#upload-certificate")
    page.wait_for_selector("tr.certificate")
    assert "CN=test-interface-engine" in page.locator("tr.certificate").inner_text()
    assert_clean(page, "portal-03-environment-with-certificate", console_messages)

    page.goto(f"{live_app}/api/portal/phone-numbers")
    page.click("#search-number")
    page.wait_for_selector("#offer-number")
    number = page.locator("#offer-number").inner_text()
    assert re.fullmatch(r"\+180055501\d\d", number)
    assert_clean(page, "portal-04-number-offer", console_messages)
    page.check("#consentToCosts")
    page.click("#buy")
    assert "In progress" in page.locator("#purchase-status").inner_text()
    assert_clean(page, "portal-05-purchase-in-progress", console_messages)
    expect(page.locator("#purchase-status")).to_contain_text("Done", timeout=30000)  # the script polled
    assert_clean(page, "portal-06-purchase-done", console_messages)

    page.goto(f"{live_app}/api/portal/environments/{env_id}/sms")
    page.select_option("#number", number)
    page.click("#link-number")
    page.wait_for_selector("#current-sender")
    assert page.locator("#current-sender").inner_text() == number
    assert page.locator("#toll-free-reminder").is_visible()
    page.check("#consentSendOnBehalf")
    page.check("#consentPatientsAgreed")
    page.check("#enabled")
    page.fill("#reminder_offsets_minutes", "1440, 120")
    page.fill("#tpl-en-reminder", "{org}: your video visit is {when}. Join: {link}")
    expect(page.locator("#preview-en-reminder .preview-text")).to_contain_text(
        "Contoso Health: your video visit")  # the live preview
    page.fill("#help_contact", "800-555-0199")
    expect(page.locator("#preview-en-help .preview-text")).to_contain_text("Help: 800-555-0199.")  # HELP's answer
    page.fill("#reachable_countries", "US, CA")
    page.fill("#per_number_cap", "4")
    assert_clean(page, "portal-07-sms-settings", console_messages)
    page.click("#save-sms")
    page.wait_for_selector("#notice")
    stored = app.portal.environments.get(env_id)
    assert stored.sms.enabled and stored.sms.sender == number and stored.sms.reminder_offsets_minutes == (1440, 120)
    assert (stored.sms.help_contact, stored.sms.reachable_countries, stored.sms.per_number_cap) == (
        "800-555-0199", ("US", "CA"), 4)
    assert stored.sms.consented_by == "admin@contoso.example"

    page.goto(f"{live_app}/api/portal/environments/{env_id}/records")
    assert page.locator("#records-pending").is_visible()

    # ---- the Epic analyst -----------------------------------------------------------------------------------
    context, approver = new_page(browser, console_messages)
    sign_in(approver, live_app, analyst, ("Approver",))
    approver.wait_for_url(re.compile(r".*/api/portal/approvals$"))
    assert_clean(approver, "portal-08-approvals", console_messages)
    approver.click("section.approval button.primary")
    approver.wait_for_selector("#username")  # the Epic stand-in's login page
    approver.fill("#username", EPIC_USER.lower())
    approver.fill("#password", EPIC_PASSWORD)
    approver.click("button[type=submit]")
    approver.wait_for_url(re.compile(r".*/api/portal/approvals/review\?.*"))
    assert "Practitioner/E7001" in approver.locator("#epic-signin-ok").inner_text()
    assert_clean(approver, "portal-09-approval-review", console_messages)
    approver.click("#approve")
    approver.wait_for_selector("#notice")
    assert "Approved" in approver.locator("#notice").inner_text()
    context.close()

    # ---- the records, then a launch -------------------------------------------------------------------------
    page.goto(f"{live_app}/api/portal/environments/{env_id}/records")
    assert page.locator("#records-kind").inner_text().startswith("TEST")
    provider = page.locator("#record-provider-launch").inner_text()
    assert f"{live_app}/api/launch/provider" in provider and "%CSN%" in provider
    assert "%CONFERENCEID%" in page.locator("#record-group-provider-launch").inner_text()
    assert_clean(page, "portal-10-integration-records", console_messages)

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    launch = requests.post(f"{epic}/_standin/launch", verify=ca, timeout=10, json={
        "client_id": client_id, "appointment_csn": str(uuid.uuid4().int % 10**10), "user_id": "E1001",
        "context": "provider", "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")}).json()
    meeting = re.compile(r".*/l/meetup-join/.*")
    with page.expect_request(lambda r: bool(meeting.match(r.url)), timeout=30000) as reached:
        page.goto(f"{live_app}/api/launch/provider?env={env_id}&iss={iss}&launch={launch['launch']}",
                  wait_until="commit")
    assert reached.value.url.startswith(service_settings["GRAPH_STANDIN_URL"])  # the visit's Teams meeting
    admin_context.close()
