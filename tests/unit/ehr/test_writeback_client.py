"""EpicWritebackClient: SetExternalConnectionStatus request, cached backend token, error classes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.clock import FixedClock
from lib.ehr.fhir_appointments import csn_of
from lib.ehr.writeback import (
    EpicWritebackClient,
    PermanentWritebackError,
    TransientWritebackError,
    interconnect_base,
)
from lib.models import EnvironmentConfig
from lib.smart.discovery import SmartDiscovery
from lib.smart.keys import SmartKeys
from tests.unit.smart.fake_http import fake_client
from tests.unit.smart.keys_for_tests import rsa_pem

BASE = "https://ehr.example.org/ic"
ISS = f"{BASE}/api/FHIR/R4"
URL = f"{BASE}/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus"
ENV = EnvironmentConfig(id="env1", kind="test", display_name="C", fhir_base_urls=(ISS,), approved=True,
                        epic_client_id="client-1", writeback_vendor_name="OpenVV")


def client(*writeback_answers):
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration", (200, {
        "authorization_endpoint": f"{BASE}/oauth2/authorize", "token_endpoint": f"{BASE}/oauth2/token"}))
    fake.on("POST", f"{BASE}/oauth2/token", (200, {"access_token": "backend-1", "token_type": "bearer",
                                                   "expires_in": 3600}))
    fake.on("GET", URL, *writeback_answers)
    keys = SmartKeys.from_pem(rsa_pem("a"))
    return EpicWritebackClient(http=http, discovery=SmartDiscovery(http), keys=lambda kind: keys,
                               clock=FixedClock(datetime(2026, 3, 3, tzinfo=UTC))), fake


def test_request_parameters_headers_and_cached_backend_token():
    epic, fake = client((200, {"Success": True}))
    epic.set_connection_status(ENV, conference_id="777", external_id="E1001", status="connected")
    epic.set_connection_status(ENV, conference_id="777", external_id="patient", status="disconnected")
    calls = [c for c in fake.calls if c.path_url == URL]
    assert calls[0].query == {"ConferenceID": "777", "ExternalID": "E1001", "ExternalIDType": "2",
                              "VendorName": "OpenVV", "ConnectionStatus": "1"}
    assert calls[1].query["ConnectionStatus"] == "2"
    assert calls[0].headers["Epic-Client-ID"] == "client-1"
    assert calls[0].headers["Authorization"] == "Bearer backend-1"
    token_calls = [c for c in fake.calls if c.path_url.endswith("/oauth2/token")]
    assert len(token_calls) == 1
    assert token_calls[0].form["grant_type"] == "client_credentials"


def test_a_401_is_retried_once_with_a_fresh_token():
    epic, fake = client((401, {"Success": False}), (200, {"Success": True}))
    epic.set_connection_status(ENV, conference_id="777", external_id="E1", status="connected")
    assert len([c for c in fake.calls if c.path_url.endswith("/oauth2/token")]) == 2


@pytest.mark.parametrize(("answer", "error"), [
    ((503, ""), TransientWritebackError), ((429, ""), TransientWritebackError),
    ((400, {"Success": False}), PermanentWritebackError), ((404, ""), PermanentWritebackError),
    ((200, {"Success": False}), PermanentWritebackError),
])
def test_errors_are_classified(answer, error):
    epic, _ = client(answer)
    with pytest.raises(error):
        epic.set_connection_status(ENV, conference_id="777", external_id="E1", status="connected")


def test_unreachable_epic_is_transient():
    http, _ = fake_client()
    keys = SmartKeys.from_pem(rsa_pem("a"))
    epic = EpicWritebackClient(http=http, discovery=SmartDiscovery(http), keys=lambda kind: keys,
                               clock=FixedClock(datetime(2026, 3, 3, tzinfo=UTC)))
    with pytest.raises(TransientWritebackError):
        epic.set_connection_status(ENV, conference_id="777", external_id="E1", status="connected")


def test_interconnect_base_strips_the_fhir_suffix():
    assert interconnect_base("https://h/ic/api/FHIR/R4/") == "https://h/ic"
    assert interconnect_base("https://h/api/FHIR/STU3") == "https://h"


def test_csn_is_found_under_any_organization_root():
    assert csn_of({"identifier": [{"system": "urn:oid:1.2.840.114350.1.13.861.1.7.3.698084.8", "value": "55"}]}) == "55"
    assert csn_of({"identifier": [{"system": "urn:oid:9.9", "value": "x"}, {"type": {"text": "CSN"}, "value": "66"}]}) \
        == "66"
    assert csn_of({"identifier": [{"system": "urn:oid:9.9", "value": "x"}]}) is None
