"""Step 5, token exchange and the loosely parsed launch context."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.smart.errors import LaunchError
from lib.smart.keys import SmartKeys
from lib.smart.token import exchange_code, logical_id, loose_bool, parse_token_response, request_backend_token
from lib.smart.transport import retry_after_seconds
from tests.unit.smart.fake_http import fake_client
from tests.unit.smart.keys_for_tests import ec_pem, rsa_pem

TOKEN_URL = "https://ehr.example.org/oauth2/token"
NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)


def test_epic_string_booleans_and_string_numbers_are_parsed():
    resp = parse_token_response({"access_token": "at", "token_type": "Bearer", "expires_in": "3240",
                                 "need_patient_banner": "false", "patient": "p1", "loginDepartment": "D1"})
    assert resp.expires_in == 3240
    assert resp.context.need_patient_banner is False
    assert resp.context.patient == "p1"
    assert resp.context.extra == {"loginDepartment": "D1"}


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("TRUE", True), ("false", False), (0, False),
                                                 ("maybe", None), (None, None)])
def test_loose_bool(value, expected):
    assert loose_bool(value) is expected


def test_fhir_context_appointment_wins_over_the_epic_field():
    resp = parse_token_response({"access_token": "at", "appointment": "epic-field",
                                 "fhirContext": [{"reference": "Encounter/e1"}, {"reference": "Appointment/ctx-1"}]})
    assert resp.context.appointment_id() == "ctx-1"


def test_epic_appointment_field_is_used_without_fhir_context():
    assert parse_token_response({"access_token": "at", "appointment": "a9"}).context.appointment_id() == "a9"


def test_tokens_are_not_in_the_repr():
    resp = parse_token_response({"access_token": "secret-at", "id_token": "secret-id"})
    assert "secret" not in repr(resp)


def test_a_response_without_access_token_is_an_oauth_error():
    with pytest.raises(LaunchError) as err:
        parse_token_response({"token_type": "bearer"})
    assert err.value.code == "EPIC_OAUTH_ERROR"


def test_code_exchange_sends_verifier_redirect_uri_and_client_assertion():
    http, fake = fake_client()
    fake.on("POST", TOKEN_URL, (200, {"access_token": "at", "token_type": "bearer", "id_token": "x.y.z"}))
    keys = SmartKeys.from_pem(rsa_pem("a"))
    exchange_code(http, token_endpoint=TOKEN_URL, code="the-code", redirect_uri="https://app/cb",
                  code_verifier="v" * 43, client_id="c1", keys=keys, now=NOW)
    form = fake.calls[0].form
    assert form["grant_type"] == "authorization_code"
    assert (form["code"], form["redirect_uri"], form["code_verifier"], form["client_id"]) == \
        ("the-code", "https://app/cb", "v" * 43, "c1")
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "client_secret" not in form


def test_backend_grant_is_client_credentials_with_scope():
    http, fake = fake_client()
    fake.on("POST", TOKEN_URL, (200, {"access_token": "at", "token_type": "bearer", "expires_in": 3600}))
    resp = request_backend_token(http, token_endpoint=TOKEN_URL, client_id="c1", scope="system/Appointment.read",
                                 keys=SmartKeys.from_pem(rsa_pem("a")), now=NOW)
    assert fake.calls[0].form["grant_type"] == "client_credentials"
    assert fake.calls[0].form["scope"] == "system/Appointment.read"
    assert resp.expires_in == 3600


@pytest.mark.parametrize(("status", "error", "code"), [
    (400, "invalid_grant", "LAUNCH_EXPIRED"),
    (401, "invalid_client", "EPIC_KEYS_NOT_REGISTERED"),
    (400, "unauthorized_client", "EPIC_CLIENT_NOT_MAPPED"),
    (400, "invalid_scope", "EPIC_SCOPE_NOT_GRANTED"),
    (400, "server_said_no", "EPIC_OAUTH_ERROR"),
    (429, "invalid_grant", "EPIC_THROTTLED"),
    (503, "invalid_grant", "EPIC_UNAVAILABLE"),
])
def test_token_errors_get_the_page_that_says_what_to_fix(status, error, code):
    http, fake = fake_client()
    fake.on("POST", TOKEN_URL, (status, {"error": error, "error_description": "code used"}))
    with pytest.raises(LaunchError) as err:
        exchange_code(http, token_endpoint=TOKEN_URL, code="c", redirect_uri="https://app/cb", code_verifier="v" * 43,
                      client_id="c1", keys=SmartKeys.from_pem(rsa_pem("a")), now=NOW)
    assert err.value.code == code
    if code == "EPIC_OAUTH_ERROR":
        assert "server_said_no" in err.value.admin_hint
    assert "code used" not in err.value.admin_hint  # the server's free text is never echoed


def test_code_exchange_can_sign_with_es384():
    from joserfc import jwt

    http, fake = fake_client()
    fake.on("POST", TOKEN_URL, (200, {"access_token": "at", "token_type": "bearer"}))
    keys = SmartKeys.from_pem(rsa_pem("a") + b"\n" + ec_pem("e"))
    exchange_code(http, token_endpoint=TOKEN_URL, code="c", redirect_uri="https://app/cb", code_verifier="v" * 43,
                  client_id="c1", keys=keys, now=NOW, alg="ES384")
    assertion = fake.calls[0].form["client_assertion"]
    header = jwt.decode(assertion, keys.signer("ES384")[0], algorithms=["ES384"]).header
    assert header["alg"] == "ES384" and header["kid"] == keys.jwks()["keys"][1]["kid"]


@pytest.mark.parametrize(("reference", "expected"), [
    ("456", "456"), ("Appointment/456", "456"), ("https://ehr.example.org/api/FHIR/R4/Appointment/456", "456"),
    ("Appointment/456/_history/2", "456"), ("Appointment/456?x=1", "456"), (" Appointment/456/ ", "456"),
    ("Patient/456", None), ("Appointment/", None), ("Appointment/a b", None), ("", None),
    ("Appointment/" + "x" * 65, None),
])
def test_top_level_references_are_normalised_like_fhir_context(reference, expected):
    assert logical_id(reference, "Appointment") == expected
    resp = parse_token_response({"access_token": "at", "appointment": reference})
    assert resp.context.appointment_id() == expected


def test_a_bare_id_in_fhir_context_counts_only_with_its_type():
    assert parse_token_response({"access_token": "at", "fhirContext": [{"reference": "a1"}]}).context \
        .appointment_id() is None
    assert parse_token_response({"access_token": "at", "fhirContext": [{"reference": "a1", "type": "Appointment"}]}) \
        .context.appointment_id() == "a1"


@pytest.mark.parametrize(("status", "retry_after", "code", "wait"), [
    (429, "120", "EPIC_THROTTLED", 120), (503, "7", "EPIC_UNAVAILABLE", 7),
    (429, "Tue, 03 Mar 2099 14:00:00 GMT", "EPIC_THROTTLED", 86400), (500, None, "EPIC_UNAVAILABLE", 30),
    (429, "soon", "EPIC_THROTTLED", 30),
])
def test_token_endpoint_busy_answers_carry_the_retry_after_wait(status, retry_after, code, wait):
    http, fake = fake_client()
    headers = {"Retry-After": retry_after} if retry_after else {}
    fake.on("POST", TOKEN_URL, (status, {"error": "temporarily_unavailable"}, headers))
    with pytest.raises(LaunchError) as err:
        exchange_code(http, token_endpoint=TOKEN_URL, code="c", redirect_uri="https://app/cb", code_verifier="v" * 43,
                      client_id="c1", keys=SmartKeys.from_pem(rsa_pem("a")), now=NOW)
    assert (err.value.code, err.value.retry_after) == (code, wait)


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("30") == 30
    assert retry_after_seconds("Tue, 03 Mar 2026 14:01:30 GMT", now=NOW) == 90
    assert retry_after_seconds("Tue, 03 Mar 2026 13:00:00 GMT", now=NOW) == 0
    assert retry_after_seconds("-5") is None and retry_after_seconds("") is None
