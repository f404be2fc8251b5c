"""Step 3, discovery: smart-configuration first, metadata fallback, origin checks, caching."""

from __future__ import annotations

import pytest

from lib.smart.discovery import OAUTH_URIS_EXTENSION, SmartDiscovery
from lib.smart.errors import LaunchError
from tests.unit.smart.fake_http import fake_client

ISS = "https://ehr.example.org/interconnect/api/FHIR/R4"
BASE = "https://ehr.example.org/interconnect"


def smart_config(**overrides: object) -> dict:
    doc = {
        "issuer": f"{BASE}/oauth2",
        "jwks_uri": f"{BASE}/oauth2/jwks",
        "authorization_endpoint": f"{BASE}/oauth2/authorize",
        "token_endpoint": f"{BASE}/oauth2/token",
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-ehr", "authorize-post", "permission-v1"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
    }
    doc.update(overrides)
    return doc


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_smart_configuration_is_read_with_epic_client_id_and_cached():
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration", (200, smart_config()))
    discovery = SmartDiscovery(http)

    first = discovery.discover(ISS, "client-1")
    second = discovery.discover(ISS, "client-1")

    assert first is second
    assert len(fake.calls) == 1
    assert fake.calls[0].headers["Epic-Client-ID"] == "client-1"
    assert first.token_endpoint == f"{BASE}/oauth2/token"
    assert first.supports_authorize_post is True
    assert first.source == "smart-configuration"


def test_cache_expires_after_the_ttl():
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration", (200, smart_config()))
    clock = Clock()
    discovery = SmartDiscovery(http, ttl_seconds=60, monotonic=clock)
    discovery.discover(ISS, "c")
    clock.t += 61
    discovery.discover(ISS, "c")
    assert len(fake.calls) == 2


def test_max_age_of_the_response_sets_the_cache_lifetime():
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration", (200, smart_config(), {"Cache-Control": "max-age=5"}))
    clock = Clock()
    discovery = SmartDiscovery(http, ttl_seconds=3600, monotonic=clock)
    discovery.discover(ISS, "c")
    clock.t += 6
    discovery.discover(ISS, "c")
    assert len(fake.calls) == 2


def test_metadata_fallback_when_smart_configuration_is_missing():
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration", (404, "not found"))
    fake.on("GET", f"{ISS}/metadata", (200, {
        "resourceType": "CapabilityStatement",
        "rest": [{"security": {"extension": [{"url": OAUTH_URIS_EXTENSION, "extension": [
            {"url": "authorize", "valueUri": f"{BASE}/oauth2/authorize"},
            {"url": "token", "valueUri": f"{BASE}/oauth2/token"},
        ]}]}}],
    }))

    config = SmartDiscovery(http).discover(ISS, "client-9")

    assert config.source == "metadata"
    assert config.authorization_endpoint == f"{BASE}/oauth2/authorize"
    assert fake.calls[1].headers["Epic-Client-ID"] == "client-9"
    assert config.supports_authorize_post is False


@pytest.mark.parametrize("field", ["authorization_endpoint", "token_endpoint", "jwks_uri"])
def test_an_endpoint_on_another_host_is_refused(field):
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration",
            (200, smart_config(**{field: "https://attacker.example.net/oauth2/x"})))
    with pytest.raises(LaunchError) as err:
        SmartDiscovery(http).discover(ISS, "c")
    assert err.value.code == "DISCOVERY_INVALID"


def test_an_http_endpoint_on_the_same_host_is_refused():
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration",
            (200, smart_config(token_endpoint="http://ehr.example.org/interconnect/oauth2/token")))
    with pytest.raises(LaunchError) as err:
        SmartDiscovery(http).discover(ISS, "c")
    assert err.value.code == "DISCOVERY_INVALID"


def test_a_server_without_s256_is_refused():
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration",
            (200, smart_config(code_challenge_methods_supported=["plain"])))
    with pytest.raises(LaunchError) as err:
        SmartDiscovery(http).discover(ISS, "c")
    assert err.value.code == "DISCOVERY_INVALID"


def test_unreachable_ehr_is_discovery_failed():
    http, _ = fake_client()
    with pytest.raises(LaunchError) as err:
        SmartDiscovery(http).discover(ISS, "c")
    assert err.value.code == "DISCOVERY_FAILED"


def test_redirects_are_not_followed():
    http, fake = fake_client()
    fake.on("GET", f"{ISS}/.well-known/smart-configuration", (302, "", {"Location": "https://attacker.example.net/x"}))
    fake.on("GET", f"{ISS}/metadata", (302, "", {"Location": "https://attacker.example.net/y"}))
    with pytest.raises(LaunchError) as err:
        SmartDiscovery(http).discover(ISS, "c")
    assert err.value.code == "DISCOVERY_FAILED"
    assert all("attacker" not in c.url for c in fake.calls)
