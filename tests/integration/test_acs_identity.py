"""The ACS stand-in's identity contract through the real ``azure-communication-identity`` SDK (HMAC-signed
requests), and our issuer of the patient's call credential on top of it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError

from lib.visits.call_identity import AcsCallIdentityIssuer, CallIdentityUnavailable
from local.services import ServiceHandle
from local.testing import reset_standins, running_services

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services() -> Iterator[ServiceHandle]:
    with running_services("test") as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(services: ServiceHandle) -> None:
    reset_standins(services)


def _client(services: ServiceHandle, conn: str | None = None) -> Any:
    from azure.communication.identity import CommunicationIdentityClient

    return CommunicationIdentityClient.from_connection_string(
        conn or services.settings["ACS_CONNECTION_STRING"], connection_verify=str(services.material.ca_cert),
        retry_total=0)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _identities(services: ServiceHandle) -> list[dict[str, Any]]:
    return requests.get(f"{services.url('acs')}/_standin/identities", verify=str(services.material.ca_cert),
                        timeout=5).json()


def test_create_user_and_voip_token_then_reissue_revoke_delete(services: ServiceHandle) -> None:
    client = _client(services)
    user, token = client.create_user_and_token(scopes=["voip"], token_expires_in=timedelta(hours=1))
    assert user.properties["id"].startswith("8:acs:")
    claims = _claims(token.token)
    assert claims["acsScope"] == "voip" and claims["skypeid"] == user.properties["id"].removeprefix("8:")
    assert 3500 <= claims["exp"] - datetime.now(UTC).timestamp() <= 3700
    again = client.get_token(user, scopes=["voip"])
    assert again.token != token.token
    client.revoke_tokens(user)
    client.delete_user(user)
    with pytest.raises(HttpResponseError) as caught:
        client.get_token(user, scopes=["voip"])
    assert caught.value.status_code == 404


def test_wrong_key_is_refused(services: ServiceHandle) -> None:
    wrong = base64.b64encode(b"k" * 32).decode()
    client = _client(services, f"endpoint={services.url('acs')}/;accesskey={wrong}")
    with pytest.raises(HttpResponseError) as caught:
        client.create_user_and_token(scopes=["voip"])
    assert caught.value.status_code == 401
    assert _identities(services) == []


def test_unknown_scope_and_out_of_range_lifetime_are_400(services: ServiceHandle) -> None:
    client = _client(services)
    with pytest.raises(HttpResponseError) as caught:
        client.create_user_and_token(scopes=["video"])
    assert caught.value.status_code == 400 and "Unknown scopes" in str(caught.value)
    with pytest.raises(HttpResponseError) as caught:
        client.create_user_and_token(scopes=["voip"], token_expires_in=timedelta(minutes=30))
    assert caught.value.status_code == 400


def test_issuer_gives_one_new_identity_per_join(services: ServiceHandle) -> None:
    issuer = AcsCallIdentityIssuer(connection_string=services.settings["ACS_CONNECTION_STRING"],
                                   verify=str(services.material.ca_cert))
    first, second = issuer.issue(), issuer.issue()
    assert first.user_id != second.user_id
    assert timedelta(minutes=55) < first.expires_utc - datetime.now(UTC) <= timedelta(minutes=61)
    assert [i["scopes"] for i in _identities(services)] == [["voip"], ["voip"]]


def test_issuer_reports_acs_outage_without_the_token(services: ServiceHandle) -> None:
    ca = str(services.material.ca_cert)
    requests.post(f"{services.url('acs')}/_standin/faults", json={"path_prefix": "/identities",
                                                                  "responses": [503, 503]}, verify=ca, timeout=5)
    issuer = AcsCallIdentityIssuer(connection_string=services.settings["ACS_CONNECTION_STRING"], verify=ca)
    with pytest.raises(CallIdentityUnavailable) as caught:
        issuer.issue()
    assert caught.value.reason == "ACS answered HTTP 503"
