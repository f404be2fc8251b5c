"""The local services speak the real contracts: real SDKs (azure-cosmos, azure-storage-queue,
azure-communication-sms, MSAL) and raw HTTP against the ``test`` profile started by ``local.services``."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from local.services import ServiceHandle
from local.standins.acs_sms import expected_signature
from local.testing import JwksServer, client_assertion, reset_standins, rsa_public_jwk, running_services

pytestmark = pytest.mark.integration

SENDER = "+15555550100"
PATIENT = "+15555550123"
OTHER = "+15555550124"


@pytest.fixture(scope="module")
def services() -> Iterator[ServiceHandle]:
    with running_services("test") as handle:
        yield handle


@pytest.fixture
def ca(services: ServiceHandle) -> str:
    return str(services.material.ca_cert)


@pytest.fixture(autouse=True)
def _clean_standins(services: ServiceHandle) -> None:
    reset_standins(services)


# ---- Cosmos-compatible server ------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_cosmos_sdk_crud_query_and_if_match(services: ServiceHandle) -> None:
    from azure.core import MatchConditions
    from azure.cosmos import CosmosClient, PartitionKey, exceptions

    s = services.settings
    client = CosmosClient(s["COSMOS_ENDPOINT"], s["COSMOS_KEY"], connection_verify=False)
    db = client.create_database_if_not_exists(f"standins-{uuid.uuid4().hex[:8]}")
    try:
        container = db.create_container_if_not_exists("items", partition_key=PartitionKey(path="/id"))
        created = container.create_item({"id": "a1", "state": "pending", "n": 1})
        read = container.read_item("a1", partition_key="a1")
        assert read["state"] == "pending" and read["_etag"] == created["_etag"]
        rows = list(container.query_items("SELECT * FROM c WHERE c.state = @s",
                                          parameters=[{"name": "@s", "value": "pending"}],
                                          enable_cross_partition_query=True))
        assert [r["id"] for r in rows] == ["a1"]
        updated = container.replace_item("a1", dict(read, state="sent"), etag=read["_etag"],
                                         match_condition=MatchConditions.IfNotModified)
        assert updated["state"] == "sent"
        with pytest.raises(exceptions.CosmosAccessConditionFailedError):
            container.replace_item("a1", dict(read, state="failed"), etag=read["_etag"],
                                   match_condition=MatchConditions.IfNotModified)
    finally:
        client.delete_database(db.id)


# ---- Azurite -----------------------------------------------------------------------------------------
def test_azurite_queue_base64_roundtrip(services: ServiceHandle) -> None:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    conn = services.settings["AzureWebJobsStorage"]
    name = f"standins-{uuid.uuid4().hex[:8]}"
    producer = QueueClient.from_connection_string(conn, name, message_encode_policy=TextBase64EncodePolicy())
    producer.create_queue()
    try:
        producer.send_message('{"id": "x|confirmation|1"}')
        raw = QueueClient.from_connection_string(conn, name).peek_messages()[0].content
        assert base64.b64decode(raw).decode() == '{"id": "x|confirmation|1"}'
        consumer = QueueClient.from_connection_string(conn, name, message_decode_policy=TextBase64DecodePolicy())
        msgs = list(consumer.receive_messages())
        assert [m.content for m in msgs] == ['{"id": "x|confirmation|1"}']
        consumer.delete_message(msgs[0])
    finally:
        producer.delete_queue()


# ---- ACS SMS -----------------------------------------------------------------------------------------
def _sms_client(services: ServiceHandle, conn: str | None = None, **kwargs: Any) -> Any:
    from azure.communication.sms import SmsClient

    return SmsClient.from_connection_string(conn or services.settings["ACS_CONNECTION_STRING"],
                                            connection_verify=str(services.material.ca_cert), **kwargs)


def test_sms_sdk_sends_through_standin(services: ServiceHandle, ca: str) -> None:
    results = _sms_client(services).send(from_=SENDER, to=[PATIENT, "0123"], message="Your visit is at 10:00",
                                         enable_delivery_report=True, tag="confirmation")
    assert results[0].successful and results[0].http_status_code == 202 and results[0].message_id
    assert not results[1].successful and results[1].http_status_code == 400
    assert results[1].error_message == "Invalid To phone number format."
    recorded = requests.get(f"{services.url('acs')}/_standin/messages", verify=ca, timeout=5).json()
    ok = [m for m in recorded if m["successful"]]
    assert [(m["to"], m["message"], m["tag"], m["enableDeliveryReport"]) for m in ok] == [
        (PATIENT, "Your visit is at 10:00", "confirmation", True)]


def test_sms_wrong_key_is_401(services: ServiceHandle) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    wrong = base64.b64encode(b"k" * 32).decode()
    client = _sms_client(services, f"endpoint={services.url('acs')}/;accesskey={wrong}")
    with pytest.raises(ClientAuthenticationError):
        client.send(from_=SENDER, to=PATIENT, message="hi")


def test_sms_raw_stale_date_and_bad_hash_are_401(services: ServiceHandle, ca: str) -> None:
    key = base64.b64decode(services.material.read_acs_key())
    body = b'{"from": "+15555550100", "smsRecipients": [{"to": "+15555550123"}], "message": "hi"}'
    host = services.url("acs").removeprefix("https://")
    path = "/sms?api-version=2021-03-07"

    def post(date: str, content: bytes, claimed: bytes) -> requests.Response:
        digest = base64.b64encode(hashlib.sha256(claimed).digest()).decode()
        sig = expected_signature(key, "POST", path, date, host, digest)
        return requests.post(f"{services.url('acs')}{path}", data=content, verify=ca, timeout=5, headers={
            "Content-Type": "application/json", "x-ms-date": date, "x-ms-content-sha256": digest,
            "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={sig}"})

    now = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    stale = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 3600))
    assert post(now, body, body).status_code == 202
    assert post(stale, body, body).status_code == 401
    assert post(now, body, body + b" ").status_code == 401


def test_sms_scripted_faults(services: ServiceHandle, ca: str) -> None:
    from azure.core.exceptions import HttpResponseError

    acs = services.url("acs")
    # One 429 with Retry-After: the SDK's retry policy absorbs it; the text is accepted exactly once.
    requests.post(f"{acs}/_standin/faults", json={"path_prefix": "/sms", "responses": [
        {"status": 429, "retry_after": 1}]}, verify=ca, timeout=5).raise_for_status()
    started = time.monotonic()
    assert _sms_client(services).send(from_=SENDER, to=PATIENT, message="one")[0].successful
    assert time.monotonic() - started >= 0.9
    # A permanent per-recipient failure inside a 202.
    requests.post(f"{acs}/_standin/recipient-faults", json={
        "to": OTHER, "httpStatusCode": 400, "errorMessage": "Recipient blocked"}, verify=ca, timeout=5)
    res = _sms_client(services).send(from_=SENDER, to=[PATIENT, OTHER], message="two")
    assert [r.successful for r in res] == [True, False] and res[1].error_message == "Recipient blocked"
    # A 500 for requests with this recipient, with the SDK's retries off.
    requests.post(f"{acs}/_standin/recipient-faults", json={"to": PATIENT, "status": 500, "times": 1},
                  verify=ca, timeout=5)
    with pytest.raises(HttpResponseError) as err:
        _sms_client(services, retry_total=0).send(from_=SENDER, to=PATIENT, message="three")
    assert err.value.status_code == 500
    # A delay longer than the client's read timeout.
    requests.post(f"{acs}/_standin/faults", json={"path_prefix": "/sms", "responses": [{"delay": 2}]},
                  verify=ca, timeout=5)
    from azure.core.exceptions import ServiceResponseError

    with pytest.raises(ServiceResponseError):
        _sms_client(services, retry_total=0, read_timeout=0.5).send(from_=SENDER, to=PATIENT, message="four")
    sent = [m["message"] for m in requests.get(f"{acs}/_standin/messages", verify=ca, timeout=5).json()
            if m["successful"]]
    assert sent.count("one") == 1 and "three" not in sent


# ---- Entra + Graph -----------------------------------------------------------------------------------
def _msal_app(services: ServiceHandle, *, sha256: bool) -> Any:
    import msal

    s = services.settings
    pem = services.material.graph_pem.read_text()
    key = pem[: pem.index("-----BEGIN CERTIFICATE-----")]
    cert = pem[pem.index("-----BEGIN CERTIFICATE-----"):]
    if sha256:
        credential = {"private_key": key, "public_certificate": cert}
    else:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        thumb = x509.load_pem_x509_certificate(cert.encode()).fingerprint(hashes.SHA1()).hex()  # noqa: S303
        credential = {"private_key": key, "thumbprint": thumb}
    return msal.ConfidentialClientApplication(
        s["GRAPH_CLIENT_ID"], authority=f"{s['GRAPH_AUTHORITY_HOST']}/{s['GRAPH_TENANT_ID']}",
        client_credential=credential, instance_discovery=False)


@pytest.fixture(autouse=True)
def _requests_ca_bundle(services: ServiceHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    # MSAL uses requests, which trusts REQUESTS_CA_BUNDLE (it also overrides a Session's own verify).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", services.settings["REQUESTS_CA_BUNDLE"])


@pytest.mark.parametrize("sha256", [True, False], ids=["x5t#S256", "x5t"])
def test_msal_client_credentials_then_create_or_get(services: ServiceHandle, ca: str, sha256: bool) -> None:
    graph = services.url("graph")
    user = str(uuid.uuid4())
    requests.post(f"{graph}/_standin/users", json={"id": user}, verify=ca, timeout=5).raise_for_status()
    result = _msal_app(services, sha256=sha256).acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result.get("error_description")
    headers = {"Authorization": f"Bearer {result['access_token']}"}
    url = f"{services.settings['GRAPH_BASE_URL']}/users/{user}/onlineMeetings/createOrGet"
    body = {"externalId": "env1-csn-123", "subject": "Virtual visit", "startDateTime": "2030-01-02T10:00:00Z",
            "endDateTime": "2030-01-02T10:30:00Z", "lobbyBypassSettings": {"scope": "organizer"}}
    first = requests.post(url, json=body, headers=headers, verify=ca, timeout=5)
    assert first.status_code == 201, first.text
    again = requests.post(url, json=dict(body, subject="changed"), headers=headers, verify=ca, timeout=5)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    meeting = first.json()
    assert meeting["externalId"] == "env1-csn-123" and meeting["chatInfo"]["threadId"]
    assert meeting["lobbyBypassSettings"]["scope"] == "organizer"
    assert meeting["joinWebUrl"].startswith(f"{graph}/l/meetup-join/")
    got = requests.get(f"{services.settings['GRAPH_BASE_URL']}/users/{user}/onlineMeetings/{meeting['id']}",
                       headers=headers, verify=ca, timeout=5)
    assert got.status_code == 200 and got.json()["joinWebUrl"] == meeting["joinWebUrl"]
    page = requests.get(meeting["joinWebUrl"], verify=ca, timeout=5)
    assert page.status_code == 200 and "standin-meeting" in page.text
    assert len(requests.get(f"{graph}/_standin/meetings", verify=ca, timeout=5).json()) == 1


def test_msal_delegated_sign_in_then_me_create_or_get(services: ServiceHandle, ca: str) -> None:
    graph = services.url("graph")
    redirect_uri = f"{services.settings['PUBLIC_BASE_URL']}/api/auth/teams/callback"
    pem = services.material.graph_pem.read_text()
    requests.post(f"{graph}/_standin/apps", json={
        "client_id": services.settings["GRAPH_CLIENT_ID"], "redirect_uris": [redirect_uri],
        "certificate_pem": pem[pem.index("-----BEGIN CERTIFICATE-----"):]}, verify=ca, timeout=5).raise_for_status()
    oid = str(uuid.uuid4())
    requests.post(f"{graph}/_standin/users", json={"id": oid}, verify=ca, timeout=5).raise_for_status()
    requests.post(f"{graph}/_standin/signin", json={"id": oid}, verify=ca, timeout=5).raise_for_status()
    app = _msal_app(services, sha256=True)
    flow = app.initiate_auth_code_flow(["OnlineMeetings.ReadWrite"], redirect_uri=redirect_uri)
    back = requests.get(flow["auth_uri"], allow_redirects=False, verify=ca, timeout=5)
    assert back.status_code == 302 and back.headers["Location"].startswith(redirect_uri)
    auth_response = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back.headers["Location"]).query))
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result, result.get("error_description")
    assert result["id_token_claims"]["oid"] == oid
    created = requests.post(f"{services.settings['GRAPH_BASE_URL']}/me/onlineMeetings/createOrGet",
                            json={"externalId": "env1-csn-9"}, verify=ca, timeout=5,
                            headers={"Authorization": f"Bearer {result['access_token']}"})
    assert created.status_code == 201, created.text
    # The code is single use.
    assert "error" in app.acquire_token_by_auth_code_flow(flow, auth_response)


def test_graph_errors(services: ServiceHandle, ca: str) -> None:
    graph = services.url("graph")
    base = services.settings["GRAPH_BASE_URL"]
    no_policy = str(uuid.uuid4())
    requests.post(f"{graph}/_standin/users", json={"id": no_policy, "policy": False}, verify=ca, timeout=5)
    token = _msal_app(services, sha256=True).acquire_token_for_client(
        ["https://graph.microsoft.com/.default"])["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def create(user: str, body: dict[str, Any], hdrs: dict[str, str] = headers) -> requests.Response:
        return requests.post(f"{base}/users/{user}/onlineMeetings/createOrGet", json=body, headers=hdrs,
                             verify=ca, timeout=5)

    assert create(str(uuid.uuid4()), {"externalId": "x"}).status_code == 404
    forbidden = create(no_policy, {"externalId": "x"})
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "Forbidden"
    assert "Application is not allowed" in forbidden.json()["error"]["message"]
    requests.post(f"{graph}/_standin/users", json={"id": "u-ok"}, verify=ca, timeout=5)
    assert create("u-ok", {"subject": "no external id"}).status_code == 400
    assert create("u-ok", {"externalId": "x"}, {"Authorization": "Bearer nope"}).status_code == 401
    assert create("u-ok", {"externalId": "x"}, {}).status_code == 401
    requests.post(f"{graph}/_standin/faults", json={"path_prefix": "/v1.0/", "responses": [
        {"status": 429, "retry_after": 7}]}, verify=ca, timeout=5)
    throttled = create("u-ok", {"externalId": "x"})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert create("u-ok", {"externalId": "x"}).status_code == 201


def test_entra_rejects_unknown_certificate(services: ServiceHandle, ca: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token_url = f"{services.settings['GRAPH_AUTHORITY_HOST']}/{services.settings['GRAPH_TENANT_ID']}/oauth2/v2.0/token"
    assertion = client_assertion(key, client_id=services.settings["GRAPH_CLIENT_ID"], token_url=token_url,
                                 kid="k", alg="RS256", extra_headers={"x5t": "AAAA"})
    resp = requests.post(token_url, data={
        "grant_type": "client_credentials", "client_id": services.settings["GRAPH_CLIENT_ID"],
        "scope": "https://graph.microsoft.com/.default", "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, verify=ca, timeout=5)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"


# ---- Epic --------------------------------------------------------------------------------------------
CLIENT_ID = "vv-local-client"
REDIRECT = "http://127.0.0.1:7171/api/launch/callback"


class Epic:
    """Drives the Epic stand-in the way our app does (raw HTTP)."""

    def __init__(self, services: ServiceHandle, jwks: JwksServer, key: Any, kid: str) -> None:
        self.base = services.url("epic")
        self.iss = f"{self.base}/api/FHIR/R4"
        self.ca = str(services.material.ca_cert)
        self.key, self.kid = key, kid
        self.token_url = f"{self.base}/oauth2/token"
        requests.post(f"{self.base}/_standin/clients", json={
            "client_id": CLIENT_ID, "jwks_url": jwks.url, "redirect_uris": [REDIRECT]},
            verify=self.ca, timeout=5).raise_for_status()

    def launch(self, csn: str = "123456", **extra: Any) -> str:
        body = {"client_id": CLIENT_ID, "appointment_csn": csn, "user_id": "E1001", "context": "provider",
                **extra}
        resp = requests.post(f"{self.base}/_standin/launch", json=body, verify=self.ca, timeout=5)
        resp.raise_for_status()
        assert resp.json()["iss"] == self.iss
        return resp.json()["launch"]

    def authorize(self, launch: str, verifier: str, **override: str) -> dict[str, str]:
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
                  "scope": "launch openid fhirUser", "state": "st-1", "aud": self.iss, "launch": launch,
                  "code_challenge": challenge, "code_challenge_method": "S256", "nonce": "n-1"}
        params.update(override)
        resp = requests.get(f"{self.base}/oauth2/authorize", params=params, allow_redirects=False,
                            verify=self.ca, timeout=5)
        assert resp.status_code == 302, resp.text
        location = resp.headers["Location"]
        assert location.startswith(REDIRECT)
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))

    def assertion(self, **kwargs: Any) -> str:
        return client_assertion(self.key, client_id=CLIENT_ID, token_url=self.token_url, kid=self.kid, **kwargs)

    def token(self, code: str, verifier: str, assertion: str | None = None) -> requests.Response:
        return requests.post(self.token_url, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion or self.assertion()}, verify=self.ca, timeout=5)


@pytest.fixture
def epic(services: ServiceHandle) -> Iterator[Epic]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = rsa_public_jwk(key)
    with JwksServer([jwk]) as jwks:
        yield Epic(services, jwks, key, jwk["kid"])


def _verifier() -> str:
    return secrets.token_urlsafe(48)


def test_epic_discovery(epic: Epic) -> None:
    conf = requests.get(f"{epic.iss}/.well-known/smart-configuration", verify=epic.ca, timeout=5).json()
    assert conf["token_endpoint"] == epic.token_url and conf["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-ehr", "client-confidential-asymmetric", "authorize-post"} <= set(conf["capabilities"])
    meta = requests.get(f"{epic.iss}/metadata", verify=epic.ca, timeout=5,
                        headers={"Epic-Client-ID": CLIENT_ID, "Accept": "application/fhir+json"}).json()
    uris = meta["rest"][0]["security"]["extension"][0]["extension"]
    assert {u["url"]: u["valueUri"] for u in uris}["token"] == epic.token_url


def test_epic_launch_happy_path_and_fhir_read(epic: Epic) -> None:
    verifier = _verifier()
    back = epic.authorize(epic.launch("998877", start="2030-01-02T10:00:00Z"), verifier)
    assert back["state"] == "st-1"
    resp = epic.token(back["code"], verifier)
    assert resp.status_code == 200, resp.text
    tok = resp.json()
    assert tok["token_type"] == "bearer" and tok["need_patient_banner"] == "false"
    assert tok["fhirContext"] == [{"reference": f"Appointment/{tok['appointment']}"}]
    jwks = requests.get(f"{epic.base}/oauth2/jwks", verify=epic.ca, timeout=5).json()
    header = jwt.get_unverified_header(tok["id_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(tok["id_token"], jwt.PyJWK(key).key, algorithms=["RS256"], audience=CLIENT_ID,
                        issuer=f"{epic.base}/oauth2")
    assert claims["fhirUser"] == f"{epic.iss}/Practitioner/E1001" and claims["nonce"] == "n-1"
    appt = requests.get(f"{epic.iss}/Appointment/{tok['appointment']}", verify=epic.ca, timeout=5,
                        headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert appt.status_code == 200
    assert appt.json()["identifier"][0]["value"] == "998877" and appt.json()["start"] == "2030-01-02T10:00:00Z"
    assert requests.get(f"{epic.iss}/Appointment/{tok['appointment']}", verify=epic.ca, timeout=5).status_code == 401


def test_epic_authorize_strict_checks(epic: Epic) -> None:
    wrong_aud = epic.authorize(epic.launch(), _verifier(), aud="https://127.0.0.1:1/api/FHIR/R4")
    assert wrong_aud["error"] == "invalid_request" and wrong_aud["state"] == "st-1" and "code" not in wrong_aud
    launch = epic.launch()
    assert "code" in epic.authorize(launch, _verifier())
    reused = epic.authorize(launch, _verifier())
    assert reused["error"] == "invalid_request" and "already been used" in reused["error_description"]
    no_openid = epic.authorize(epic.launch(), _verifier(), scope="launch")
    assert no_openid["error"] == "invalid_scope"
    bad = requests.get(f"{epic.base}/oauth2/authorize", params={
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": "https://evil.example/cb",
        "state": "s"}, allow_redirects=False, verify=epic.ca, timeout=5)
    assert bad.status_code == 400 and "Location" not in bad.headers


def test_epic_token_strict_checks(epic: Epic) -> None:
    # Reused code -> invalid_grant.
    verifier = _verifier()
    code = epic.authorize(epic.launch(), verifier)["code"]
    assert epic.token(code, verifier).status_code == 200
    reuse = epic.token(code, verifier)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # Bad PKCE verifier -> invalid_grant.
    code = epic.authorize(epic.launch(), _verifier())["code"]
    bad_pkce = epic.token(code, _verifier())
    assert bad_pkce.status_code == 400 and bad_pkce.json()["error"] == "invalid_grant"
    # Replayed jti -> invalid_client.
    verifier = _verifier()
    code = epic.authorize(epic.launch(), verifier)["code"]
    assertion = epic.assertion(jti="fixed-jti-1")
    verifier2 = _verifier()
    code2 = epic.authorize(epic.launch(), verifier2)["code"]
    assert epic.token(code, verifier, assertion).status_code == 200
    replay = epic.token(code2, verifier2, assertion)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_client"
    # Signed with another key (same kid) -> invalid_client; then the untouched code still works.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = client_assertion(other, client_id=CLIENT_ID, token_url=epic.token_url, kid=epic.kid)
    wrong_sig = epic.token(code2, verifier2, forged)
    assert wrong_sig.status_code == 400 and wrong_sig.json()["error"] == "invalid_client"
    # Wrong aud, lifetime over 5 minutes, HS256 -> invalid_client.
    for bad in (epic.assertion(extra_claims={"aud": f"{epic.base}/token"}), epic.assertion(lifetime=900)):
        assert epic.token(code2, verifier2, bad).json()["error"] == "invalid_client"
    assert epic.token(code2, verifier2).status_code == 200


def test_epic_accepts_es384(services: ServiceHandle) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = rsa_public_jwk(key, alg="ES384")
    with JwksServer([jwk]) as jwks:
        epic = Epic(services, jwks, key, jwk["kid"])
        verifier = _verifier()
        code = epic.authorize(epic.launch(), verifier)["code"]
        resp = epic.token(code, verifier, epic.assertion(alg="ES384"))
        assert resp.status_code == 200, resp.text


def test_epic_writeback_basic_and_backend_token(epic: Epic, services: ServiceHandle) -> None:
    url = f"{epic.base}/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus"
    params = {"ConferenceID": "conf-1", "ExternalID": "E1001", "ExternalIDType": "2", "VendorName": "OpenVV",
              "ConnectionStatus": "1"}
    password = services.material.read_epic_emp_password()
    assert requests.get(url, params=params, auth=("emp$TELEHEALTH", password), verify=epic.ca,
                        timeout=5).status_code == 400  # no Epic-Client-ID
    hdr = {"Epic-Client-ID": CLIENT_ID}
    assert requests.get(url, params=params, headers=hdr, auth=("emp$TELEHEALTH", "wrong"), verify=epic.ca,
                        timeout=5).status_code == 401
    ok = requests.get(url, params=params, headers=hdr, auth=("emp$TELEHEALTH", password), verify=epic.ca, timeout=5)
    assert ok.status_code == 200 and ok.json() == {"Success": True}
    backend = requests.post(epic.token_url, data={
        "grant_type": "client_credentials", "scope": "system/Appointment.read",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": epic.assertion()}, verify=epic.ca, timeout=5)
    assert backend.status_code == 200, backend.text
    bearer = {**hdr, "Authorization": f"Bearer {backend.json()['access_token']}"}
    assert requests.get(url, params=dict(params, ConnectionStatus="2"), headers=bearer, verify=epic.ca,
                        timeout=5).status_code == 200
    requests.post(f"{epic.base}/_standin/faults", json={"path_prefix": "/api/epic", "responses": [503]},
                  verify=epic.ca, timeout=5)
    assert requests.get(url, params=params, headers=bearer, verify=epic.ca, timeout=5).status_code == 503
    calls = requests.get(f"{epic.base}/_standin/connection-status", verify=epic.ca, timeout=5).json()
    assert [(c["ConnectionStatus"], c["auth"]) for c in calls] == [("1", "basic"), ("2", "bearer")]


def test_epic_authorize_post_and_patient_context(epic: Epic) -> None:
    verifier = _verifier()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    launch = epic.launch("555000", context="patient", patient_id="ePatient1", user_id=None)
    resp = requests.post(f"{epic.base}/oauth2/authorize", data={
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT, "scope": "launch openid fhirUser",
        "state": "s2", "aud": epic.iss, "launch": launch, "code_challenge": challenge,
        "code_challenge_method": "S256"}, allow_redirects=False, verify=epic.ca, timeout=5)
    assert resp.status_code == 302
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(resp.headers["Location"]).query))
    tok = epic.token(back["code"], verifier).json()
    assert tok["patient"] == "ePatient1"
    claims = jwt.decode(tok["id_token"], options={"verify_signature": False})
    assert claims["fhirUser"] == f"{epic.iss}/Patient/ePatient1" and "nonce" not in claims
