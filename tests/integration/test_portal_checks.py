"""How the portal reports what is wrong with a change (docs/portal.md "Checks"): every problem at once, each
named by the field's label beside the field and in the error summary (links to elements that exist), the JSON
API's problem listing every error with its field path and a plain sentence; strict JSON types; quoted ETags;
the SMS segment budget checked only where texts can be sent; the GET's SMS object can be PUT back."""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.portal_client import PortalUser, served_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_portal_checks_tests") as public:
        yield public


@pytest.fixture(scope="module")
def admin(runner: str, service_settings: dict[str, str]) -> PortalUser:
    return PortalUser(runner, "admin@contoso.example", ("Admin",), service_settings["REQUESTS_CA_BUNDLE"])


@pytest.fixture(scope="module")
def epic_base(service_settings: dict[str, str]) -> str:
    return service_settings["EPIC_STANDIN_URL"]


def fresh_url(epic_base: str) -> str:
    return f"{epic_base}/org{uuid.uuid4().hex[:8]}/api/FHIR/R4"


def csrf_of(page: requests.Response) -> str:
    return html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]


def new_form(admin: PortalUser, epic_base: str, **over: str) -> dict[str, str]:
    """Every field of the new-environment form as the browser posts it, valid unless ``over`` changes it."""
    page = admin.get("/api/portal/environments/new")
    assert page.status_code == 200
    return {"csrf_token": csrf_of(page), "id": f"ck-{uuid.uuid4().hex[:8]}", "kind": "test",
            "display_name": "Contoso Health", "fhir_base_urls": fresh_url(epic_base), "approvers": "",
            "epic_client_id": "vv-checks", "launch_mode": "smart", "time_zone": "America/Chicago",
            "default_region": "US", "csn_identifier_systems": ".7.3.698084.8", "conference_id_field": "",
            "department_organizers": "", "fallback_organizer_id": "", "provider_signin": "on",
            "appointment_id_order": "SCH-2\nSCH-1", "writeback_vendor_name": "OpenVirtualVisits",
            "writeback_status_codes": "", "writeback_retry_horizon_minutes": "1440", "hl7_auth": "jws",
            "client_assertion_alg": "RS384", "encrypted_fields": "", "encrypted_max_age_seconds": "300",
            "presence_source": "auto", "monthly_visit_allocation": "", "lobby_bypass_scope": "organization",
            **over}


def summary_of(page: requests.Response) -> list[tuple[str, str]]:
    """The error summary's entries: (link target, text)."""
    box = page.text.split('id="error-summary"')[1].split("</div>")[0]
    return [(target, html.unescape(text)) for target, text in re.findall(r'<li><a href="#([^"]+)">(.*?)</a></li>', box)]


def assert_links_resolve(page: requests.Response) -> None:
    for target, text in summary_of(page):
        assert f'id="{target}"' in page.text, (target, text)


def errors_of(answer: requests.Response) -> dict[str, list[str]]:
    assert answer.status_code == 422, answer.text
    found: dict[str, list[str]] = {}
    for error in answer.json()["errors"]:
        found.setdefault(error["field"], []).append(f"{error['label']}: {error['message']}")
    return found


def created(admin: PortalUser, epic_base: str, **extra: Any) -> dict[str, Any]:
    body = {"id": f"ck-{uuid.uuid4().hex[:8]}", "kind": "test", "display_name": "Contoso Health",
            "fhir_base_urls": [fresh_url(epic_base)], "epic_client_id": "vv-checks", **extra}
    answer = admin.send("POST", "/api/config/environments", body)
    assert answer.status_code == 201, answer.text
    return answer.json()


# ---- the environment form -------------------------------------------------------------------------------------
def test_saving_the_empty_new_environment_form_names_every_required_field_by_its_label(admin: PortalUser,
                                                                                       epic_base: str):
    form = new_form(admin, epic_base, id="", display_name="", fhir_base_urls="", epic_client_id="")
    answer = admin.session.post(f"{admin.base}/api/portal/environments", data=form, allow_redirects=False)
    assert answer.status_code == 422
    summary = summary_of(answer)
    assert [target for target, _ in summary] == ["id", "display_name", "fhir_base_urls", "epic_client_id"]
    assert [text.split(":")[0] for _, text in summary] == ["Environment ID", "Organization name", "FHIR base URLs",
                                                           "Epic client ID"]
    for field in ("id", "display_name", "fhir_base_urls", "epic_client_id"):
        assert f'id="{field}-error"' in answer.text
    assert "display_name:" not in answer.text and "Field required" not in answer.text
    assert_links_resolve(answer)


def test_every_mistake_of_the_form_is_reported_in_one_save(admin: PortalUser, epic_base: str):
    form = new_form(admin, epic_base, id="<script>", time_zone="Mars/Olympus", default_region="ZZ",
                    approvers="garbage line", writeback_retry_horizon_minutes="99999999999999999999",
                    encrypted_max_age_seconds="1e3", department_organizers="10501 5b4e")
    answer = admin.session.post(f"{admin.base}/api/portal/environments", data=form, allow_redirects=False)
    assert answer.status_code == 422
    texts = dict(summary_of(answer))
    assert set(texts) == {"id", "approvers", "time_zone", "default_region", "department_organizers",
                          "writeback_retry_horizon_minutes", "encrypted_max_age_seconds"}
    assert texts["approvers"] == "Approver of each FHIR base URL: 'garbage line': write each line as key = value"
    assert texts["time_zone"] == "Time zone: 'Mars/Olympus' is not an IANA time zone such as America/Chicago"
    assert texts["encrypted_max_age_seconds"] == ("Encrypted link maximum age (seconds): use a whole number of "
                                                  "seconds from 1 to 3600")
    assert texts["writeback_retry_horizon_minutes"].startswith("Write-back retry horizon (minutes): use a whole")
    assert_links_resolve(answer)
    assert admin.get(f"/api/portal/environments/{form['id']}").status_code == 404


def test_a_crafted_post_missing_fields_names_each_missing_field(admin: PortalUser, epic_base: str):
    token = new_form(admin, epic_base)["csrf_token"]
    answer = admin.session.post(f"{admin.base}/api/portal/environments", data={"csrf_token": token, "id": "zz-1"},
                                allow_redirects=False)
    assert answer.status_code == 422
    texts = dict(summary_of(answer))
    assert texts == {
        "kind": "Epic environment: choose test or production",
        "display_name": "Organization name: enter the organization's name as patients know it",
        "fhir_base_urls": "FHIR base URLs: enter at least one FHIR base URL",
        "epic_client_id": "Epic client ID: enter the client ID of our app in this Epic environment (Epic "
                          "Connection Hub)"}
    assert_links_resolve(answer)


# ---- the SMS segment budget -------------------------------------------------------------------------------------
NAME = "Clínica San José — Telehealth"


def test_an_accented_name_is_saved_with_texts_off_and_the_sms_save_says_once_how_to_spell_it(admin: PortalUser,
                                                                                            epic_base: str):
    form = new_form(admin, epic_base, display_name=NAME)
    saved = admin.session.post(f"{admin.base}/api/portal/environments", data=form, allow_redirects=False)
    assert saved.status_code == 303, saved.text  # texts are off: no text will carry the name
    assert admin.send("PATCH", f"/api/config/environments/{form['id']}",
                      {"display_name": "Ascension St. Vincent’s"}).status_code == 200

    page = admin.get(f"/api/portal/environments/{form['id']}/sms")
    values = {name: html.unescape(value) for name, value in re.findall(
        r'<input type="(?:text|number|time)" id="[^"]+" name="([^"]+)" value="([^"]*)"', page.text)}
    texts = {name: html.unescape(text) for name, text in re.findall(
        r'<textarea id="[^"]+" name="(tpl-[^"]+)"[^>]*>([^<]*)</textarea>', page.text)}
    answer = admin.session.post(f"{admin.base}/api/portal/environments/{form['id']}/sms", allow_redirects=False,
                                data={"csrf_token": csrf_of(page), **values, **texts})
    assert answer.status_code == 422
    summary = summary_of(answer)
    assert len(summary) == 1  # once, not once per template
    target, text = summary[0]
    assert target == "templates" and 'id="templates"' in answer.text
    assert text.startswith("Organization name: texts are checked with this name")
    assert "Write it as \"Ascension St. Vincent's\" (’ -> ')" in text


def test_with_texts_on_an_accented_name_is_refused_once_beside_the_name(app: Any, admin: PortalUser, epic_base: str):
    env = created(admin, epic_base)
    stored = app.repos.environments.get(env["id"])
    app.repos.environments.put(dataclasses.replace(stored, sms=dataclasses.replace(
        stored.sms, enabled=True, sender="+18005550100", consented_by="admin", consented_at="2026-01-01T00:00:00Z")))
    answer = admin.send("PATCH", f"/api/config/environments/{env['id']}", {"display_name": NAME})
    assert errors_of(answer) == {"display_name": [
        "Organization name: texts are checked with this name and it has characters outside the SMS alphabet "
        "(GSM-7): í—; each would make a text take more than 2 segments. Write it as \"Clinica San José - "
        "Telehealth\" (í -> i, — -> -), or keep this spelling with texts switched off"]}

    form_page = admin.get(f"/api/portal/environments/{env['id']}/edit")
    fields = {name: html.unescape(value) for name, value in re.findall(
        r'<input type="text" id="[^"]+" name="([^"]+)" value="([^"]*)"', form_page.text)}
    posted = admin.session.post(f"{admin.base}/api/portal/environments/{env['id']}", allow_redirects=False,
                                data={**new_form(admin, epic_base), **fields, "csrf_token": csrf_of(form_page),
                                      "fhir_base_urls": env["fhirBaseUrls"][0]["url"], "display_name": NAME,
                                      "version": ""})
    assert posted.status_code == 422, posted.text[:300]
    assert [target for target, _ in summary_of(posted)] == ["display_name"]
    assert 'id="display_name-error"' in posted.text
    assert_links_resolve(posted)


# ---- the JSON API -----------------------------------------------------------------------------------------------
def test_the_api_lists_every_error_with_its_path_label_and_a_sentence(admin: PortalUser):
    empty = errors_of(admin.send("POST", "/api/config/environments", {}))
    assert set(empty) == {"id", "kind", "display_name", "fhir_base_urls", "epic_client_id"}

    many = errors_of(admin.send("POST", "/api/config/environments", {
        "id": "<script>", "kind": "test", "display_name": "Contoso", "fhir_base_urls": "https://x/api/FHIR/R4",
        "epic_client_id": 5, "time_zone": "Mars/Olympus", "writeback_retry_horizon_minutes": 1e3,
        "default_region": "ZZ", "frame_origins": "https://a.example", "provider_signin": "yes"}))
    assert set(many) == {"id", "fhir_base_urls", "epic_client_id", "time_zone", "writeback_retry_horizon_minutes",
                         "default_region", "frame_origins", "provider_signin"}
    assert many["epic_client_id"] == ["Epic client ID: must be text (a JSON string)"]
    assert many["fhir_base_urls"] == ['FHIR base URLs: must be a list of text values, e.g. ["a", "b"]']
    assert many["frame_origins"] == ['Frame origins: must be a list of text values, e.g. ["a", "b"]']
    assert many["provider_signin"] == ["Clinicians sign in to Microsoft 365 once: must be true or false"]
    words = " ".join(m for ms in many.values() for m in ms)
    assert "Input should" not in words and "valid tuple" not in words


def test_json_whole_numbers_are_integers_only(admin: PortalUser, epic_base: str):
    env = created(admin, epic_base)
    path = f"/api/config/environments/{env['id']}"
    assert set(errors_of(admin.send("PATCH", path, {"encrypted_max_age_seconds": 1e3}))) == {
        "encrypted_max_age_seconds"}
    assert errors_of(admin.send("PUT", f"{path}/sms", {"per_number_cap": "6", "help_contact": 42})) == {
        "sms.per_number_cap": ["Most texts to one phone number: use a whole number of texts (0: no limit) from 0 "
                               "to 50"],
        "sms.help_contact": ["Help contact: must be text (a JSON string)"]}
    assert admin.send("PATCH", path, {"encrypted_max_age_seconds": 1000}).json()["encrypted_max_age_seconds"] == 1000


def test_a_patch_changing_the_id_reports_only_that(admin: PortalUser, epic_base: str):
    env = created(admin, epic_base)
    answer = admin.send("PATCH", f"/api/config/environments/{env['id']}",
                        {"id": "other", "fhir_base_urls": [env["fhirBaseUrls"][0]["url"]]})
    assert errors_of(answer) == {"id": ["Environment ID: unknown field: this is not a setting that can be sent "
                                        "here"]}


def test_approvers_need_a_sign_in_name_and_sending_facility_errors_name_their_field(admin: PortalUser,
                                                                                   epic_base: str):
    env = created(admin, epic_base)
    url = env["fhirBaseUrls"][0]["url"]
    path = f"/api/config/environments/{env['id']}"
    for name in ("<script>@x", "analyst", "analyst@contoso"):
        assert set(errors_of(admin.send("PATCH", path, {"approvers": {url: name}}))) == {"approvers"}, name
    assert admin.send("PATCH", path, {"approvers": {url: "o'brien.analyst@contoso.example"}}).status_code == 200
    assert errors_of(admin.send("PATCH", path, {"hl7_sending_facilities": ["A|B"]})) == {"hl7_sending_facilities": [
        "Hl7 sending facilities: entry 1: printable characters without surrounding spaces and without | ~ \\ & "
        "(components are joined by ^, as in MSH-4)"]}


def test_etags_are_quoted_and_if_match_is_compared_strongly(admin: PortalUser, epic_base: str):
    env = created(admin, epic_base)
    path = f"/api/config/environments/{env['id']}"
    etag = admin.get(path).headers["ETag"]
    assert re.fullmatch(r'"[^"]+"', etag)
    assert admin.send("PATCH", path, {"display_name": "A"}, headers={"If-Match": f"W/{etag}"}).status_code == 412
    quoted = admin.send("PATCH", path, {"display_name": "B"}, headers={"If-Match": etag})
    assert quoted.status_code == 200 and quoted.headers["ETag"] != etag
    unquoted = admin.send("PATCH", path, {"display_name": "C"}, headers={"If-Match": quoted.headers["ETag"][1:-1]})
    assert unquoted.status_code == 200
    listed = admin.send("PATCH", path, {"display_name": "D"},
                        headers={"If-Match": f'"nope", {unquoted.headers["ETag"]}'})
    assert listed.status_code == 200
    assert admin.send("PATCH", path, {"display_name": "E"}, headers={"If-Match": etag}).status_code == 412
    assert admin.send("PATCH", path, {"display_name": "F"}, headers={"If-Match": "*"}).status_code == 200


def test_the_sms_object_of_a_get_can_be_put_back_and_the_change_is_audited_by_field(admin: PortalUser,
                                                                                   epic_base: str):
    env = created(admin, epic_base)
    path = f"/api/config/environments/{env['id']}"
    read = admin.get(path)
    sms = read.json()["sms"]
    assert {"sender", "consented_by", "consented_at"} <= set(sms)
    answer = admin.send("PUT", f"{path}/sms", {**sms, "per_number_cap": 7, "help_contact": "800-555-0199"},
                        headers={"If-Match": read.headers["ETag"]})
    assert answer.status_code == 200, answer.text
    entry = admin.get(f"/api/config/audit?environmentId={env['id']}").json()[0]
    assert entry["summary"] == "changed SMS settings: help_contact, per_number_cap"
    assert errors_of(admin.send("PUT", f"{path}/sms", {**sms, "sender": "+18005550199"})) == {"sms.sender": [
        "Sender number: is read-only here (stored: None); link a number instead (POST .../sms/sender, or the "
        "portal's SMS page). Send the stored value or leave it out"]}


def test_the_sms_form_reports_every_mistake_in_one_save(admin: PortalUser, epic_base: str):
    env = created(admin, epic_base)
    page = admin.get(f"/api/portal/environments/{env['id']}/sms")
    values = {name: html.unescape(value) for name, value in re.findall(
        r'<input type="(?:text|number|time)" id="[^"]+" name="([^"]+)" value="([^"]*)"', page.text)}
    answer = admin.session.post(f"{admin.base}/api/portal/environments/{env['id']}/sms", allow_redirects=False, data={
        "csrf_token": csrf_of(page), **values, "enabled": "on", "reminder_offsets_minutes": "-5, abc",
        "default_language": "xx", "join_link_base_url": "http://user:pw@bit.ly/", "reachable_countries": "XX, us",
        "per_number_cap": "-1", "help_contact": "<script>" * 30, "tpl-en-booked": "{org} {nope} no link"})
    assert answer.status_code == 422
    targets = {target for target, _ in summary_of(answer)}
    assert {"enabled", "reminder_offsets_minutes", "default_language", "join_link_base_url", "reachable_countries",
            "per_number_cap", "help_contact"} <= targets, targets
    assert not any(text.startswith(("sms.", "per_number_cap")) for _, text in summary_of(answer))
    assert_links_resolve(answer)


# ---- approving a new environment on the runner's set-up (F4) ------------------------------------------------------
def test_on_the_runners_set_up_a_new_environment_under_an_organization_base_can_be_approved(
        admin: PortalUser, runner: str, epic_base: str, service_settings: dict[str, str]):
    from local.seed import DEMO_CLIENT_ID, LOCAL_EPIC_PASSWORD, LOCAL_EPIC_USER, register_in_standins

    register_in_standins(service_settings)  # what `./dev runner` seeds
    url = f"{epic_base}/qa{uuid.uuid4().hex[:6]}/api/FHIR/R4"
    analyst = PortalUser(runner, "analyst2@contoso.example", ("Approver",), service_settings["REQUESTS_CA_BUNDLE"])
    env = created(admin, epic_base, fhir_base_urls=[url], epic_client_id=DEMO_CLIENT_ID,
                  approvers={url: analyst.name})
    started = analyst.send("POST", "/api/config/approvals/signin", {"environmentId": env["id"], "url": url})
    assert started.status_code == 200, started.text
    login = analyst.session.get(started.json()["authorizeUrl"], allow_redirects=False)
    assert login.status_code == 200 and "Sign in to Epic" in login.text, login.text
    pending = re.search(r'name="pending" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
    back = analyst.session.post(f"{epic_base}/oauth2/login", allow_redirects=False, data={
        "pending": pending, "username": LOCAL_EPIC_USER.lower(), "password": LOCAL_EPIC_PASSWORD})
    assert back.status_code == 302 and "/api/portal/approvals/callback" in back.headers["Location"]
    review = analyst.session.get(back.headers["Location"], allow_redirects=False)
    assert review.status_code == 303, review.text
    proof = re.search(r"proof=([^&]+)", review.headers["Location"]).group(1)  # type: ignore[union-attr]
    approved = analyst.send("POST", "/api/config/approvals/approve",
                            {"environmentId": env["id"], "url": url, "proof": proof})
    assert approved.status_code == 200, approved.text
    assert approved.json()["fhirBaseUrls"][0]["status"] == "approved"
    assert approved.json()["fhirBaseUrls"][0]["review"]["fhirUser"] == f"{url}/Practitioner/E9001"


def test_the_epic_standin_answers_an_unknown_fhir_base_as_epic_does(admin: PortalUser, epic_base: str,
                                                                   service_settings: dict[str, str]):
    ca = service_settings["REQUESTS_CA_BUNDLE"]
    unknown = requests.get(f"{epic_base}/a/b/api/FHIR/R4/.well-known/smart-configuration", verify=ca, timeout=10)
    assert unknown.status_code == 404
    body = {"id": f"ck-{uuid.uuid4().hex[:8]}", "kind": "test", "display_name": "Contoso Health",
            "fhir_base_urls": [f"{epic_base}/a/b/api/FHIR/R4"], "epic_client_id": "vv-checks"}
    refused = errors_of(admin.send("POST", "/api/config/environments", body))
    assert list(refused) == ["fhir_base_urls"] and "SMART discovery" in refused["fhir_base_urls"][0]
