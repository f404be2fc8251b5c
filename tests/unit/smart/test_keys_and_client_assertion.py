"""Our keys, the JWKS we publish, and the private_key_jwt client assertion."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from lib.smart.client_assertion import CLIENT_ASSERTION_TYPE, build_client_assertion, client_assertion_params
from lib.smart.errors import LaunchError
from lib.smart.keys import SmartKeys
from tests.unit.smart.keys_for_tests import rsa_pem

NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)


def rfc7638_thumbprint(jwk: dict) -> str:
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def test_jwks_publishes_every_key_with_rfc7638_kid_rs384_and_sig_without_private_parts():
    keys = SmartKeys.from_pem(rsa_pem("a") + b"\n" + rsa_pem("b"))
    doc = keys.jwks()
    assert len(doc["keys"]) == 2
    for jwk in doc["keys"]:
        assert set(jwk) == {"kty", "n", "e", "kid", "alg", "use"}
        assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS384", "sig")
        assert jwk["kid"] == rfc7638_thumbprint(jwk)
    assert keys.active_kid == doc["keys"][0]["kid"]


def test_certificates_and_other_blocks_in_the_file_are_skipped(tmp_path):
    path = tmp_path / "keys.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" + rsa_pem("a"))
    assert len(SmartKeys.from_file(path).jwks()["keys"]) == 1


@pytest.mark.parametrize("setup", ["unset", "missing", "empty"])
def test_missing_keys_are_smart_keys_missing(tmp_path, setup):
    path = None if setup == "unset" else tmp_path / "keys.pem"
    if setup == "empty":
        path.write_bytes(b"")
    with pytest.raises(LaunchError) as err:
        SmartKeys.from_file(path)
    assert err.value.code == "SMART_KEYS_MISSING"


@pytest.mark.filterwarnings("ignore:Key size")
def test_a_1024_bit_key_is_refused():
    with pytest.raises(LaunchError) as err:
        SmartKeys.from_pem(rsa_pem("short", 1024))
    assert err.value.code == "SMART_KEYS_MISSING"


def test_client_assertion_header_and_claims():
    keys = SmartKeys.from_pem(rsa_pem("a"))
    token = build_client_assertion(keys, client_id="client-1", token_endpoint="https://ehr/oauth2/token", now=NOW)
    decoded = jwt.decode(token, KeySet.import_key_set(keys.jwks()), algorithms=["RS384"])
    assert decoded.header == {"alg": "RS384", "kid": keys.active_kid, "typ": "JWT"}
    claims = decoded.claims
    assert claims["iss"] == claims["sub"] == "client-1"
    assert claims["aud"] == "https://ehr/oauth2/token"
    assert claims["iat"] == claims["nbf"] == int(NOW.timestamp())
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert 16 <= len(claims["jti"]) <= 151


def test_every_assertion_has_a_new_jti():
    keys = SmartKeys.from_pem(rsa_pem("a"))
    jtis = set()
    for _ in range(5):
        token = build_client_assertion(keys, client_id="c", token_endpoint="https://e/t", now=NOW)
        jtis.add(jwt.decode(token, KeySet.import_key_set(keys.jwks()), algorithms=["RS384"]).claims["jti"])
    assert len(jtis) == 5


def test_a_lifetime_over_five_minutes_is_refused():
    keys = SmartKeys.from_pem(rsa_pem("a"))
    with pytest.raises(ValueError):
        build_client_assertion(keys, client_id="c", token_endpoint="https://e/t", now=NOW,
                               lifetime=timedelta(minutes=6))


def test_assertion_params_carry_the_jwt_bearer_type():
    keys = SmartKeys.from_pem(rsa_pem("a"))
    params = client_assertion_params(keys, client_id="c", token_endpoint="https://e/t", now=NOW)
    assert params["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assert params["client_assertion"].count(".") == 2


# ---- ES384, rotation, keys per environment kind -----------------------------------------------------------
def test_rsa_and_ec_p384_keys_are_published_with_their_algorithms():
    from tests.unit.smart.keys_for_tests import ec_pem

    keys = SmartKeys.from_pem(rsa_pem("a") + b"\n" + ec_pem("e"))
    rsa_jwk, ec_jwk = keys.jwks()["keys"]
    assert (rsa_jwk["kty"], rsa_jwk["alg"]) == ("RSA", "RS384")
    assert (ec_jwk["kty"], ec_jwk["crv"], ec_jwk["alg"], ec_jwk["use"]) == ("EC", "P-384", "ES384", "sig")
    assert "d" not in ec_jwk and "d" not in rsa_jwk


def test_the_first_key_of_each_family_signs_and_the_others_stay_published_for_a_rotation():
    from tests.unit.smart.keys_for_tests import ec_pem

    keys = SmartKeys.from_pem(rsa_pem("new") + b"\n" + rsa_pem("old") + b"\n" + ec_pem("e"))
    kids = [k["kid"] for k in keys.jwks()["keys"]]
    assert len(kids) == 3 and len(set(kids)) == 3
    assert str(keys.signer("RS384")[0].kid) == kids[0]
    assert str(keys.signer("ES384")[0].kid) == kids[2]
    assert keys.signer()[1] == "RS384"


def test_an_ec_key_on_another_curve_is_refused():
    from tests.unit.smart.keys_for_tests import ec_pem

    with pytest.raises(LaunchError) as err:
        SmartKeys.from_pem(ec_pem("p256", "P-256"))
    assert "P-384" in err.value.admin_hint


def test_the_keyring_loads_each_kind_once_and_refuses_unknown_kinds():
    from lib.smart.keys import SmartKeyring

    loads: list[str] = []

    def test_keys() -> SmartKeys:
        loads.append("test")
        return SmartKeys.from_pem(rsa_pem("a"))

    def production_keys() -> SmartKeys:
        raise LaunchError("SMART_KEYS_MISSING")

    ring = SmartKeyring({"test": test_keys, "production": production_keys})
    assert ring("test") is ring.for_kind("test") and loads == ["test"]
    for kind in ("production", "staging"):
        with pytest.raises(LaunchError) as err:
            ring.for_kind(kind)
        assert err.value.code == "SMART_KEYS_MISSING"
