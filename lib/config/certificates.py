"""The hospital's HL7 signing certificate, uploaded per environment (docs/portal.md "HL7 certificate").

Accepted: one X.509 certificate as PEM text or as base64 DER (a Windows "Base-64 encoded X.509 (.CER)"
export, with or without a byte-order mark), with an RSA 2048+ or EC P-256 key (what
``lib/scheduling/signature.py`` verifies), valid now, not a CA (a self-signed certificate whose ``CA:TRUE`` is
only OpenSSL's default is accepted: see :func:`_self_signed_signer`). Refused, each with its own message: a
file holding a private key, a binary (DER) file, a file that is not a certificate, more than one certificate
(a CA bundle or chain), a CA certificate, an expired or not-yet-valid certificate, an unsupported key, a file
over :data:`MAX_BYTES`. Two certificates may be configured at once (a rotation); the stored form is the PEM
text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import dataclasses
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

MAX_BYTES = 64 * 1024
MAX_CERTIFICATES = 2
#: A certificate with fewer days left is accepted with a warning and marked on the portal's pages and in the
#: readiness details (docs/operations.md "Certificate expiry").
EXPIRY_WARNING_DAYS = 30
_MIN_RSA_BITS = 2048
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_PRIVATE = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----")


class CertificateRefused(ValueError):
    """The upload cannot be used; ``reason`` tells the admin what to do (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate as the portal shows it.

    Attributes:
        pem: the certificate as PEM text (the stored form).
        subject: RFC 4514 subject, e.g. ``CN=interface.contoso.example,O=Contoso``.
        issuer: RFC 4514 issuer.
        thumbprint_sha256: SHA-256 of the DER encoding, uppercase hex pairs joined by ``:``.
        not_before, not_after: validity (UTC).
        key: e.g. ``RSA 2048`` or ``EC P-256``.
    """

    pem: str
    subject: str
    issuer: str
    thumbprint_sha256: str
    not_before: datetime
    not_after: datetime
    key: str

    @property
    def thumbprint_id(self) -> str:
        """The thumbprint as plain lowercase hex (used in URLs)."""
        return self.thumbprint_sha256.replace(":", "").lower()


def describe(cert: x509.Certificate) -> CertificateInfo:
    """The :class:`CertificateInfo` of a parsed certificate (no checks)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        key = f"RSA {public.key_size}"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        key = f"EC {public.curve.name}"
    else:
        key = type(public).__name__
    return CertificateInfo(
        pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        subject=cert.subject.rfc4514_string() or "(empty subject)",
        issuer=cert.issuer.rfc4514_string() or "(empty issuer)",
        thumbprint_sha256=":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, key=key)


def days_left(info: CertificateInfo, now: datetime) -> int:
    """Days until ``info`` expires, counting a started day (4 days and 2 hours: 5); 0 or less once expired."""
    return -((now - info.not_after) // timedelta(days=1))


def expiry_warning(info: CertificateInfo, now: datetime) -> str | None:
    """What to tell the admin about a certificate that expires within :data:`EXPIRY_WARNING_DAYS` (or has
    expired); ``None`` when it has longer."""
    if info.not_after - now >= timedelta(days=EXPIRY_WARNING_DAYS):
        return None
    left = days_left(info, now)
    when = f"{info.not_after:%Y-%m-%d %H:%M} UTC"
    if info.not_after <= now:
        return (f"The certificate {info.subject} expired on {when}: every HL7 request signed with it is refused. "
                "Upload the interface engine's current certificate.")
    span = f"{left} day" + ("s" if left != 1 else "")
    return (f"The certificate {info.subject} expires in {span} ({when}): from then on every HL7 request signed "
            "with it is refused and no text is sent. Ask the interface engine team for its successor and upload "
            "it now (two certificates may be configured during the switch).")


def soonest_expiry(texts: Any, now: datetime) -> tuple[int, str] | None:
    """``(days left, subject)`` of the stored certificate that expires first, when it is within
    :data:`EXPIRY_WARNING_DAYS` (expired ones included, as negative days); else ``None``. When two are
    configured (a rotation), the one that expires *last* decides: the feed stops only when both have."""
    infos = [info for info in (parse_stored(t) for t in texts or ()) if info]
    if not infos:
        return None
    latest = max(infos, key=lambda i: i.not_after)
    if latest.not_after - now >= timedelta(days=EXPIRY_WARNING_DAYS):
        return None
    return days_left(latest, now), latest.subject


def parse_stored(text: str) -> CertificateInfo | None:
    """A stored certificate (PEM or base64 DER) as shown in the portal; ``None`` when unreadable."""
    try:
        return describe(_one_certificate(text.strip()))
    except CertificateRefused:
        return None


def parse_upload(data: bytes, *, now: datetime) -> CertificateInfo:
    """Check an uploaded .cer file and describe it.

    Raises:
        CertificateRefused: with the reason (see the module docstring).
    """
    if len(data) > MAX_BYTES:
        raise CertificateRefused(f"The file is {len(data):,} bytes; a certificate is a few kilobytes (at most "
                                 f"{MAX_BYTES // 1024} KB). Upload only the certificate (.cer).")
    data = _without_bom(data)
    if not data.strip():
        raise CertificateRefused("The file is empty. Choose the certificate file (.cer) to upload.")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CertificateRefused("This is a binary file. Export the certificate as \"Base-64 encoded X.509 "
                                 "(.CER)\" or PEM text and upload that.") from None
    if "\x00" in text or any(ord(c) < 9 for c in text):
        raise CertificateRefused("This is a binary file. Export the certificate as \"Base-64 encoded X.509 "
                                 "(.CER)\" or PEM text and upload that.")
    if _PRIVATE.search(text):
        raise CertificateRefused("This file contains a private key. Never upload a private key: it must stay with "
                                 "your interface engine. Export only the certificate (public key, .cer) and upload "
                                 "that; consider replacing the key if the file was shared.")
    cert = _one_certificate(text.strip())
    info = describe(cert)
    constraints = _basic_constraints(cert)
    if constraints is not None and constraints.ca and not _self_signed_signer(cert):
        raise CertificateRefused(f"{info.subject} is a CA certificate (it issues certificates: {_ca_evidence(cert)}). "
                                 "Upload the interface engine's own certificate (the one whose key signs the HL7 "
                                 "requests), not its issuer. A self-signed one works too: " + OPENSSL_RECIPE)
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < _MIN_RSA_BITS:
            raise CertificateRefused(f"The certificate's RSA key has {public.key_size} bits; at least "
                                     f"{_MIN_RSA_BITS} are needed.")
    elif not (isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)):
        raise CertificateRefused(f"The certificate's key ({info.key}) is not supported: use RSA 2048+ or EC P-256.")
    if info.not_after <= now:
        raise CertificateRefused(f"The certificate expired on {info.not_after:%Y-%m-%d %H:%M} UTC. Upload the "
                                 "interface engine's current certificate.")
    if info.not_before > now:
        raise CertificateRefused(f"The certificate is valid only from {info.not_before:%Y-%m-%d %H:%M} UTC. "
                                 "Upload it on or after that date.")
    return info


#: The command docs/hl7-intake.md and docs/portal.md give for a self-signed signing certificate.
OPENSSL_RECIPE = ('openssl req -x509 -newkey rsa:3072 -nodes -keyout hl7-signing.key -out hl7-signing.cer '
                  '-days 730 -subj "/CN=interface-engine.example" -addext "basicConstraints=critical,CA:FALSE" '
                  '-addext "keyUsage=critical,digitalSignature"')


def _without_bom(data: bytes) -> bytes:
    """``data`` without the byte-order mark Windows Notepad writes (UTF-8, or UTF-16 re-encoded as text)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return data
    return data


def _self_signed_signer(cert: x509.Certificate) -> bool:
    """A self-signed certificate marked CA only by default (OpenSSL 3's ``req -x509`` sets ``CA:TRUE``) whose
    key may sign: no key usage, or one allowing digitalSignature. Only its own key is trusted (it is pinned,
    never used to validate a chain), so ``CA:TRUE`` grants nothing here. A key usage limited to issuing
    (keyCertSign/cRLSign without digitalSignature) is a real CA's and stays refused."""
    if cert.issuer != cert.subject:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.digital_signature


def _ca_evidence(cert: x509.Certificate) -> str:
    if cert.issuer != cert.subject:
        return "CA:TRUE, issued by another CA"
    return "CA:TRUE with a key usage for issuing only"


def _one_certificate(text: str) -> x509.Certificate:
    blocks = _PEM_CERT.findall(text)
    if len(blocks) > 1:
        raise CertificateRefused(f"The file holds {len(blocks)} certificates (a CA bundle or a chain). Upload only "
                                 "the interface engine's own certificate.")
    try:
        if blocks:
            return x509.load_pem_x509_certificate(text.encode("ascii"))
        if "-----BEGIN" in text:
            raise CertificateRefused("The file is PEM but holds no certificate (BEGIN CERTIFICATE). Upload the "
                                     "certificate (.cer).")
        der = base64.b64decode("".join(text.split()), validate=True)
        return x509.load_der_x509_certificate(der)
    except (ValueError, TypeError, binascii.Error, UnicodeError) as exc:
        if isinstance(exc, CertificateRefused):
            raise
        raise CertificateRefused("The file is not a readable X.509 certificate. Upload the certificate as PEM "
                                 "text or \"Base-64 encoded X.509 (.CER)\".") from None


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


class CertificateAdmin:
    """Adds and removes an environment's HL7 certificates (at most :data:`MAX_CERTIFICATES`), audited."""

    def __init__(self, *, admin: Any, clock: Any) -> None:
        self._admin = admin
        self._clock = clock

    def listed(self, config: Any) -> list[CertificateInfo]:
        """The environment's certificates as shown (unreadable stored ones are left out)."""
        return [info for info in (parse_stored(text) for text in config.hl7_certificates) if info]

    def add(self, environment_id: str, data: bytes, actor: Any) -> CertificateInfo:
        """Check and add an uploaded certificate. The write is ETag-guarded; when another change of the
        environment wins the race, the certificate is added to the newest list (its checks, and the cap of
        :data:`MAX_CERTIFICATES`, run again on it).

        Raises:
            NotFound (lib.config.environments), CertificateRefused, EditConflict: lost the race every time.
        """
        self._admin.get(environment_id)  # an unknown environment is named before the file is judged
        info = parse_upload(data, now=self._clock.now())

        def added(config: Any) -> Any:
            if any(p.thumbprint_sha256 == info.thumbprint_sha256 for p in self.listed(config)):
                raise CertificateRefused("This certificate is already configured for the environment.")
            if len(config.hl7_certificates) >= MAX_CERTIFICATES:
                raise CertificateRefused(f"The environment already has {MAX_CERTIFICATES} certificates (the most, "
                                         "for a rotation). Remove the one being replaced first.")
            return dataclasses.replace(config, hl7_certificates=(*config.hl7_certificates, info.pem))

        self._admin.modify(environment_id, added, actor, action="certificate.add",
                           summary=f"added HL7 certificate {info.subject} (SHA-256 {info.thumbprint_sha256})")
        return info

    def remove(self, environment_id: str, thumbprint_id: str, actor: Any) -> CertificateInfo:
        """Remove the certificate whose thumbprint (plain hex) is ``thumbprint_id`` (from the newest version, as
        :meth:`add`).

        Raises:
            NotFound (lib.config.environments), CertificateRefused: no such certificate. EditConflict.
        """
        found: list[CertificateInfo] = []

        def removed(config: Any) -> Any:
            keep, found[:] = [], []
            for text in config.hl7_certificates:
                info = parse_stored(text)
                if info and info.thumbprint_id == thumbprint_id.lower():
                    found.append(info)
                else:
                    keep.append(text)
            if not found:
                raise CertificateRefused("No certificate with this thumbprint is configured for the environment.")
            return dataclasses.replace(config, hl7_certificates=tuple(keep))

        self._admin.modify(environment_id, removed, actor, action="certificate.remove",
                           summary=lambda _b, _a: f"removed HL7 certificate {found[0].subject} "
                                                  f"(SHA-256 {found[0].thumbprint_sha256})")
        return found[0]
