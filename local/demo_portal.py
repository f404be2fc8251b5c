"""The set-up path, end to end on one machine: ``./dev demo --portal`` (``python -m local.demo --portal``).

What a hospital does in the configuration portal, over real HTTP against the dev runner (the portal's JSON API,
with the local sign-in), the Epic stand-in (the analyst's SMART standalone sign-in on Epic's login page) and the
ACS stand-in (phone numbers API through ``azure-communication-phonenumbers``):

1. the admin creates an environment for the Epic stand-in's FHIR base URL (checked: https, suffix, discovery)
   and names the Epic analyst who approves it;
2. uploads the interface engine's HL7 certificate (shown parsed);
3. generates a phone number (search, then a purchase that takes a few seconds, with its progress), links it,
   gives the two consents and switches texts on;
4. before approval a launch is refused (``ENVIRONMENT_NOT_APPROVED``);
5. the analyst signs in to Epic against the URL and approves;
6. the integration records appear;
7. a provider launch from Epic now reaches the visit's Teams meeting.

The same pages are driven in a browser by ``tests/e2e/test_portal_setup.py``.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from local.demo import Trace, follow
from local.seed import LOCAL_EPIC_PASSWORD, LOCAL_EPIC_USER

ADMIN_NAME = "admin@contoso.example"
ANALYST_NAME = "analyst@contoso.example"
EPIC_USER, EPIC_PASSWORD = LOCAL_EPIC_USER, LOCAL_EPIC_PASSWORD


class PortalUser:
    """A browser-like session signed in through the local sign-in form, sending the CSRF token on changes."""

    def __init__(self, base: str, name: str, roles: list[str], verify: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.verify = verify
        signed = self.http.post(f"{base}/api/portal/signin", data={"name": name, "roles": roles},
                                allow_redirects=False, timeout=30, verify=verify)
        if signed.status_code != 303:
            raise RuntimeError(f"local sign-in refused: HTTP {signed.status_code}")
        self.csrf = self.http.get(f"{base}/api/config/session", timeout=30).json()["csrfToken"]

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return self.http.request(method, self.base + path, json=body, headers=headers, allow_redirects=False,
                                 timeout=60, verify=self.http.verify, **kw)


def _ok(response: requests.Response, what: str) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


class PortalDemo:
    """One run of the set-up path against running services and a dev runner at ``runner``."""

    def __init__(self, settings: dict[str, str], runner: str, trace: Trace, app: Any) -> None:
        self.settings, self.runner, self.trace, self.app = settings, runner, trace, app
        self.verify = settings["LOCAL_CA_BUNDLE"]
        self.epic, self.iss = settings["EPIC_STANDIN_URL"], settings["EPIC_STANDIN_ISS"]
        self.env_id = f"contoso-{uuid.uuid4().hex[:4]}"
        self.client_id = f"vv-portal-{uuid.uuid4().hex[:6]}"
        self.organizer = str(uuid.uuid4())

    def _standin(self, base: str, path: str, body: Any) -> None:
        requests.post(f"{base}/_standin/{path}", json=body, verify=self.verify, timeout=10).raise_for_status()

    def run(self) -> dict[str, Any]:
        t = self.trace
        t.step(0, "In Epic and Entra beforehand: our client (both redirect URIs), the analyst, an organizer")
        self._standin(self.epic, "clients", {
            "client_id": self.client_id, "jwks_url": f"{self.runner}/api/.well-known/jwks.json",
            "redirect_uris": [f"{self.runner}/api/launch/callback", f"{self.runner}/api/portal/approvals/callback"]})
        self._standin(self.epic, "users", {"username": EPIC_USER, "password": EPIC_PASSWORD,
                                           "practitioner_id": "E9001"})
        self._standin(self.settings["GRAPH_STANDIN_URL"], "users", {"id": self.organizer, "policy": True})
        for other in self.app.repos.environments.all():  # a launch is routed by its iss: hand it over
            if self.iss in other.fhir_base_urls:
                t.say(f"environment {other.id} gives up {self.iss}")
                self.app.repos.environments.put(dataclasses.replace(
                    other, fhir_base_urls=tuple(u for u in other.fhir_base_urls if u != self.iss), approvals={},
                    approvers={}))

        admin = PortalUser(self.runner, ADMIN_NAME, ["Admin"], self.verify)
        t.step(1, f"Admin ({ADMIN_NAME}) creates environment {self.env_id}")
        refused = admin.call("POST", "/api/config/environments", {
            "id": self.env_id, "kind": "test", "display_name": "Contoso Health", "epic_client_id": self.client_id,
            "fhir_base_urls": [self.iss + "/"]})
        t.say(f"first try refused (HTTP {refused.status_code}): {refused.json()['errors'][0]['message']}")
        env = _ok(admin.call("POST", "/api/config/environments", {
            "id": self.env_id, "kind": "test", "display_name": "Contoso Health", "epic_client_id": self.client_id,
            "fhir_base_urls": [self.iss], "approvers": {self.iss: ANALYST_NAME}, "time_zone": "America/Chicago",
            "fallback_organizer_id": self.organizer, "provider_signin": False}), "create environment")
        t.say(f"created; {env['fhirBaseUrls'][0]['url']}: {env['fhirBaseUrls'][0]['status']}, approver "
              f"{env['fhirBaseUrls'][0]['approver']}")

        t.step(2, "Admin uploads the interface engine's HL7 certificate")
        from local.tls import ensure_local_material

        _key, cert = ensure_local_material().read_hl7_sender()
        shown = _ok(admin.call("POST", f"/api/config/environments/{self.env_id}/certificates", data=cert.encode(),
                               headers={"Content-Type": "application/x-pem-file"}), "upload certificate")
        t.say(f"{shown['subject']}, SHA-256 {shown['thumbprintSha256'][:23]}..., valid to {shown['notAfter'][:10]}")

        t.step(3, "Admin generates a phone number and switches texts on")
        offer = _ok(admin.call("POST", "/api/config/phone-numbers/searches", {"numberType": "tollFree"}), "search")
        t.say(f"offer {offer['numbers'][0]} for {offer['cost']}")
        purchase = _ok(admin.call("POST", "/api/config/phone-numbers/purchases",
                                  {"searchId": offer["searchId"], "consentToCosts": True}), "purchase")
        while True:
            progress = _ok(admin.call("GET", f"/api/config/phone-numbers/purchases/{purchase['id']}"), "progress")
            t.say(f"purchase: {progress['status']}")
            if progress["status"] != "running":
                break
        if progress["status"] != "succeeded":
            raise RuntimeError(f"the purchase failed: {progress.get('error')}")
        number = offer["numbers"][0]
        _ok(admin.call("POST", f"/api/config/environments/{self.env_id}/sms/sender", {"number": number}), "link")
        sms = _ok(admin.call("PUT", f"/api/config/environments/{self.env_id}/sms", {
            "consentSendOnBehalf": True, "consentPatientsAgreed": True, "enabled": True,
            "reminder_offsets_minutes": [1440, 120]}), "sms")["sms"]
        t.say(f"texts on from {sms['sender']}, reminders {sms['reminder_offsets_minutes']} minutes before, consents "
              f"by {sms['consented_by']}")
        preview = _ok(admin.call("POST", "/api/config/sms/preview", {"environmentId": self.env_id,
                                                                     "kind": "reminder"}), "preview")
        t.say(f"reminder preview ({preview['segments']} segment(s)): {preview['text']}")

        t.step(4, "Before approval, a launch is refused")
        launch = self._launch_token()
        refused_launch = requests.get(f"{self.runner}/api/launch/provider", verify=self.verify, timeout=30,
                                      params={"iss": self.iss, "launch": launch, "env": self.env_id})
        code = re.search(r'id="error-code">([A-Z_]+)<', refused_launch.text)
        t.say(f"HTTP {refused_launch.status_code} {code.group(1) if code else '?'}")

        t.step(5, f"The Epic analyst ({ANALYST_NAME}) signs in to Epic against the URL and approves")
        analyst = PortalUser(self.runner, ANALYST_NAME, ["Approver"], self.verify)
        authorize = _ok(analyst.call("POST", "/api/config/approvals/signin",
                                     {"environmentId": self.env_id, "url": self.iss}), "sign-in")["authorizeUrl"]
        login = analyst.http.get(authorize, allow_redirects=False, timeout=30, verify=self.verify)
        pending = re.search(r'name="pending" value="([^"]+)"', login.text)
        if login.status_code != 200 or pending is None:
            raise RuntimeError(f"Epic's login page did not come: HTTP {login.status_code}")
        t.say("Epic's login page: signing in as analyst")
        back = analyst.http.post(f"{self.epic}/oauth2/login", allow_redirects=False, timeout=30, verify=self.verify,
                                 data={"pending": pending.group(1), "username": EPIC_USER, "password": EPIC_PASSWORD})
        review = analyst.http.get(back.headers["Location"], allow_redirects=False, timeout=30, verify=self.verify)
        proof = re.search(r"proof=([^&]+)", review.headers.get("Location", ""))
        if proof is None:
            raise RuntimeError(f"the Epic sign-in did not complete: HTTP {review.status_code} {review.text[:200]}")
        approved = _ok(analyst.call("POST", "/api/config/approvals/approve", {
            "environmentId": self.env_id, "url": self.iss, "proof": proof.group(1)}), "approve")
        review_doc = approved["fhirBaseUrls"][0]["review"]
        t.say(f"approved by {review_doc['by']} (Epic user {review_doc['fhirUser']}) at {review_doc['at'][:19]}")

        t.step(6, "The integration records appear (TEST)")
        records = _ok(admin.call("GET", f"/api/config/environments/{self.env_id}/records"), "records")["records"]
        for record in records:
            first = record["fields"][0]
            t.say(f"{record['title']}: {first['epicField']} = {first['value']}")
        t.say(f"pages: {self.runner}/api/portal/environments/{self.env_id}/records")

        t.step(7, "A provider launch from Epic now reaches the visit's Teams meeting")
        browser = requests.Session()
        hops = follow(browser, f"{self.runner}/api/launch/provider?env={self.env_id}&iss={self.iss}"
                               f"&launch={self._launch_token()}", verify=self.verify,
                      stop_host=self.settings["GRAPH_STANDIN_URL"].split("//")[1])
        t.say(f"redirected to the meeting: {hops[-1][:90]}...")
        audit = _ok(admin.call("GET", f"/api/config/audit?environmentId={self.env_id}"), "audit")
        t.say(f"audit trail: {', '.join(e['action'] for e in reversed(audit))}")
        return {"environment": self.env_id, "records": records, "redirects": hops, "audit": audit}

    def _launch_token(self) -> str:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        response = requests.post(f"{self.epic}/_standin/launch", verify=self.verify, timeout=10, json={
            "client_id": self.client_id, "appointment_csn": str(uuid.uuid4().int % 10**10), "user_id": "E1001",
            "context": "provider", "start": start.isoformat().replace("+00:00", "Z"),
            "end": (start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")})
        response.raise_for_status()
        return response.json()["launch"]
