"""Signed HL7 intake requests (lib.scheduling.signature): every refusal has its own reason code."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lib.clock import FixedClock
from lib.models import EnvironmentConfig
from lib.scheduling.intake import Problem
from lib.scheduling.signature import JwsRequestVerifier, body_digest, sign_request
from tests.support.hl7_signing import signer

NOW = datetime.now(UTC).replace(microsecond=0)
BODY = b"MSH|^~\\&|SCHED|HOSP|VV|CONN|20261129120000||SIU^S12|C1|T|2.3\rSCH||36996\r"
SIGNER = signer()


class MemoryJti:
    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], datetime] = {}

    def claim(self, environment_id: str, jti: str, *, expires: datetime, now: datetime) -> bool:
        if (environment_id, jti) in self.seen:
            return False
        self.seen[(environment_id, jti)] = expires
        return True


def env(**kw: object) -> EnvironmentConfig:
    base = EnvironmentConfig(id="env-1", kind="test", display_name="X", fhir_base_urls=(), approved=True,
                             epic_client_id="c", hl7_auth="jws", hl7_certificates=(SIGNER.cert_text,))
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def verify(headers: dict[str, str], *, environment: EnvironmentConfig | None = None, body: bytes = BODY,
           now: datetime = NOW, jti: MemoryJti | None = None) -> None:
    JwsRequestVerifier(jti=jti or MemoryJti(), clock=FixedClock(now)).verify(environment or env(), headers, body)


def signed(body: bytes = BODY, *, s=SIGNER, env_id: str = "env-1", **kw: object) -> dict[str, str]:
    return s.headers(env_id, body, now=kw.pop("now", NOW), **kw)


def refusal(headers: dict[str, str], **kw: object) -> Problem:
    with pytest.raises(Problem) as caught:
        verify(headers, **kw)  # type: ignore[arg-type]
    return caught.value


def test_a_correctly_signed_request_is_accepted():
    verify(signed())


def test_authorization_hl7_jws_scheme_is_accepted_too():
    token = signed()["X-HL7-Signature"]
    verify({"Authorization": f"HL7-JWS {token}"})


def test_header_names_are_case_insensitive():
    verify({"x-hl7-signature": signed()["X-HL7-Signature"]})


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_rsa_algorithms_are_accepted(alg):
    verify(signed(algorithm=alg))


def test_es256_with_an_ec_p256_certificate_is_accepted():
    ec_signer = signer(kind="ec")
    verify(signed(s=ec_signer), environment=env(hl7_certificates=(ec_signer.cert_text,)))


def test_base64_der_cer_file_content_is_accepted_as_certificate():
    der = x509.load_pem_x509_certificate(SIGNER.cert_pem).public_bytes(serialization.Encoding.DER)
    cer = base64.encodebytes(der).decode()  # wrapped lines, as in a .cer file
    verify(signed(), environment=env(hl7_certificates=(cer,)))


def test_missing_signature_is_401_signature_missing_with_www_authenticate():
    problem = refusal({})
    assert (problem.status, problem.code) == (401, "signature_missing")
    assert problem.headers == (("WWW-Authenticate", 'HL7-JWS realm="hl7-intake", error="signature_missing"'),)


@pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c", "!!.??.**", "e30.e30.e30", "x" * 9000])
def test_garbage_is_signature_malformed(token):
    assert refusal({"X-HL7-Signature": token}).code == "signature_malformed"


def test_unsupported_algorithm_is_signature_malformed():
    head = base64.urlsafe_b64encode(json.dumps({"alg": "HS256"}).encode()).rstrip(b"=").decode()
    token = signed()["X-HL7-Signature"]
    assert refusal({"X-HL7-Signature": head + token[token.index("."):]}).code == "signature_malformed"


def test_lifetime_over_five_minutes_is_signature_malformed():
    token = _forge({"exp": int(NOW.timestamp()) + 301})
    assert refusal({"X-HL7-Signature": token}).code == "signature_malformed"


def test_signature_by_another_key_is_signature_invalid():
    other = signer(kind="ec")
    assert refusal(signed(s=other)).code == "signature_invalid"


def test_tampered_payload_is_signature_invalid():
    token = signed()["X-HL7-Signature"]
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["env"] = "env-2"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refusal({"X-HL7-Signature": f"{head}.{forged}.{sig}"}).code == "signature_invalid"


def test_body_changed_after_signing_is_body_digest_mismatch():
    assert refusal(signed(BODY), body=BODY + b"PID|1\r").code == "body_digest_mismatch"


def test_signature_for_another_environment_is_wrong_environment():
    assert refusal(signed(env_id="env-2")).code == "wrong_environment"


def test_expired_beyond_the_60s_skew_is_signature_expired():
    issued = NOW - timedelta(minutes=3, seconds=1)
    assert refusal(signed(now=issued, lifetime=timedelta(minutes=2))).code == "signature_expired"


def test_expired_within_the_60s_skew_is_accepted():
    verify(signed(now=NOW - timedelta(minutes=2, seconds=59), lifetime=timedelta(minutes=2)))


def test_issued_more_than_60s_in_the_future_is_signature_not_yet_valid():
    assert refusal(signed(now=NOW + timedelta(seconds=61))).code == "signature_not_yet_valid"


def test_second_use_of_a_jti_is_signature_replayed():
    jti = MemoryJti()
    headers = signed()
    verify(headers, jti=jti)
    assert refusal(headers, jti=jti).code == "signature_replayed"


def test_jti_is_recorded_until_exp_plus_skew():
    jti = MemoryJti()
    verify(signed(jti="abcdefgh-1", lifetime=timedelta(minutes=2)), jti=jti)
    assert jti.seen[("env-1", "abcdefgh-1")] == NOW + timedelta(minutes=3)


def test_a_refused_request_does_not_burn_its_jti():
    jti = MemoryJti()
    refusal(signed(jti="abcdefgh-2"), body=b"other", jti=jti)
    assert jti.seen == {}


def test_expired_certificate_is_certificate_expired():
    old = signer(days_valid_from=-400, days_valid_to=-1)
    problem = refusal(signed(s=old), environment=env(hl7_certificates=(old.cert_text,)))
    assert (problem.status, problem.code) == (401, "certificate_expired")


def test_certificate_not_yet_valid_is_certificate_not_yet_valid():
    future = signer(days_valid_from=1, days_valid_to=400)
    assert refusal(signed(s=future), environment=env(hl7_certificates=(future.cert_text,))).code == (
        "certificate_not_yet_valid"
    )


def test_during_rotation_either_of_two_certificates_verifies():
    new = signer(kind="ec")
    both = env(hl7_certificates=(SIGNER.cert_text, new.cert_text))
    verify(signed(), environment=both)
    verify(signed(s=new), environment=both)


def test_x5t_s256_selects_the_certificate():
    verify(signed(certificate_pem=SIGNER.cert_pem))
    other = signer(kind="ec")
    assert refusal(signed(certificate_pem=other.cert_pem)).code == "signature_invalid"


def test_environment_without_certificate_refuses_with_403_no_certificate_configured():
    problem = refusal(signed(), environment=env(hl7_certificates=()))
    assert (problem.status, problem.code) == (403, "no_certificate_configured")


def test_unreadable_certificate_counts_as_none_configured():
    assert refusal(signed(), environment=env(hl7_certificates=("not a cert",))).code == "no_certificate_configured"


def test_unsigned_is_accepted_only_when_a_test_environment_says_none():
    verify({}, environment=env(hl7_auth="none"))
    problem = refusal({}, environment=env(hl7_auth="none", kind="production"))
    assert (problem.status, problem.code) == (403, "unsigned_not_allowed")


def test_default_is_jws_so_a_new_environment_never_silently_accepts():
    bare = EnvironmentConfig(id="env-1", kind="test", display_name="X", fhir_base_urls=(), approved=True,
                             epic_client_id="c")
    assert bare.hl7_auth == "jws"
    assert refusal({}, environment=bare).code == "no_certificate_configured"


def test_body_digest_is_base64url_sha256_without_padding():
    assert body_digest(b"") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


def test_sign_request_refuses_a_lifetime_over_five_minutes():
    with pytest.raises(ValueError):
        sign_request(BODY, private_key_pem=SIGNER.key_pem, environment_id="e", lifetime=timedelta(minutes=6))


def _forge(overrides: dict[str, object]) -> str:
    """A correctly signed token whose claims are overridden (signed by SIGNER)."""
    from joserfc import jws
    from joserfc.jwk import RSAKey

    iat = int(NOW.timestamp())
    claims = {"sha256": body_digest(BODY), "env": "env-1", "iat": iat, "exp": iat + 60, "jti": "abcdefgh-9",
              **overrides}
    key = RSAKey.import_key(SIGNER.key_pem)
    return jws.serialize_compact({"alg": "RS256"}, json.dumps(claims).encode(), key, algorithms=["RS256"])
