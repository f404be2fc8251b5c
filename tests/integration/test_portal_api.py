"""The configuration portal's JSON API over HTTP (dev runner, Cosmos-compatible server, Epic and ACS stand-ins):
every rule and refusal of docs/portal.md, and the hostile cases (a Reader changing settings, an Approver approving
a URL not assigned to them, a forged principal header, a CSRF-less POST, an oversized or binary upload)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.portal_client import PortalUser, problem_code, served_app
from tests.support.hl7_signing import _pem, certificate, rsa_key, signer

pytestmark = pytest.mark.integration

ANALYST = "analyst@contoso.example"


# ---- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_portal_api_tests") as public:
        yield public


@pytest.fixture(scope="module")
def ca(service_settings: dict[str, str]) -> str:
    return service_settings["REQUESTS_CA_BUNDLE"]


@pytest.fixture(scope="module")
def epic(service_settings: dict[str, str]) -> dict[str, str]:
    return {"base": service_settings["EPIC_STANDIN_URL"], "iss": service_settings["EPIC_STANDIN_ISS"]}


@pytest.fixture(scope="module")
def admin(runner: str, ca: str) -> PortalUser:
    return PortalUser(runner, "admin@contoso.example", ("Admin",), ca)


@pytest.fixture(scope="module")
def analyst(runner: str, ca: str) -> PortalUser:
    return PortalUser(runner, ANALYST, ("Approver",), ca)


def fresh_id() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


def other_base(epic: dict[str, str]) -> str:
    """A FHIR base of the Epic stand-in that answers discovery and belongs to no other environment."""
    return f"{epic['base']}/org{uuid.uuid4().hex[:8]}/api/FHIR/R4"


def env_body(epic: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"id": fresh_id(), "kind": "test", "display_name": "Contoso Health", "fhir_base_urls": [other_base(epic)],
            "epic_client_id": "vv-test-client", "time_zone": "America/Chicago", **extra}


def messages(response: requests.Response) -> str:
    assert response.status_code == 422, response.text
    return " | ".join(e["message"] for e in response.json()["errors"])


# ---- who may call ------------------------------------------------------------------------------------------
def test_without_sign_in_the_api_answers_401(runner: str, ca: str):
    answer = requests.get(f"{runner}/api/config/environments", verify=ca, timeout=10)
    assert answer.status_code == 401 and problem_code(answer) == "NOT_SIGNED_IN"


def test_a_forged_principal_header_is_refused_when_the_platform_did_not_set_it(runner: str, ca: str):
    claims = {"auth_typ": "aad", "claims": [{"typ": "roles", "val": "Admin"}, {"typ": "oid", "val": str(uuid.uuid4())},
                                            {"typ": "preferred_username", "val": "mallory@evil.example"}]}
    forged = base64.b64encode(__import__("json").dumps(claims).encode()).decode()
    for method in ("GET", "POST"):
        answer = requests.request(method, f"{runner}/api/config/environments", verify=ca, json={}, timeout=10,
                                  headers={"X-MS-CLIENT-PRINCIPAL": forged, "X-MS-CLIENT-PRINCIPAL-IDP": "aad"})
        assert answer.status_code == 401 and problem_code(answer) == "FORGED_PRINCIPAL"
        assert "App Service authentication is not on" in answer.json()["detail"]


def test_a_reader_cannot_read_or_change_settings(runner: str, ca: str, epic: dict[str, str]):
    reader = PortalUser(runner, "reader@contoso.example", ("ReportsReader",), ca)
    assert problem_code(reader.get("/api/config/environments")) == "ROLE_MISSING"
    refused = reader.send("POST", "/api/config/environments", env_body(epic))
    assert refused.status_code == 403 and problem_code(refused) == "ROLE_MISSING"
    assert "Admin" in refused.json()["detail"]


def test_a_change_without_a_csrf_token_or_from_another_site_is_refused(admin: PortalUser, runner: str, ca: str,
                                                                       epic: dict[str, str]):
    body = env_body(epic)
    no_token = admin.send("POST", "/api/config/environments", body, csrf=False)
    assert no_token.status_code == 403 and problem_code(no_token) == "CSRF_FAILED"
    someone_else = PortalUser(runner, "other-admin@contoso.example", ("Admin",), ca)
    stolen = admin.send("POST", "/api/config/environments", body, headers={"X-CSRF-Token": someone_else.csrf},
                        csrf=False)
    assert problem_code(stolen) == "CSRF_FAILED"
    cross = admin.send("POST", "/api/config/environments", body, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and problem_code(cross) == "CROSS_SITE"
    assert admin.get(f"/api/config/environments/{body['id']}").status_code == 404  # nothing was created


# ---- environments ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "expected"), [
    ({"fhir_base_urls": ["http://ehr.example/api/FHIR/R4"]}, "must start with https://"),
    ({"fhir_base_urls": ["https://ehr.example/fhir"]}, "must end with /api/FHIR/R4"),
    ({"fhir_base_urls": ["https://ehr.example/api/FHIR/R4/"]}, "remove the trailing slash"),
    ({"fhir_base_urls": ["https://ehr.example/api/FHIR/R4?x=1"]}, "must not have a query"),
    ({"fhir_base_urls": ["https://127.0.0.1:1/api/FHIR/R4"]}, "SMART discovery did not answer"),
    ({"time_zone": "Mars/Olympus"}, "is not an IANA time zone"),
    ({"default_region": "XX"}, "is not a phone region"),
    ({"approvers": {"https://unlisted.example/api/FHIR/R4": ANALYST}}, "does not list"),
    ({"fallback_organizer_id": "not-a-guid"}, "Entra object ID"),
    ({"csn_identifier_systems": ["CSN please"]}, "use an OID suffix"),
    ({"conference_id_field": "the conference"}, "HL7 field such as SCH-4"),
    ({"kind": "staging"}, "must be 'test' or 'production'"),
    ({"id": "Has Spaces"}, "lowercase letters"),
    ({"surprise": 1}, "unknown field"),
    ({"appointment_id_order": ["SCH2"]}, "'SCH2' is not an appointment ID field: use SCH-2, SCH-1 or PV1-19"),
    ({"appointment_id_order": ["SCH-2.1"]}, "use SCH-2, SCH-1 or PV1-19"),
    ({"appointment_id_order": ["<script>"]}, "use SCH-2, SCH-1 or PV1-19"),
    ({"appointment_id_order": ["SCH-1", "sch-1 "]}, "SCH-1 is listed twice"),
    ({"appointment_id_order": []}, "name at least one appointment ID field"),
    ({"frame_origins": ["X-Evil: 1"]}, "a frame origin is https://host"),
    ({"frame_origins": ["'unsafe-inline' *"]}, "a frame origin is https://host"),
    ({"frame_origins": ["*"]}, "a frame origin is https://host"),
    ({"writeback_retry_horizon_minutes": 99999999999999999999999}, "whole number of minutes from 5 to 10080"),
    ({"writeback_retry_horizon_minutes": True}, "whole number of minutes from 5 to 10080"),
    ({"writeback_retry_horizon_minutes": -1}, "whole number of minutes from 5 to 10080"),
    ({"monthly_visit_allocation": -5}, "whole number of visits from 0 to 10000000"),
    ({"time_zone": "America/" + "x" * 300}, "is not an IANA time zone"),
    ({"client_assertion_alg": "bogus"}, "must be 'RS384' or 'ES384'"),
    ({"writeback_vendor_name": "Open\r\nVisits"}, "vendor name sent to Epic is 1 to 64 characters on one line"),
    ({"writeback_vendor_name": "V" * 70_000}, "vendor name sent to Epic is 1 to 64 characters"),
    ({"display_name": "Contoso\x00Health"}, "organization name must be one line without control characters"),
])
def test_an_environment_breaking_a_rule_is_refused_with_the_reason(admin: PortalUser, epic: dict[str, str],
                                                                   change: dict, expected: str):
    body = {**env_body(epic), **change}
    answer = admin.send("POST", "/api/config/environments", body)
    assert expected in messages(answer)
    assert answer.json()["detail"] == "The change was refused; nothing was saved."


def test_a_url_already_used_by_another_environment_is_refused(admin: PortalUser, epic: dict[str, str]):
    first = admin.send("POST", "/api/config/environments", env_body(epic))
    assert first.status_code == 201, first.text
    url = first.json()["fhir_base_urls"][0]
    again = admin.send("POST", "/api/config/environments", {**env_body(epic), "fhir_base_urls": [url]})
    assert f"is already used by environment '{first.json()['id']}'" in messages(again)


def test_create_read_change_disable_enable_and_the_audit_trail(admin: PortalUser, epic: dict[str, str]):
    body = env_body(epic, approvers={}, csn_identifier_systems=[".7.3.698084.8", "urn:oid:1.2.3.4.5"])
    body["approvers"] = {body["fhir_base_urls"][0]: ANALYST}
    created = admin.send("POST", "/api/config/environments", body)
    assert created.status_code == 201, created.text
    env = created.json()
    assert env["fhirBaseUrls"] == [{"url": body["fhir_base_urls"][0], "tag": "test", "approver": ANALYST,
                                    "status": "pending", "launchable": False, "review": None}]
    assert env["csn_identifier_systems"] == [".7.3.698084.8", "urn:oid:1.2.3.4.5"]
    path = f"/api/config/environments/{env['id']}"
    changed = admin.send("PATCH", path, {"display_name": "Contoso Clinics", "time_zone": "America/Denver"})
    assert changed.status_code == 200 and changed.json()["display_name"] == "Contoso Clinics"
    assert admin.send("POST", path + "/disable", {"reason": "pilot paused"}).json()["disabled"] is True
    assert admin.send("POST", path + "/enable", {}).json()["disabled"] is False
    trail = admin.get(f"/api/config/audit?environmentId={env['id']}").json()
    assert [e["action"] for e in trail] == ["environment.enable", "environment.disable", "environment.update",
                                            "environment.create"]
    update = trail[2]
    assert update["actor"] == "admin@contoso.example"
    assert update["before"] == {"display_name": "Contoso Health", "time_zone": "America/Chicago"}
    assert update["after"] == {"display_name": "Contoso Clinics", "time_zone": "America/Denver"}
    assert "pilot paused" in trail[1]["summary"]


def test_values_an_older_version_stored_do_not_block_saving_other_fields(app: Any, admin: PortalUser,
                                                                         epic: dict[str, str]):
    from lib.models import SmsSettings

    created = admin.send("POST", "/api/config/environments", env_body(epic))
    assert created.status_code == 201, created.text
    env_id = created.json()["id"]
    stored = app.repos.environments.get(env_id)
    app.repos.environments.put(dataclasses.replace(  # what the portal saved before it checked these
        stored, writeback_retry_horizon_minutes=99999999999999999999999, monthly_visit_allocation=-5,
        sms=SmsSettings(reminder_offsets_minutes=(525600000, 60))))
    path = f"/api/config/environments/{env_id}"
    refused = admin.send("PATCH", path, {"display_name": "Contoso Clinics", "monthly_visit_allocation": -5})
    assert "whole number of visits from 0 to 10000000" in messages(refused)  # a value sent is still checked
    changed = admin.send("PATCH", path, {"display_name": "Contoso Clinics"})
    assert changed.status_code == 200, changed.text
    env = changed.json()
    assert (env["display_name"], env["writeback_retry_horizon_minutes"]) == ("Contoso Clinics", 1440)
    assert env["monthly_visit_allocation"] is None and env["sms"]["reminder_offsets_minutes"] == [1440, 60]
    summary = admin.get(f"/api/config/audit?environmentId={env_id}").json()[0]["summary"]
    assert "reset invalid stored" in summary and "writeback_retry_horizon_minutes" in summary


def test_a_disable_reason_is_capped_at_500_characters(admin: PortalUser, epic: dict[str, str]):
    created = admin.send("POST", "/api/config/environments", env_body(epic))
    path = f"/api/config/environments/{created.json()['id']}"
    refused = admin.send("POST", path + "/disable", {"reason": "r" * 100_000})
    assert refused.status_code == 422 and admin.get(path).json()["disabled"] is False
    assert admin.send("POST", path + "/disable", {"reason": "r" * 500}).json()["disabled"] is True


def test_a_disabled_environment_cannot_be_launched(app: Any, admin: PortalUser, runner: str, ca: str,
                                                   epic: dict[str, str]):
    from lib.config.approvals import seeded_approvals

    created = admin.send("POST", "/api/config/environments", env_body(epic)).json()
    config = app.portal.environments.get(created["id"])
    app.portal.environments.store(config, seeded_approvals(config, at=dt.datetime.now(dt.UTC)),
                                  app.portal.access.principal({}, {"vv_portal_dev": app.portal.access.dev_cookie(
                                      "seed", ["Admin"])}), action="test.seed")
    admin.send("POST", f"/api/config/environments/{created['id']}/disable", {})
    launch = requests.get(f"{runner}/api/launch/provider", params={"iss": created["fhir_base_urls"][0],
                                                                   "launch": "x"},
                          verify=ca, allow_redirects=False, timeout=10)
    assert launch.status_code == 403 and 'id="error-code">ENVIRONMENT_DISABLED<' in launch.text
    assert "/api/portal/environments" in launch.text


# ---- certificates ------------------------------------------------------------------------------------------
def _ca_certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Contoso Issuing CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_certificates_are_shown_parsed_and_bad_uploads_are_refused_clearly(admin: PortalUser, epic: dict[str, str]):
    env = admin.send("POST", "/api/config/environments", env_body(epic)).json()
    path = f"/api/config/environments/{env['id']}/certificates"
    good = signer()
    x509_cert = x509.load_pem_x509_certificate(good.cert_pem)
    upload = admin.send("POST", path, data=good.cert_pem, headers={"Content-Type": "application/x-pem-file"})
    assert upload.status_code == 201, upload.text
    shown = upload.json()
    assert shown["subject"] == "CN=test-interface-engine" and shown["key"] == "RSA 2048"
    fingerprint = x509_cert.fingerprint(hashes.SHA256()).hex().upper()
    assert shown["thumbprintSha256"].replace(":", "") == fingerprint
    assert shown["notAfter"] == x509_cert.not_valid_after_utc.isoformat()

    der_b64 = base64.encodebytes(x509.load_pem_x509_certificate(signer(days_valid_to=200).cert_pem).public_bytes(
        serialization.Encoding.DER))
    assert admin.send("POST", path, data=der_b64, headers={"Content-Type": "application/pkix-cert"}).status_code == 201

    def refused(data: bytes) -> str:
        answer = admin.send("POST", path, data=data, headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code in (413, 422), answer.text
        return answer.json()["detail"]

    now = dt.datetime.now(dt.UTC)
    expired = certificate(rsa_key(), not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
    assert "already has 2 certificates" in refused(signer(days_valid_to=100).cert_pem)
    assert "private key" in refused(_pem(rsa_key()) + good.cert_pem)
    assert "expired on" in refused(expired)
    assert "2 certificates (a CA bundle" in refused(good.cert_pem + _ca_certificate())
    assert "is a CA certificate" in refused(_ca_certificate())
    assert "not a readable X.509 certificate" in refused(b"hello, this is not a certificate")
    assert "binary file" in refused(x509_cert.public_bytes(serialization.Encoding.DER))
    assert "bytes; a certificate has a few kilobytes" in refused(b"A" * (70 * 1024))

    thumbprint = shown["thumbprintId"]
    removed = admin.send("DELETE", f"{path}/{thumbprint}")
    assert removed.status_code == 200 and removed.json()["subject"] == "CN=test-interface-engine"
    view = admin.get(f"/api/config/environments/{env['id']}").json()
    assert len(view["certificates"]) == 1 and "BEGIN" not in str(view)
    actions = [e["action"] for e in admin.get(f"/api/config/audit?environmentId={env['id']}").json()]
    assert actions[:3] == ["certificate.remove", "certificate.add", "certificate.add"]


# ---- approval ----------------------------------------------------------------------------------------------
def _register(epic: dict[str, str], ca: str, runner: str, client_id: str) -> None:
    requests.post(f"{epic['base']}/_standin/clients", json={
        "client_id": client_id, "jwks_url": f"{runner}/api/.well-known/jwks.json",
        "redirect_uris": [f"{runner}/api/launch/callback", f"{runner}/api/portal/approvals/callback"]},
        verify=ca, timeout=10).raise_for_status()
    requests.post(f"{epic['base']}/_standin/users", json={"username": "ANALYST1", "password": "epic-pass",
                                                          "practitioner_id": "E9001"},
                  verify=ca, timeout=10).raise_for_status()


def _claim_iss(app: Any, iss: str) -> None:
    """A launch is routed by its iss: environments left by other tests lose it."""
    for other in app.repos.environments.all():
        if iss in other.fhir_base_urls:
            app.repos.environments.put(dataclasses.replace(
                other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != iss),
                approvers={}, approvals={}))


EPIC_PASSWORD = "epic-pass"


def _epic_signin(analyst: PortalUser, env_id: str, url: str, *, password: str = EPIC_PASSWORD) -> requests.Response:
    """Approver: start the sign-in, log in on Epic's page, come back to the callback."""
    started = analyst.send("POST", "/api/config/approvals/signin", {"environmentId": env_id, "url": url})
    assert started.status_code == 200, started.text
    login = analyst.session.get(started.json()["authorizeUrl"], allow_redirects=False)
    assert login.status_code == 200 and "Sign in to Epic" in login.text
    pending = re.search(r'name="pending" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
    back = analyst.session.post(login.url.split("/oauth2/")[0] + "/oauth2/login", allow_redirects=False,
                                data={"pending": pending, "username": "analyst1", "password": password})
    if back.status_code != 302:
        return back
    return analyst.session.get(back.headers["Location"], allow_redirects=False)


@pytest.fixture(scope="module")
def approvable(app: Any, admin: PortalUser, runner: str, ca: str, epic: dict[str, str]) -> dict[str, Any]:
    client_id = f"vv-{uuid.uuid4().hex[:8]}"
    _register(epic, ca, runner, client_id)
    _claim_iss(app, epic["iss"])
    body = env_body(epic, fhir_base_urls=[epic["iss"]], epic_client_id=client_id,
                    approvers={epic["iss"]: ANALYST}, fallback_organizer_id=str(uuid.uuid4()), provider_signin=False)
    created = admin.send("POST", "/api/config/environments", body)
    assert created.status_code == 201, created.text
    return created.json()


def test_an_unapproved_url_cannot_be_launched_and_records_are_empty(approvable: dict, admin: PortalUser,
                                                                    runner: str, ca: str, epic: dict[str, str]):
    launch = requests.get(f"{runner}/api/launch/provider", params={"iss": epic["iss"], "launch": "x"}, verify=ca,
                          allow_redirects=False, timeout=10)
    assert launch.status_code == 403 and 'id="error-code">ENVIRONMENT_NOT_APPROVED<' in launch.text
    assert "/api/portal/approvals" in launch.text
    assert admin.get(f"/api/config/environments/{approvable['id']}/records").json()["records"] == []


def test_an_approver_cannot_approve_a_url_not_assigned_to_them(approvable: dict, runner: str, ca: str,
                                                               epic: dict[str, str]):
    stranger = PortalUser(runner, "other-analyst@contoso.example", ("Approver",), ca)
    target = {"environmentId": approvable["id"], "url": epic["iss"]}
    for path, body in (("signin", target), ("approve", {**target, "proof": "x"}),
                       ("send-back", {**target, "comment": "no"})):
        answer = stranger.send("POST", f"/api/config/approvals/{path}", body)
        assert answer.status_code == 403 and problem_code(answer) == "NOT_ASSIGNED", path
        assert ANALYST in answer.json()["detail"]
    assert stranger.get("/api/config/approvals").json() == []


def test_epic_refuses_a_wrong_password_and_approval_needs_a_sign_in(approvable: dict, analyst: PortalUser,
                                                                    epic: dict[str, str]):
    wrong = _epic_signin(analyst, approvable["id"], epic["iss"], password="nope")
    assert wrong.status_code == 401 and "The user ID or password is wrong." in wrong.text
    answer = analyst.send("POST", "/api/config/approvals/approve",
                          {"environmentId": approvable["id"], "url": epic["iss"], "proof": "made-up"})
    assert answer.status_code == 422 and "Sign in to Epic" in answer.json()["detail"]


def test_approve_after_epic_sign_in_then_records_appear_and_a_change_needs_new_approval(
        app: Any, approvable: dict, admin: PortalUser, analyst: PortalUser, runner: str, ca: str,
        epic: dict[str, str]):
    env_id, iss = approvable["id"], epic["iss"]
    mine = [a for a in analyst.get("/api/config/approvals").json() if a["environmentId"] == env_id]
    assert mine == [{"environmentId": env_id, "kind": "test", "url": iss, "status": "pending"}]
    back = _epic_signin(analyst, env_id, iss)
    assert back.status_code == 303, back.text
    proof = re.search(r"proof=([^&]+)", back.headers["Location"]).group(1)  # type: ignore[union-attr]
    approved = analyst.send("POST", "/api/config/approvals/approve", {"environmentId": env_id, "url": iss,
                                                                      "proof": proof})
    assert approved.status_code == 200, approved.text
    review = approved.json()["fhirBaseUrls"][0]["review"]
    assert review["status"] == "approved" and review["by"] == ANALYST
    assert review["fhirUser"] == f"{iss}/Practitioner/E9001"
    stored = app.portal.environments.get(env_id).approvals[iss]
    assert set(dataclasses.asdict(stored)) == {"status", "by_id", "by_name", "at", "fingerprint", "fhir_user",
                                               "comment"}  # nothing else from Epic is kept
    reused = analyst.send("POST", "/api/config/approvals/approve", {"environmentId": env_id, "url": iss,
                                                                    "proof": proof})
    assert reused.status_code == 422  # a sign-in proves one approval

    records = admin.get(f"/api/config/environments/{env_id}/records").json()
    keys = [r["key"] for r in records["records"]]
    assert keys == ["provider-launch", "patient-launch", "device-test", "group-provider-launch",
                    "group-patient-launch", "direct-sms", "sms-configuration", "jwks", "redirect-uris",
                    "hl7-endpoint"]
    provider = records["records"][0]["fields"]
    assert {"epicField": "Launch URL", "value": f"{runner}/api/launch/provider",
            "note": "Epic adds iss and launch itself"} in provider
    tokens = next(f["value"] for f in provider if f["epicField"].startswith("Context tokens"))
    assert tokens == f"env={env_id}&sessionId=%CSN%&departmentId=%PERFDEPID;;; ; ;;NONE;%"
    group = records["records"][3]["fields"]
    assert any("%CONFERENCEID%" in f["value"] for f in group)

    launch = requests.get(f"{runner}/api/launch/provider", params={"iss": iss, "launch": "x"}, verify=ca,
                          allow_redirects=False, timeout=10)
    assert launch.status_code == 200 and 'action="' + epic["base"] + '/oauth2/authorize"' in launch.text

    changed = admin.send("PATCH", f"/api/config/environments/{env_id}", {"epic_client_id": "vv-another-client"})
    assert changed.json()["fhirBaseUrls"][0]["status"] == "changed"
    launch = requests.get(f"{runner}/api/launch/provider", params={"iss": iss, "launch": "x"}, verify=ca,
                          allow_redirects=False, timeout=10)
    assert 'id="error-code">ENVIRONMENT_NOT_APPROVED<' in launch.text
    admin.send("PATCH", f"/api/config/environments/{env_id}", {"epic_client_id": approvable["epic_client_id"]})


def test_epic_refusing_the_approval_sign_in_shows_its_own_words_and_the_fix(
        approvable: dict, analyst: PortalUser, epic: dict[str, str]):
    started = analyst.send("POST", "/api/config/approvals/signin", {"environmentId": approvable["id"],
                                                                    "url": epic["iss"]})
    login = analyst.session.get(started.json()["authorizeUrl"], allow_redirects=False)
    pending = re.search(r'name="pending" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
    for _ in range(5):  # Epic gives up after five wrong passwords and sends the analyst back with its reason
        back = analyst.session.post(login.url.split("/oauth2/")[0] + "/oauth2/login", allow_redirects=False,
                                    data={"pending": pending, "username": "analyst1", "password": "nope"})
    assert back.status_code == 302 and "error=access_denied" in back.headers["Location"]
    page = analyst.session.get(back.headers["Location"], allow_redirects=False)
    assert page.status_code == 422
    shown = html.unescape(page.text)
    assert "Epic answered 'access_denied': \"too many failed sign-ins\"." in shown
    assert "Your Epic user declined, or lacks the security to sign in to this app." in shown
    assert "JWKS URL" not in shown  # no guess at another cause


def test_send_back_needs_a_comment_and_keeps_the_url_unlaunchable(admin: PortalUser, analyst: PortalUser,
                                                                  epic: dict[str, str]):
    body = env_body(epic)
    body["approvers"] = {body["fhir_base_urls"][0]: ANALYST}
    env = admin.send("POST", "/api/config/environments", body).json()
    target = {"environmentId": env["id"], "url": body["fhir_base_urls"][0]}
    empty = analyst.send("POST", "/api/config/approvals/send-back", {**target, "comment": "  "})
    assert empty.status_code == 422 and "Say what the admin must change" in empty.json()["detail"]
    sent = analyst.send("POST", "/api/config/approvals/send-back", {**target, "comment": "Use the PRD URL"})
    url = sent.json()["fhirBaseUrls"][0]
    assert url["status"] == "sent_back" and url["review"]["comment"] == "Use the PRD URL" and not url["launchable"]


# ---- SMS and phone numbers ---------------------------------------------------------------------------------
def test_sms_needs_both_consents_and_checks_templates(admin: PortalUser, epic: dict[str, str]):
    env = admin.send("POST", "/api/config/environments", env_body(epic)).json()
    path = f"/api/config/environments/{env['id']}/sms"
    assert "both consents" in messages(admin.send("PUT", path, {"enabled": True}))
    one = admin.send("PUT", path, {"consentSendOnBehalf": True, "consentPatientsAgreed": False})
    assert "give both consents" in messages(one)
    long = "{org}: visit {when}. Join: {link} " + "Please bring your insurance card. " * 12
    refused = admin.send("PUT", path, {"consentSendOnBehalf": True, "consentPatientsAgreed": True,
                                       "templates": {"en": {"booked": long}}})
    assert "segments" in messages(refused)
    ok = admin.send("PUT", path, {"consentSendOnBehalf": True, "consentPatientsAgreed": True,
                                  "reminder_offsets_minutes": [1440, 120], "quiet_hours": ["20:00", "08:00"],
                                  "confirm_changed": False})
    assert ok.status_code == 200, ok.text
    sms = ok.json()["sms"]
    assert sms["consented_by"] == "admin@contoso.example" and sms["reminder_offsets_minutes"] == [1440, 120]
    assert sms["enabled"] is False  # on only with a sender
    preview = admin.send("POST", "/api/config/sms/preview", {"environmentId": env["id"], "kind": "reminder",
                                                             "language": "en"}, csrf=False)
    shown = preview.json()
    assert "Contoso Health" in shown["text"] and shown["segments"] in (1, 2) and shown["encoding"] == "GSM-7"
    custom = admin.send("POST", "/api/config/sms/preview", {"environmentId": env["id"], "kind": "booked",
                                                            "template": "{org} 🎉 {when} {link}"}, csrf=False)
    assert custom.json()["encoding"] == "UCS-2" and "🎉" in custom.json()["nonGsm7"]


def test_sms_reminder_times_and_link_address_are_checked_and_old_values_do_not_block(
        app: Any, admin: PortalUser, epic: dict[str, str]):
    env = admin.send("POST", "/api/config/environments", env_body(epic)).json()
    path = f"/api/config/environments/{env['id']}/sms"
    for offsets in ([525600000], [True], [-60], [90.5]):
        assert "from 1 to 43200" in messages(admin.send("PUT", path, {"reminder_offsets_minutes": offsets}))
    link = admin.send("PUT", path, {"join_link_base_url": "https://user:pw@visits.contoso.example"})
    assert "must not contain a user name or password" in messages(link)
    stored = app.repos.environments.get(env["id"])
    app.repos.environments.put(dataclasses.replace(stored, writeback_retry_horizon_minutes=10**23))
    ok = admin.send("PUT", path, {"reminder_offsets_minutes": [2880, 60]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["sms"]["reminder_offsets_minutes"] == [2880, 60]
    assert ok.json()["writeback_retry_horizon_minutes"] == 1440


def test_generate_a_number_slowly_then_link_it_and_a_failing_purchase_says_why(
        admin: PortalUser, epic: dict[str, str], service_settings: dict[str, str], ca: str):
    acs = service_settings["ACS_STANDIN_URL"]
    requests.post(f"{acs}/_standin/phone-numbers/behaviour", json={"purchase_seconds": 2.5}, verify=ca, timeout=10)
    search = admin.send("POST", "/api/config/phone-numbers/searches", {"country": "US", "numberType": "tollFree"})
    assert search.status_code == 201, search.text
    offer = search.json()
    assert re.fullmatch(r"\+180055501\d\d", offer["numbers"][0]) and offer["cost"] == "2.00 USD monthly"
    no_consent = admin.send("POST", "/api/config/phone-numbers/purchases", {"searchId": offer["searchId"]})
    assert no_consent.status_code == 422 and problem_code(no_consent) == "CONSENT_MISSING"
    started = admin.send("POST", "/api/config/phone-numbers/purchases",
                         {"searchId": offer["searchId"], "consentToCosts": True})
    assert started.status_code == 202, started.text
    seen = []
    for _ in range(20):
        progress = admin.get(f"/api/config/phone-numbers/purchases/{started.json()['id']}").json()
        seen.append(progress["status"])
        if progress["status"] != "running":
            break
    assert seen[0] == "running" and seen[-1] == "succeeded", seen
    number = offer["numbers"][0]
    assert number in [n["number"] for n in admin.get("/api/config/phone-numbers").json()]

    env = admin.send("POST", "/api/config/environments", env_body(epic)).json()
    not_ours = admin.send("POST", f"/api/config/environments/{env['id']}/sms/sender", {"number": "+18005550199"})
    assert not_ours.status_code == 422 and problem_code(not_ours) == "NOT_OWNED"
    linked = admin.send("POST", f"/api/config/environments/{env['id']}/sms/sender", {"number": number})
    assert linked.status_code == 200 and linked.json()["sms"]["sender"] == number

    requests.post(f"{acs}/_standin/phone-numbers/behaviour", json={"purchase_seconds": 0.2,
                                                                    "fail_next_purchase": "Insufficient funds"},
                  verify=ca, timeout=10)
    offer = admin.send("POST", "/api/config/phone-numbers/searches", {"numberType": "tollFree"}).json()
    failing = admin.send("POST", "/api/config/phone-numbers/purchases",
                         {"searchId": offer["searchId"], "consentToCosts": True}).json()
    for _ in range(10):
        progress = admin.get(f"/api/config/phone-numbers/purchases/{failing['id']}").json()
        if progress["status"] != "running":
            break
        time.sleep(0.2)
    assert progress["status"] == "failed" and "Insufficient funds" in progress["error"]


def test_the_openapi_document_is_served(runner: str, ca: str):
    doc = requests.get(f"{runner}/api/config/openapi.json", verify=ca, timeout=10).json()
    assert doc["openapi"] == "3.1.0" and "/api/config/environments/{environmentId}" in doc["paths"]
