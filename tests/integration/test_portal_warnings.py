"""Warnings an admin needs before and after a save (dev runner, Cosmos-compatible server): a change that revokes
an approval (every launch against the URL stops) is confirmed on the form, named in the API's answer with who must
approve again, and shown on the environment page afterwards; an HL7 certificate close to its end is accepted with
a warning, marked on the environment page and the list, and reported by the readiness check."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lib.models import SmsSettings
from tests.integration.portal_client import PortalUser, served_app
from tests.integration.test_portal_edit_conflicts import form_of, replaced
from tests.support.environments import make_environment
from tests.support.hl7_signing import signer

pytestmark = pytest.mark.integration

ANALYST = "analyst7@contoso.example"


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_portal_warning_tests") as public:
        yield public


@pytest.fixture(scope="module")
def admin(runner: str, service_settings: dict[str, str]) -> PortalUser:
    return PortalUser(runner, "admin@contoso.example", ("Admin",), service_settings["REQUESTS_CA_BUNDLE"])


def approved_environment(app: Any, *, approver: str | None = ANALYST) -> Any:
    env_id = f"w-{uuid.uuid4().hex[:8]}"
    url = f"https://fhir.contoso.example/{env_id}/api/FHIR/R4"
    return make_environment(app, env_id, sms=SmsSettings(enabled=False), fhir_base_urls=(url,),
                            approvers={url: approver} if approver else {})


# ---- approval revoked (F19) ---------------------------------------------------------------------------------
def test_the_api_says_which_approval_a_client_id_change_revoked_and_who_renews_it(app: Any, admin: PortalUser):
    env = approved_environment(app)
    url = env.fhir_base_urls[0]
    harmless = admin.send("PATCH", f"/api/config/environments/{env.id}", {"display_name": "Fabrikam"})
    assert harmless.status_code == 200 and harmless.json()["approvalsRevoked"] == []

    answer = admin.send("PATCH", f"/api/config/environments/{env.id}", {"epic_client_id": "vv-new-client"})
    assert answer.status_code == 200, answer.text
    [revoked] = answer.json()["approvalsRevoked"]
    assert revoked["url"] == url and revoked["approver"] == ANALYST
    assert f"refused until {ANALYST} signs in to Epic and approves it again" in revoked["message"]
    assert answer.json()["fhirBaseUrls"][0]["launchable"] is False


def test_the_form_asks_before_saving_a_change_that_stops_launches(app: Any, admin: PortalUser):
    env = approved_environment(app)
    page, action = f"/api/portal/environments/{env.id}/edit", f"/api/portal/environments/{env.id}"
    fields = replaced(form_of(admin, page, action), "epic_client_id", "vv-new-client")

    asked = admin.session.post(admin.base + action, data=fields, allow_redirects=False)
    assert asked.status_code == 200
    assert "Saving this stops launches" in asked.text and "Save anyway" in asked.text
    assert f"refused until {ANALYST} signs in to Epic" in asked.text
    assert app.portal.environments.get(env.id).epic_client_id == env.epic_client_id  # nothing saved yet
    assert 'value="vv-new-client"' in asked.text  # what was typed stays

    confirmed = admin.session.post(admin.base + action, data=[*fields, ("confirm_revoke", "yes")],
                                   allow_redirects=False)
    assert confirmed.status_code == 303
    assert app.portal.environments.get(env.id).epic_client_id == "vv-new-client"
    after = admin.get(confirmed.headers["Location"])
    assert 'id="approval-revoked"' in after.text
    assert f"Next step: {ANALYST} signs in to Epic and approves it again" in after.text


def test_without_a_named_approver_the_page_links_to_naming_one(app: Any, admin: PortalUser):
    env = approved_environment(app, approver=None)
    answer = admin.send("PATCH", f"/api/config/environments/{env.id}", {"epic_client_id": "vv-other"})
    [revoked] = answer.json()["approvalsRevoked"]
    assert revoked["approver"] is None and "no approver is named for it: name one" in revoked["message"]
    page = admin.get(f"/api/portal/environments/{env.id}")
    assert f'href="/api/portal/environments/{env.id}/edit#approvers">name one</a>' in page.text


# ---- certificate expiry (F22) ---------------------------------------------------------------------------------
def test_a_certificate_close_to_its_end_is_accepted_with_a_warning_and_marked(app: Any, admin: PortalUser):
    env = make_environment(app, f"w-{uuid.uuid4().hex[:8]}", hl7_certificates=(signer().cert_text,))
    soon = signer(days_valid_to=5)
    answer = admin.send("POST", f"/api/config/environments/{env.id}/certificates", data=soon.cert_pem,
                        headers={"Content-Type": "application/x-pem-file"})
    assert answer.status_code == 201
    assert answer.json()["expiresInDays"] == 5
    assert "expires in 5 days" in answer.json()["warning"] and "upload it now" in answer.json()["warning"]
    page = admin.get(f"/api/portal/environments/{env.id}")
    assert "Expires in 5 days" in page.text and 'id="certificate-warning"' in page.text
    # a rotation in progress: the long-lived certificate still signs, so the list does not flag the environment
    listed = admin.get("/api/portal/environments")
    assert f"{env.id}</code>" in listed.text

    admin.send("DELETE", f"/api/config/environments/{env.id}/certificates/"
                         f"{app.portal.certificates.listed(app.portal.environments.get(env.id))[0].thumbprint_id}")
    listed = admin.get("/api/portal/environments")
    row = listed.text.split(f"{env.id}</code>")[1].split("</tr>")[0]
    assert "HL7 certificate expires in 5 days" in row


def test_readiness_names_environments_whose_certificate_ends_within_30_days(app: Any):
    from lib.observability import metrics
    from lib.operations.health import check_cosmos

    soon = make_environment(app, f"w-{uuid.uuid4().hex[:8]}", hl7_certificates=(signer(days_valid_to=12).cert_text,))
    fine = make_environment(app, f"w-{uuid.uuid4().hex[:8]}", hl7_certificates=(signer().cert_text,))
    metrics.reset()
    check = check_cosmos(app)
    assert check.status == "ok"  # a warning: the app still serves everything
    expiring = check.data["certificatesExpiringSoon"]
    assert expiring[soon.id] == 12 and fine.id not in expiring
    assert metrics.snapshot()[metrics.CERTIFICATE_DAYS_LEFT][(("environment", soon.id),)] == 12
