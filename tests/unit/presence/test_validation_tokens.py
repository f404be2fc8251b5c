"""Graph's validationTokens: every refusal reason, and the identity platform's keys (cache, rotation, refetch
limits) without services: the documents are served by a counting fake of the two HTTP reads."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from lib.clock import FixedClock
from lib.presence.encrypted_content import NotificationRefused
from lib.presence.notifications import NotificationService
from lib.presence.validation_tokens import (
    GRAPH_CHANGE_TRACKING_APP_ID,
    IdentityPlatformKeys,
    SigningKeysUnavailable,
    ValidationTokenVerifier,
    parse_key_set,
)

TENANT = "5a1e7e57-0000-4000-8000-000000000001"
CLIENT_ID = "5a1e7e57-0000-4000-8000-0000000000a1"
ISSUER = f"https://sts.windows.net/{TENANT}/"
CONFIG_URL = f"https://login.example.test/{TENANT}/.well-known/openid-configuration"
JWKS_URL = "https://login.example.test/common/discovery/keys"
T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


@functools.cache
def rsa_key(kid: str, holder: str = "identity platform") -> RSAKey:
    """A 2048-bit key with ``kid``, one per (kid, holder) for the whole module (generating keys is slow)."""
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})


def with_kid(token: str, kid: str) -> str:
    """``token`` with its header's ``kid`` replaced (the signature no longer matches, which is not reached)."""
    header, rest = token.split(".", 1)
    changed = dict(json.loads(base64.urlsafe_b64decode(header + "==")), kid=kid)
    return base64.urlsafe_b64encode(json.dumps(changed).encode()).decode().rstrip("=") + "." + rest


def public(key: RSAKey | ECKey) -> dict[str, Any]:
    """The key as the identity platform publishes it (with its extra members)."""
    return dict(key.as_dict(private=False), x5t="x", issuer="https://login.example.test/{tenantid}/v2.0")


class IdentityPlatform:
    """The two documents of the identity platform, with a count of reads and switchable failure."""

    def __init__(self, *keys: RSAKey) -> None:
        self.keys = list(keys)
        self.reads: list[str] = []
        self.down = False
        self.config: dict[str, Any] = {"issuer": ISSUER, "jwks_uri": JWKS_URL}

    def fetch(self, url: str) -> Any:
        self.reads.append(url)
        if self.down:
            raise SigningKeysUnavailable("unreachable_connect")
        if url == CONFIG_URL:
            return self.config
        assert url == JWKS_URL
        return {"keys": [public(k) for k in self.keys]}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(T0.timestamp())
    body = {"aud": CLIENT_ID, "iss": ISSUER, "iat": now, "nbf": now, "exp": now + 8 * 3600,
            "appid": GRAPH_CHANGE_TRACKING_APP_ID, "appidacr": "2", "tid": TENANT, "ver": "1.0"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def sign(key: Any, body: dict[str, Any], **header: Any) -> str:
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid, **header}, body, key)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def k1() -> RSAKey:
    return rsa_key("k1")


@pytest.fixture
def platform(k1: RSAKey) -> IdentityPlatform:
    return IdentityPlatform(k1)


@pytest.fixture
def keys(platform: IdentityPlatform, clock: FixedClock) -> IdentityPlatformKeys:
    return IdentityPlatformKeys(CONFIG_URL, fetch_json=platform.fetch, clock=clock, ttl_seconds=3600,
                                min_refetch_seconds=60)


@pytest.fixture
def verifier(keys: IdentityPlatformKeys, clock: FixedClock) -> ValidationTokenVerifier:
    return ValidationTokenVerifier(keys, client_id=CLIENT_ID, clock=clock)


def refusal(verifier: ValidationTokenVerifier, token: Any) -> str:
    with pytest.raises(NotificationRefused) as refused:
        verifier.verify(token)
    return refused.value.reason


def test_a_genuine_token_passes_with_its_claims(verifier, k1):
    assert verifier.verify(sign(k1, claims()))["appid"] == GRAPH_CHANGE_TRACKING_APP_ID


def test_the_publisher_may_be_named_by_azp_in_the_v2_claim_set(verifier, k1):
    assert verifier.verify(sign(k1, claims(appid=None, azp=GRAPH_CHANGE_TRACKING_APP_ID)))["azp"]


def test_times_within_the_leeway_pass(verifier, k1):
    now = int(T0.timestamp())
    assert verifier.verify(sign(k1, claims(exp=now - 30, nbf=now + 30, iat=now + 30)))


@pytest.mark.parametrize(("changes", "reason"), [
    ({"exp": int(T0.timestamp()) - 61}, "validation_token_expired"),
    ({"nbf": int(T0.timestamp()) + 3600}, "validation_token_not_yet_valid"),
    ({"iat": int(T0.timestamp()) + 3600}, "validation_token_issued_in_future"),
    ({"aud": "another-app"}, "validation_token_wrong_audience"),
    ({"aud": ["another-app", "a-third-app"]}, "validation_token_wrong_audience"),
    ({"iss": "https://sts.windows.net/another-tenant/"}, "validation_token_wrong_issuer"),
    ({"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0"}, "validation_token_wrong_issuer"),
    ({"appid": str(uuid.uuid4())}, "validation_token_not_from_graph"),
    ({"appid": None}, "validation_token_not_from_graph"),
    ({"azp": str(uuid.uuid4())}, "validation_token_not_from_graph"),
    ({"aud": None}, "validation_token_claim_missing"),
    ({"exp": None}, "validation_token_claim_missing"),
    ({"iss": None}, "validation_token_claim_missing"),
    ({"exp": "tomorrow"}, "validation_token_expired"),
])
def test_a_token_with_wrong_claims_is_refused_with_the_claim_named(verifier, k1, changes, reason):
    assert refusal(verifier, sign(k1, claims(**changes))) == reason


def test_a_token_signed_by_an_unpublished_key_is_refused(verifier):
    assert refusal(verifier, sign(rsa_key("nobody-publishes-this"), claims())) == "validation_token_unknown_key"


def test_a_token_claiming_a_published_kid_but_signed_by_another_key_is_refused(verifier, k1):
    forger = rsa_key("k1", holder="forger")
    assert refusal(verifier, sign(forger, claims())) == "validation_token_bad_signature"


def test_a_token_whose_payload_was_changed_after_signing_is_refused(verifier, k1):
    header, payload, signature = sign(k1, claims()).split(".")
    changed = dict(json.loads(base64.urlsafe_b64decode(payload + "==")), aud=CLIENT_ID, exp=2**40)
    forged = base64.urlsafe_b64encode(json.dumps(changed).encode()).decode().rstrip("=")
    assert refusal(verifier, f"{header}.{forged}.{signature}") == "validation_token_bad_signature"


def test_symmetric_and_unsigned_tokens_are_refused_by_algorithm(verifier, k1):
    secret = OctKey.generate_key(256, parameters={"kid": "k1"})
    hs256 = jwt.encode({"alg": "HS256", "kid": "k1"}, claims(), secret)
    unsigned = sign(k1, claims()).rsplit(".", 1)[0].split(".")[1]
    none_header = "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ"  # {"alg":"none","kid":"k1"}
    assert refusal(verifier, hs256) == "validation_token_bad_algorithm"
    assert refusal(verifier, f"{none_header}.{unsigned}.") == "validation_token_bad_algorithm"


@pytest.mark.parametrize("token", ["", "not a jwt", "a.b.c", 42, None, ["x"], "x" * 20000])
def test_something_that_is_not_a_compact_jwt_is_refused_as_malformed(verifier, token):
    assert refusal(verifier, token) == "validation_token_malformed"


def test_a_token_without_a_kid_is_refused_as_malformed(verifier, k1):
    token = jwt.encode({"alg": "RS256"}, claims(), k1)
    assert refusal(verifier, token) == "validation_token_malformed"


# ---- a delivery's tokens ------------------------------------------------------------------------------------
def test_a_delivery_with_resource_data_needs_tokens(verifier):
    for absent in (None, []):
        with pytest.raises(NotificationRefused) as refused:
            verifier.check_delivery(absent, required=True)
        assert refused.value.reason == "validation_tokens_missing"
    assert verifier.check_delivery(None, required=False) == []


def test_every_token_of_a_delivery_must_pass(verifier, k1):
    good = sign(k1, claims())
    assert [c["tid"] for c in verifier.check_delivery([good, good], required=True)] == [TENANT, TENANT]
    with pytest.raises(NotificationRefused) as refused:
        verifier.check_delivery([good, sign(k1, claims(aud="another-app"))], required=True)
    assert refused.value.reason == "validation_token_wrong_audience"


@pytest.mark.parametrize("tokens", ["one-string", {"token": "x"}, ["t"] * 9])
def test_a_validation_tokens_value_that_is_not_a_short_list_is_refused(verifier, tokens):
    with pytest.raises(NotificationRefused) as refused:
        verifier.check_delivery(tokens, required=True)
    assert refused.value.reason == "validation_tokens_malformed"


# ---- the identity platform's keys ---------------------------------------------------------------------------
def test_keys_are_read_once_and_reused_while_fresh(verifier, platform, k1, clock):
    for _ in range(5):
        verifier.verify(sign(k1, claims()))
    clock.set(T0 + timedelta(minutes=59))
    verifier.verify(sign(k1, claims()))
    assert platform.reads == [CONFIG_URL, JWKS_URL]


def test_keys_are_read_again_after_their_time_to_live(verifier, platform, k1, clock):
    verifier.verify(sign(k1, claims()))
    clock.set(T0 + timedelta(hours=1, seconds=1))
    verifier.verify(sign(k1, claims()))
    assert platform.reads == [CONFIG_URL, JWKS_URL] * 2


def test_a_rotated_key_is_fetched_on_its_unknown_kid(verifier, keys, platform, k1, clock):
    verifier.verify(sign(k1, claims()))
    k2 = rsa_key("k2")
    platform.keys = [k2, k1]
    clock.set(T0 + timedelta(seconds=61))
    assert verifier.verify(sign(k2, claims()))
    assert keys.reads == 2
    verifier.verify(sign(k1, claims()))  # the old key is still published and known
    assert keys.reads == 2


def test_unknown_kids_make_at_most_one_read_per_interval(verifier, keys, platform, k1, clock):
    verifier.verify(sign(k1, claims()))
    token = sign(k1, claims())
    for i in range(50):
        clock.set(T0 + timedelta(seconds=i))
        assert refusal(verifier, with_kid(token, f"random-{i}")) == "validation_token_unknown_key"
    assert keys.reads == 1  # the first read was at T0; every unknown kid came within the next 60 s
    clock.set(T0 + timedelta(seconds=61))
    assert refusal(verifier, with_kid(token, "random-61")) == "validation_token_unknown_key"
    clock.set(T0 + timedelta(seconds=90))
    assert refusal(verifier, with_kid(token, "random-90")) == "validation_token_unknown_key"
    assert keys.reads == 2
    verifier.verify(sign(k1, claims()))  # known keys keep working from the cache meanwhile
    assert keys.reads == 2


def test_an_unreachable_identity_platform_defers_and_is_not_hammered(verifier, keys, platform, k1, clock):
    platform.down = True
    for expected in ("unreachable_connect", "recently_failed", "recently_failed"):
        with pytest.raises(SigningKeysUnavailable) as unavailable:
            verifier.verify(sign(k1, claims()))
        assert unavailable.value.reason == expected
    assert platform.reads == [CONFIG_URL]
    platform.down = False
    clock.set(T0 + timedelta(seconds=61))
    assert verifier.verify(sign(k1, claims()))


def test_during_an_outage_the_last_good_keys_stand_in_for_a_day_read_again_once_a_minute(
        verifier, keys, platform, k1, clock):
    verifier.verify(sign(k1, claims()))
    platform.down = True
    at = T0 + timedelta(hours=1, seconds=1)  # the read has expired
    for seconds in (0, 10, 59, 61, 62):
        clock.set(at + timedelta(seconds=seconds))
        assert verifier.verify(sign(k1, claims(exp=int((T0 + timedelta(days=2)).timestamp()))))
    assert keys.reads == 3  # T0, +1 h (failed), +1 h 61 s (failed)
    clock.set(T0 + timedelta(hours=24, seconds=1))
    with pytest.raises(SigningKeysUnavailable):
        verifier.verify(sign(k1, claims(exp=int((T0 + timedelta(days=2)).timestamp()))))


def test_a_clock_that_went_back_reads_again_rather_than_never(verifier, keys, k1, clock):
    clock.set(T0 + timedelta(days=1))
    verifier.verify(sign(k1, claims(exp=int((T0 + timedelta(days=2)).timestamp()))))
    clock.set(T0)
    verifier.verify(sign(k1, claims()))
    assert keys.reads == 2


@pytest.mark.parametrize("config", [
    {"issuer": ISSUER, "jwks_uri": "http://login.example.test/keys"},
    {"issuer": "https://sts.windows.net/{tenantid}/", "jwks_uri": JWKS_URL},
    {"jwks_uri": JWKS_URL},
    ["not", "an", "object"],
])
def test_an_unusable_openid_configuration_is_unavailable_not_trusted(verifier, platform, k1, config):
    platform.config = config
    with pytest.raises(SigningKeysUnavailable) as unavailable:
        verifier.verify(sign(k1, claims()))
    assert unavailable.value.reason == "bad_openid_configuration"


def test_the_key_set_keeps_only_rsa_signing_keys_with_a_kid_and_is_bounded():
    rsa = [public(rsa_key(f"r{i}")) for i in range(3)]
    ec = public(ECKey.generate_key("P-256", parameters={"kid": "ec"}))
    encryption = dict(public(rsa_key("enc")), use="enc")
    no_kid = {k: v for k, v in public(rsa_key("x")).items() if k != "kid"}
    broken = {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"}
    parsed = parse_key_set({"keys": [ec, encryption, no_kid, broken, *rsa]})
    assert sorted(parsed) == ["r0", "r1", "r2"]
    assert sorted(parse_key_set({"keys": rsa}, max_keys=2)) == ["r0", "r1"]
    for unusable in ({"keys": [ec]}, {"keys": "x"}, [], {}):
        with pytest.raises(SigningKeysUnavailable):
            parse_key_set(unusable)


# ---- the notification service refuses the whole delivery first --------------------------------------------
class _Untouchable:
    """A collaborator that must not be reached: the delivery was refused before."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            raise AssertionError(f"{name} was called for a refused delivery")
        return called


def _delivery(tokens: Any) -> bytes:
    body: dict[str, Any] = {"value": [{"subscriptionId": "s", "clientState": "c", "changeType": "created",
                                       "encryptedContent": {"data": "x"}}]}
    if tokens is not None:
        body["validationTokens"] = tokens
    return json.dumps(body).encode()


@pytest.mark.parametrize(("tokens", "reason"), [
    (None, "validation_tokens_missing"),
    (["not-a-token"], "validation_token_malformed"),
])
def test_a_delivery_failing_its_tokens_applies_nothing(verifier, tokens, reason, caplog):
    subscriptions, roster = _Untouchable(), _Untouchable()
    service = NotificationService(subscriptions=subscriptions, roster=roster, certificates={},  # type: ignore[arg-type]
                                  validation_tokens=verifier)
    with caplog.at_level("WARNING"):
        report = service.changes(_delivery(tokens), correlation_id="corr-1")
    assert (report.refused, report.applied, subscriptions.calls, roster.calls) == ([reason], 0, 0, 0)
    assert f"reason={reason}" in caplog.text and "not-a-token" not in caplog.text


def test_a_notification_of_a_tenant_no_token_vouches_for_is_refused(verifier, k1):
    subscriptions = _Untouchable()
    service = NotificationService(subscriptions=subscriptions, roster=_Untouchable(), certificates={},  # type: ignore[arg-type]
                                  validation_tokens=verifier)
    body = {"value": [{"subscriptionId": "s", "clientState": "c", "tenantId": "another-tenant",
                       "encryptedContent": {"data": "x"}}], "validationTokens": [sign(k1, claims())]}
    report = service.changes(json.dumps(body).encode())
    assert (report.refused, subscriptions.calls) == (["validation_token_tenant_mismatch"], 0)


def test_a_forged_token_on_a_lifecycle_delivery_is_refused_too(verifier, k1):
    subscriptions = _Untouchable()
    service = NotificationService(subscriptions=subscriptions, roster=_Untouchable(), certificates={},  # type: ignore[arg-type]
                                  validation_tokens=verifier)
    body = {"value": [{"lifecycleEvent": "missed", "subscriptionId": "s", "clientState": "c"}],
            "validationTokens": [sign(rsa_key("k1", holder="forger"), claims())]}
    report = service.lifecycle(json.dumps(body).encode())
    assert (report.refused, subscriptions.calls) == (["validation_token_bad_signature"], 0)


def test_without_graph_settings_every_rich_delivery_is_refused():
    service = NotificationService(subscriptions=_Untouchable(), roster=_Untouchable(), certificates={},  # type: ignore[arg-type]
                                  validation_tokens=None)
    assert service.changes(_delivery(["t"])).refused == ["validation_tokens_unverifiable"]
