"""Certificate uploads (lib.config.certificates): what Windows Notepad and a plain ``openssl req -x509`` make."""

from __future__ import annotations

import codecs
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lib.config.certificates import OPENSSL_RECIPE, CertificateRefused, parse_upload

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def _certificate(subject: str, *, issuer: str | None = None, ca: bool | None = True,
                 usage: x509.KeyUsage | None = None) -> bytes:
    """Like ``openssl req -x509`` with OpenSSL 3's default config: self-signed, ``basicConstraints=CA:TRUE``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]) if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _usage(*, sign: bool, issue: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=issue, crl_sign=issue,
                         encipher_only=False, decipher_only=False)


def test_a_pem_saved_by_notepad_with_a_utf8_bom_is_accepted():
    pem = _certificate("interface.contoso.example", ca=False)
    assert parse_upload(codecs.BOM_UTF8 + pem, now=NOW).subject == "CN=interface.contoso.example"


def test_a_pem_saved_by_notepad_as_unicode_utf16_is_accepted():
    pem = _certificate("interface.contoso.example", ca=False)
    assert parse_upload(pem.decode().encode("utf-16"), now=NOW).subject == "CN=interface.contoso.example"


def test_a_plain_openssl_req_x509_certificate_with_ca_true_is_accepted():
    assert parse_upload(_certificate("openssl-default"), now=NOW).subject == "CN=openssl-default"


def test_a_self_signed_certificate_allowed_to_sign_is_accepted_even_with_ca_true():
    assert parse_upload(_certificate("signer", usage=_usage(sign=True, issue=True)), now=NOW).subject == "CN=signer"


def test_a_root_ca_whose_key_only_issues_is_refused_with_the_working_openssl_command():
    with pytest.raises(CertificateRefused) as refused:
        parse_upload(_certificate("Contoso Root CA", usage=_usage(sign=False, issue=True)), now=NOW)
    assert refused.value.reason.startswith("CN=Contoso Root CA is a CA certificate (it issues certificates: "
                                           "CA:TRUE with a key usage for issuing only)")
    assert refused.value.reason.endswith(OPENSSL_RECIPE)


def test_an_intermediate_ca_is_refused():
    with pytest.raises(CertificateRefused, match="CA:TRUE, issued by another CA"):
        parse_upload(_certificate("Contoso Issuing CA", issuer="Contoso Root CA"), now=NOW)


def test_a_binary_der_file_is_still_refused_as_binary():
    der = x509.load_pem_x509_certificate(_certificate("x", ca=False)).public_bytes(serialization.Encoding.DER)
    with pytest.raises(CertificateRefused, match="binary file"):
        parse_upload(der, now=NOW)


# ---- expiry warnings -------------------------------------------------------------------------------------------
def _valid_until(end: dt.datetime) -> str:
    from tests.support.hl7_signing import certificate, rsa_key

    return certificate(rsa_key(), not_before=NOW - dt.timedelta(days=300), not_after=end).decode()


@pytest.mark.parametrize(("left", "days", "says"), [
    (dt.timedelta(days=4, hours=2), 5, "expires in 5 days"),
    (dt.timedelta(hours=3), 1, "expires in 1 day ("),
    (dt.timedelta(days=29, hours=23), 30, "expires in 30 days"),
    (dt.timedelta(hours=-2), 0, "expired on 2026-12-06 10:00 UTC"),
])
def test_a_certificate_within_30_days_of_its_end_gets_a_warning_with_the_days_left(left, days, says):
    from lib.config.certificates import days_left, expiry_warning, parse_stored

    info = parse_stored(_valid_until(NOW + left))
    assert days_left(info, NOW) == days
    assert says in expiry_warning(info, NOW)


def test_a_certificate_with_more_than_30_days_left_gets_no_warning_and_a_rotation_counts_the_newer():
    from lib.config.certificates import expiry_warning, parse_stored, soonest_expiry

    later = _valid_until(NOW + dt.timedelta(days=31))
    assert expiry_warning(parse_stored(later), NOW) is None
    soon = _valid_until(NOW + dt.timedelta(days=5))
    assert soonest_expiry([soon], NOW) == (5, "CN=test-interface-engine")
    assert soonest_expiry([soon, later], NOW) is None  # the new one keeps the feed going
    assert soonest_expiry([], NOW) is None
