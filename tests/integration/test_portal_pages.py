"""The portal's pages over HTTP, as a browser without JavaScript uses them: plain form posts with the CSRF token,
error summaries that link to the fields, role checks on every page, uploads refused with a message."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.portal_client import PortalUser, served_app
from tests.support.hl7_signing import signer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_portal_pages_tests") as public:
        yield public


@pytest.fixture(scope="module")
def ca(service_settings: dict[str, str]) -> str:
    return service_settings["REQUESTS_CA_BUNDLE"]


@pytest.fixture(scope="module")
def admin(runner: str, ca: str) -> PortalUser:
    return PortalUser(runner, "admin@contoso.example", ("Admin",), ca)


def csrf_of(page: requests.Response) -> str:
    return html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]


def form_of(admin: PortalUser, epic_base: str, **over: str) -> dict[str, str]:
    page = admin.get("/api/portal/environments/new")
    assert page.status_code == 200 and "Add an environment" in page.text
    return {"csrf_token": csrf_of(page), "id": f"pg-{uuid.uuid4().hex[:8]}", "kind": "test",
            "display_name": "Contoso Health", "fhir_base_urls": f"{epic_base}/org{uuid.uuid4().hex[:6]}/api/FHIR/R4",
            "epic_client_id": "vv-pages", "time_zone": "America/Chicago", "default_region": "US",
            "launch_mode": "smart", "csn_identifier_systems": ".7.3.698084.8", "provider_signin": "on",
            "appointment_id_order": "SCH-2\nSCH-1", "hl7_auth": "jws", "client_assertion_alg": "RS384",
            "writeback_vendor_name": "OpenVirtualVisits", "encrypted_max_age_seconds": "300", **over}


def test_signed_out_pages_send_you_to_sign_in(runner: str, ca: str):
    answer = requests.get(f"{runner}/api/portal/environments", verify=ca, allow_redirects=False, timeout=10)
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/api/portal/signin")
    signin = requests.get(f"{runner}/api/portal/signin", verify=ca, timeout=10)
    assert "Local development sign-in" in signin.text and "default-src 'none'" in signin.headers[
        "Content-Security-Policy"]


def test_a_form_with_mistakes_comes_back_with_an_error_summary_linking_to_the_fields(
        admin: PortalUser, service_settings: dict[str, str]):
    form = form_of(admin, service_settings["EPIC_STANDIN_URL"], fhir_base_urls="http://ehr.example/fhir",
                   time_zone="Nowhere/City")
    answer = admin.session.post(f"{admin.base}/api/portal/environments", data=form, allow_redirects=False)
    summary = refusal_summary(answer)
    assert '<a href="#fhir_base_urls">' in summary and "must start with https://" in summary
    assert '<a href="#time_zone">' in summary
    assert 'id="time_zone-error"' in answer.text and 'aria-invalid="true"' in answer.text
    assert "Nowhere/City" in answer.text  # what was typed is kept


def test_create_with_the_form_then_upload_a_certificate_and_a_binary_file_is_refused(
        admin: PortalUser, service_settings: dict[str, str]):
    form = form_of(admin, service_settings["EPIC_STANDIN_URL"])
    created = admin.session.post(f"{admin.base}/api/portal/environments", data=form, allow_redirects=False)
    assert created.status_code == 303, created.text
    page = admin.get(created.headers["Location"])
    assert page.status_code == 200 and "Saved." in page.text and "Waiting for approval" in page.text
    token = csrf_of(page)
    upload = admin.session.post(f"{admin.base}/api/portal/environments/{form['id']}/certificates",
                                data={"csrf_token": token}, allow_redirects=False,
                                files={"certificate": ("engine.cer", signer().cert_pem, "application/pkix-cert")})
    assert upload.status_code == 303, upload.text
    shown = admin.get(f"/api/portal/environments/{form['id']}")
    assert "CN=test-interface-engine" in shown.text and re.search(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", shown.text)
    binary = admin.session.post(f"{admin.base}/api/portal/environments/{form['id']}/certificates",
                                data={"csrf_token": token}, allow_redirects=False,
                                files={"certificate": ("engine.der", b"\x30\x82\x01\x00\x00\xff", "x/y")})
    assert binary.status_code == 422 and "This is a binary file." in binary.text
    assert '<a href="#certificate">' in binary.text
    huge = admin.session.post(f"{admin.base}/api/portal/environments/{form['id']}/certificates",
                              data={"csrf_token": token}, allow_redirects=False,
                              files={"certificate": ("big.cer", b"A" * 200_000, "text/plain")})
    assert huge.status_code == 413 and "File too large" in huge.text


def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(admin: PortalUser,
                                                                           service_settings: dict[str, str]):
    form = form_of(admin, service_settings["EPIC_STANDIN_URL"])
    form.pop("csrf_token")
    answer = admin.session.post(f"{admin.base}/api/portal/environments", data=form, allow_redirects=False)
    assert answer.status_code == 403 and 'id="error-code">CSRF_FAILED<' in answer.text
    assert admin.get(f"/api/portal/environments/{form['id']}").status_code == 404


def test_a_reader_gets_a_page_saying_which_role_is_needed(runner: str, ca: str):
    reader = PortalUser(runner, "reader@contoso.example", ("ReportsReader",), ca)
    for path in ("/api/portal/environments", "/api/portal/environments/new", "/api/portal/audit",
                 "/api/portal/phone-numbers", "/api/portal/approvals"):
        page = reader.get(path)
        assert page.status_code == 403 and 'id="error-code">ROLE_MISSING<' in page.text, path


def test_a_bad_area_code_or_number_kind_comes_back_beside_the_field_and_searches_nothing(admin: PortalUser):
    token = csrf_of(admin.get("/api/portal/phone-numbers"))
    bad = admin.session.post(f"{admin.base}/api/portal/phone-numbers/searches", allow_redirects=False,
                             data={"csrf_token": token, "numberType": "geographic", "areaCode": "abc"})
    assert bad.status_code == 422 and "BAD_AREA_CODE" not in bad.text
    assert '<a href="#areaCode">An area code has three digits' in bad.text
    assert re.search(r'id="areaCode-error"><span class="visually-hidden">Error:</span> An area code', bad.text)
    assert 'id="areaCode" name="areaCode" inputmode="numeric" maxlength="3" value="abc"' in bad.text
    assert 'value="geographic" checked' in bad.text  # the choice is kept
    mobile = admin.session.post(f"{admin.base}/api/portal/phone-numbers/searches", allow_redirects=False,
                                data={"csrf_token": token, "numberType": "mobile"})
    assert mobile.status_code == 422 and '<a href="#numberType">Choose toll-free or local' in mobile.text


def test_the_phone_numbers_page_lists_each_environments_configured_sender(admin: PortalUser, app: Any,
                                                                         environment_id: str):
    from tests.support.environments import SENDER, make_environment

    make_environment(app, environment_id)
    page = admin.get("/api/portal/phone-numbers").text
    row = re.search(rf'<tr class="configured-sender"><td[^>]*>Contoso Health <code>{environment_id}</code></td>'
                    r"<td[^>]*>([^<]+)</td><td[^>]*>(yes|no)</td></tr>", page)
    assert row is not None and row.group(1) == SENDER
    owned = SENDER in re.findall(r'<tr class="owned-number"><td[^>]*>([^<]+)</td>', page)
    assert row.group(2) == ("yes" if owned else "no")  # the demo's stand-in sender is not one of the resource's


def test_the_phone_number_pages_buy_a_number_without_javascript(admin: PortalUser):
    numbers = admin.get("/api/portal/phone-numbers")
    token = csrf_of(numbers)
    searched = admin.session.post(f"{admin.base}/api/portal/phone-numbers/searches", allow_redirects=False,
                                  data={"csrf_token": token, "numberType": "tollFree"})
    assert searched.status_code == 303, searched.text
    offer = admin.get(searched.headers["Location"])
    search_id = re.search(r'name="searchId" value="([^"]+)"', offer.text).group(1)  # type: ignore[union-attr]
    no_consent = admin.session.post(f"{admin.base}/api/portal/phone-numbers/purchases", allow_redirects=False,
                                    data={"csrf_token": token, "searchId": search_id})
    assert no_consent.status_code == 422 and '<a href="#consentToCosts">' in no_consent.text
    bought = admin.session.post(f"{admin.base}/api/portal/phone-numbers/purchases", allow_redirects=False,
                                data={"csrf_token": token, "searchId": search_id, "consentToCosts": "on"})
    assert bought.status_code == 303
    progress = admin.get(bought.headers["Location"])
    assert progress.status_code == 200 and 'id="purchase-status"' in progress.text


def test_settings_that_would_break_the_product_are_refused_at_their_fields(admin: PortalUser,
                                                                          service_settings: dict[str, str]):
    form = form_of(admin, service_settings["EPIC_STANDIN_URL"], appointment_id_order="SCH2\nPV1-19",
                   frame_origins="X-Evil: 1", writeback_retry_horizon_minutes="99999999999999999999999",
                   client_assertion_alg="bogus", display_name="Contoso\nHealth")
    answer = admin.session.post(f"{admin.base}/api/portal/environments", data=form, allow_redirects=False)
    assert answer.status_code == 422
    summary = html.unescape(answer.text.split('id="error-summary"')[1].split("</div>")[0])
    for field, message in [("appointment_id_order", "use SCH-2, SCH-1 or PV1-19"),
                           ("frame_origins", "a frame origin is https://host"),
                           ("writeback_retry_horizon_minutes", "whole number of minutes from 5 to 10080"),
                           ("client_assertion_alg", "'RS384' or 'ES384'")]:
        assert f'<a href="#{field}">' in summary and message in summary, field
    assert admin.get(f"/api/portal/environments/{form['id']}").status_code == 404


def test_the_edit_form_shows_a_value_an_older_version_stored_as_that_fields_error(
        app: Any, admin: PortalUser, service_settings: dict[str, str]):
    import dataclasses

    form = form_of(admin, service_settings["EPIC_STANDIN_URL"])
    created = admin.session.post(f"{admin.base}/api/portal/environments", data=form, allow_redirects=False)
    assert created.status_code == 303, created.text
    stored = app.repos.environments.get(form["id"])
    app.repos.environments.put(dataclasses.replace(stored, writeback_retry_horizon_minutes=10**23))
    page = admin.get(f"/api/portal/environments/{form['id']}/edit")
    assert page.status_code == 200
    assert 'id="writeback_retry_horizon_minutes-error"' in page.text
    assert "whole number of minutes from 5 to 10080" in page.text


def sms_form(page: requests.Response, **over: str) -> dict[str, str]:
    """The SMS settings form as the page filled it (consents given), with ``over`` typed in."""
    values = {name: html.unescape(value) for name, value in
              re.findall(r'<input type="(?:text|number|time)" id="[^"]+" name="([^"]+)" value="([^"]*)"', page.text)}
    texts = {name: html.unescape(text) for name, text in
             re.findall(r'<textarea id="[^"]+" name="(tpl-[^"]+)"[^>]*>([^<]*)</textarea>', page.text)}
    return {"csrf_token": csrf_of(page), **values, **texts, "consentSendOnBehalf": "on",
            "consentPatientsAgreed": "on", "confirm_booked": "on", "confirm_changed": "on",
            "confirm_cancelled": "on", "default_language": "en", **over}


def refusal_summary(answer: requests.Response) -> str:
    """The error summary of a save the page refused (422)."""
    assert answer.status_code == 422
    return answer.text.split('id="error-summary"')[1].split("</div>")[0]


def new_environments_sms_page(admin: PortalUser, service_settings: dict[str, str]
                              ) -> tuple[str, str, requests.Response]:
    """A new environment made with the form: its ID, its SMS page's path, and that page."""
    created = form_of(admin, service_settings["EPIC_STANDIN_URL"])
    assert admin.session.post(f"{admin.base}/api/portal/environments", data=created,
                              allow_redirects=False).status_code == 303
    path = f"/api/portal/environments/{created['id']}/sms"
    return created["id"], path, admin.get(path)


def test_the_sms_page_sets_help_contact_countries_and_cap_refuses_bad_values_and_audits(
        admin: PortalUser, service_settings: dict[str, str]):
    environment_id, path, page = new_environments_sms_page(admin, service_settings)
    assert page.status_code == 200
    assert 'id="help_contact"' in page.text and 'id="reachable_countries"' in page.text
    assert 'name="per_number_cap" value="6"' in page.text and 'name="per_number_window_hours" value="72"' in page.text

    saved = admin.session.post(f"{admin.base}{path}", allow_redirects=False, data=sms_form(
        page, help_contact="800-555-0199", reachable_countries="us, ca", per_number_cap="4",
        per_number_window_hours="48"))
    assert saved.status_code == 303, saved.text
    sms = admin.get(f"/api/config/environments/{environment_id}").json()["sms"]
    assert (sms["help_contact"], sms["reachable_countries"], sms["per_number_cap"],
            sms["per_number_window_hours"]) == ("800-555-0199", ["US", "CA"], 4, 48)
    shown = admin.get(path)
    assert 'name="help_contact" value="800-555-0199"' in shown.text and 'value="US, CA"' in shown.text
    assert "Help: 800-555-0199. Msg&amp;data rates may apply." in shown.text  # the HELP answer's preview

    unreadable = admin.session.post(f"{admin.base}{path}", allow_redirects=False,
                                    data=sms_form(shown, per_number_cap="six"))
    assert unreadable.status_code == 422
    assert ('<a href="#per_number_cap">Most texts to one phone number: write the number of texts as a whole number, '
            'e.g. 6 (0: no limit)</a>') in unreadable.text
    assert 'id="per_number_cap-error"' in unreadable.text and 'value="six"' in unreadable.text

    refused = admin.session.post(f"{admin.base}{path}", allow_redirects=False, data=sms_form(
        shown, help_contact="ask at the front desk", reachable_countries="US, XX", per_number_window_hours="1000"))
    summary = refusal_summary(refused)
    assert ('<a href="#help_contact">Help contact: the help contact must give patients a phone number, web address '
            'or email address of your organization, e.g. 800-555-0199 or contoso.example/help</a>') in summary
    assert ("<a href=\"#reachable_countries\">Countries the sender number can text: &#39;XX&#39; is not a country "
            "code: write two-letter ISO 3166 codes such as US or CA</a>") in summary
    assert ('<a href="#per_number_window_hours">Most texts to one phone number: period (hours): use a whole number of '
            'hours from 1 to 720</a>') in summary
    assert 'id="help_contact-error"' in refused.text and 'value="ask at the front desk"' in refused.text
    after = admin.get(f"/api/config/environments/{environment_id}").json()["sms"]
    assert (after["help_contact"], after["reachable_countries"], after["per_number_window_hours"]) == (
        "800-555-0199", ["US", "CA"], 48)  # nothing stored

    no_opt_out = admin.session.post(f"{admin.base}{path}", allow_redirects=False, data=sms_form(
        shown, **{"tpl-en-booked": "{org}: your video visit is booked for {when}. Join here: {link}"}))
    summary = refusal_summary(no_opt_out)
    assert ("en/booked: the text must tell patients how to opt out: add the keyword STOP in capitals, e.g. "
            "&#34;Reply STOP to opt out.&#34;") in summary
    assert admin.get(f"/api/config/environments/{environment_id}").json()["sms"]["templates"] == {}

    entries = [e for e in admin.get(f"/api/config/audit?environmentId={environment_id}").json()
               if e["action"] == "sms.update"]
    assert len(entries) == 1 and entries[0]["actor"] == "admin@contoso.example"
    assert entries[0]["summary"] == ("changed SMS settings: reachable_countries, help_contact, per_number_cap, "
                                     "per_number_window_hours, consented_by, consented_at")
    before, changed = entries[0]["before"]["sms"], entries[0]["after"]["sms"]
    assert (before["help_contact"], changed["help_contact"]) == (None, "800-555-0199")
    assert (before["per_number_cap"], changed["per_number_cap"]) == (6, 4)


def test_the_sms_page_sets_the_sending_rate_and_how_long_phone_numbers_are_kept(
        admin: PortalUser, service_settings: dict[str, str]):
    environment_id, path, page = new_environments_sms_page(admin, service_settings)
    assert 'name="rate_per_minute" value="200"' in page.text and 'name="phone_grace_minutes" value="120"' in page.text

    saved = admin.session.post(f"{admin.base}{path}", allow_redirects=False,
                               data=sms_form(page, rate_per_minute="100", phone_grace_minutes="30"))
    assert saved.status_code == 303, saved.text
    sms = admin.get(f"/api/config/environments/{environment_id}").json()["sms"]
    assert (sms["rate_per_minute"], sms["phone_grace_minutes"]) == (100, 30)
    entry = next(e for e in admin.get(f"/api/config/audit?environmentId={environment_id}").json()
                 if e["action"] == "sms.update")
    assert "rate_per_minute, phone_grace_minutes" in entry["summary"]

    shown = admin.get(path)
    refused = admin.session.post(f"{admin.base}{path}", allow_redirects=False,
                                 data=sms_form(shown, rate_per_minute="0", phone_grace_minutes="two hours"))
    summary = refusal_summary(refused)
    assert ('<a href="#rate_per_minute">Sending rate (texts a minute): use a whole number of texts a minute from 1 '
            'to 1000000</a>') in summary
    assert ('<a href="#phone_grace_minutes">Phone number kept after the visit (minutes): write the minutes as a '
            'whole number, e.g. 120</a>') in summary
    assert 'id="phone_grace_minutes-error"' in refused.text and 'value="two hours"' in refused.text
    assert 'id="rate_per_minute" name="rate_per_minute" value="0"' in refused.text

    older_page = {k: v for k, v in sms_form(shown).items() if k not in ("rate_per_minute", "phone_grace_minutes")}
    assert admin.session.post(f"{admin.base}{path}", allow_redirects=False, data=older_page).status_code == 303
    kept = admin.get(f"/api/config/environments/{environment_id}").json()["sms"]
    assert (kept["rate_per_minute"], kept["phone_grace_minutes"]) == (100, 30)
