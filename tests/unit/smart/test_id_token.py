"""id_token verification: signature (RS256, issuer JWKS), iss, aud, exp, nonce, fhirUser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from lib.smart.discovery import SmartConfiguration
from lib.smart.errors import LaunchError
from lib.smart.id_token import IdTokenVerifier, parse_fhir_user
from tests.unit.smart.fake_http import fake_client
from tests.unit.smart.keys_for_tests import rsa_pem

BASE = "https://ehr.example.org"
ISS = f"{BASE}/api/FHIR/R4"
ISSUER = f"{BASE}/oauth2"
JWKS = f"{BASE}/oauth2/jwks"
NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
T = int(NOW.timestamp())


def epic_key(name: str = "epic", kid: str = "k1") -> RSAKey:
    return RSAKey.import_key(rsa_pem(name), {"kid": kid})


def sign(claims: dict, key: RSAKey | None = None, alg: str = "RS256") -> str:
    key = key or epic_key()
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


def good_claims(**overrides: object) -> dict:
    claims = {"iss": ISSUER, "aud": "client-1", "sub": "E1001", "fhirUser": f"{ISS}/Practitioner/E1001",
              "iat": T, "exp": T + 300, "nonce": "nonce-1"}
    claims.update(overrides)
    return claims


def config(**overrides: object) -> SmartConfiguration:
    args: dict = {"fhir_base_url": ISS, "authorization_endpoint": f"{BASE}/oauth2/authorize",
                      "token_endpoint": f"{BASE}/oauth2/token", "issuer": ISSUER, "jwks_uri": JWKS}
    args.update(overrides)
    return SmartConfiguration(**args)


def verifier_with_jwks(*keys: RSAKey):
    http, fake = fake_client()
    fake.on("GET", JWKS, (200, {"keys": [k.as_dict(private=False) for k in keys]}))
    return IdTokenVerifier(http), fake


def verify(verifier: IdTokenVerifier, token: str, **cfg: object):
    return verifier.verify(token, config=config(**cfg), client_id="client-1", nonce="nonce-1", now=NOW)


def test_a_valid_id_token_gives_the_practitioner():
    verifier, _ = verifier_with_jwks(epic_key())
    identity = verify(verifier, sign(good_claims()))
    assert (identity.resource_type, identity.resource_id, identity.ehr_user_id) == ("Practitioner", "E1001", "E1001")


@pytest.mark.parametrize(("claims", "check"), [
    (good_claims(nonce="other"), "nonce"),
    (good_claims(aud="someone-else"), "audience"),
    (good_claims(aud=["client-1", "x"], azp="x"), "authorized party"),
    (good_claims(exp=T - 120), "expiry"),
    (good_claims(iat=T + 600), "issued-at"),
])
def test_claim_checks(claims, check):
    verifier, _ = verifier_with_jwks(epic_key())
    with pytest.raises(LaunchError) as err:
        verify(verifier, sign(claims))
    assert err.value.code == "ID_TOKEN_INVALID"
    assert check in err.value.admin_hint


def test_an_issuer_other_than_the_advertised_one_is_refused_before_fetching_keys():
    verifier, fake = verifier_with_jwks(epic_key())
    with pytest.raises(LaunchError) as err:
        verify(verifier, sign(good_claims(iss="https://attacker.example.net/oauth2")))
    assert err.value.code == "ID_TOKEN_INVALID"
    assert fake.calls == []


def test_an_issuer_on_another_host_is_refused_when_discovery_names_none():
    verifier, fake = verifier_with_jwks(epic_key())
    with pytest.raises(LaunchError):
        verify(verifier, sign(good_claims(iss="https://attacker.example.net/oauth2")), issuer=None)
    assert fake.calls == []


def test_a_signature_by_another_key_with_the_same_kid_is_refused():
    verifier, _ = verifier_with_jwks(epic_key())
    with pytest.raises(LaunchError) as err:
        verify(verifier, sign(good_claims(), key=epic_key("attacker", kid="k1")))
    assert err.value.code == "ID_TOKEN_INVALID"


def test_hs256_signed_with_the_public_key_is_refused():
    verifier, _ = verifier_with_jwks(epic_key())
    forged = jwt.encode({"alg": "HS256", "kid": "k1"}, good_claims(), OctKey.import_key(b"k" * 32))
    with pytest.raises(LaunchError) as err:
        verify(verifier, forged)
    assert err.value.code == "ID_TOKEN_INVALID"


def test_an_unknown_kid_refetches_the_jwks_once_for_rotation():
    http, fake = fake_client()
    old, new = epic_key("epic", "k1"), epic_key("epic2", "k2")
    fake.on("GET", JWKS, (200, {"keys": [old.as_dict(private=False)]}),
            (200, {"keys": [old.as_dict(private=False), new.as_dict(private=False)]}))
    verifier = IdTokenVerifier(http)
    verify(verifier, sign(good_claims()))  # caches [k1]
    identity = verify(verifier, sign(good_claims(), key=new))
    assert identity.subject == "E1001"
    assert len(fake.calls) == 2


def test_jwks_found_through_openid_configuration_when_smart_configuration_has_no_jwks_uri():
    http, fake = fake_client()
    fake.on("GET", f"{ISSUER}/.well-known/openid-configuration", (200, {"issuer": ISSUER, "jwks_uri": JWKS}))
    fake.on("GET", JWKS, (200, {"keys": [epic_key().as_dict(private=False)]}))
    identity = verify(IdTokenVerifier(http), sign(good_claims()), jwks_uri=None)
    assert identity.resource_id == "E1001"


def test_parse_fhir_user_absolute_and_relative():
    assert parse_fhir_user(f"{ISS}/Patient/p-1") == ("Patient", "p-1")
    assert parse_fhir_user("RelatedPerson/r1") == ("RelatedPerson", "r1")
    assert parse_fhir_user("nonsense") == (None, None)
