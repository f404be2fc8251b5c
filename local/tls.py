"""Local key material for development and tests (never used in Azure).

``ensure_local_material(root)`` creates, once, everything the local services and our app need to talk
to each other over TLS and to sign their requests:

- ``.local/tls/ca.pem``            self-signed local CA certificate (RSA 2048, 10 years)
- ``.local/tls/ca-key.pem``        its private key (PKCS#8, unencrypted; local only)
- ``.local/tls/server.pem``        server certificate for ``127.0.0.1``, ``localhost`` and ``::1``, signed
                                   by the CA (825 days, re-issued when it expires within 30 days)
- ``.local/tls/server-key.pem``    its private key
- ``.local/tls/ca-bundle.pem``     ``ca.pem`` followed by certifi's public bundle (for ``REQUESTS_CA_BUNDLE``,
                                   so that setting it does not break requests to anything else)
- ``.local/keys/smart.pem``        our RSA 2048 private key for SMART ``private_key_jwt`` (PKCS#8 PEM)
- ``.local/keys/graph.pem``        our RSA 2048 private key + self-signed certificate in one PEM, for the
                                   MSAL certificate credential
- ``.local/keys/hl7-sender.pem``   the demo "hospital interface engine": RSA 2048 private key + self-signed
                                   certificate; the demo environment trusts the certificate and the demo signs
                                   its HL7 requests with the key (docs/hl7-intake.md)
- ``.local/keys/link.key``         ``LINK_SIGNING_KEY``: 32 random bytes, standard base64, one line
- ``.local/keys/log-id.key``       ``LOG_ID_KEY``: 32 random bytes, standard base64 (keys the MSH-10 hash in logs)
- ``.local/keys/acs.key``          access key of the local ACS SMS stand-in: 32 random bytes, base64
- ``.local/keys/epic-emp.password`` password of the Epic stand-in's ``emp$TELEHEALTH`` web-service user

Files that exist are left alone (idempotent), so keys survive restarts. Private keys are written with
mode 0600. Run ``python -m local.tls [ROOT]`` to create them and print the paths (never the contents).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["REPO_ROOT", "LocalMaterial", "ensure_local_material"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_SERVER_NAMES = ("127.0.0.1", "localhost", "::1")
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class LocalMaterial:
    """Absolute paths of the local key material (all files exist once returned).

    Attributes:
        tls_dir: folder with the CA and server certificate (``.local/tls``).
        ca_cert: local CA certificate, PEM.
        ca_key: local CA private key, PEM.
        server_cert: TLS server certificate (SAN 127.0.0.1, localhost, ::1), PEM.
        server_key: its private key, PEM.
        ca_bundle: ``ca_cert`` + certifi's CA bundle, PEM (value for ``REQUESTS_CA_BUNDLE``).
        keys_dir: folder with the app's own keys (``.local/keys``).
        smart_key: RSA private key for SMART ``private_key_jwt`` (``SMART_PRIVATE_KEYS_FILE``).
        graph_pem: RSA private key + self-signed certificate (``GRAPH_CLIENT_CERT_FILE``).
        hl7_sender: RSA private key + self-signed certificate of the demo HL7 sender (signs intake requests).
        link_key: file holding ``LINK_SIGNING_KEY`` (base64 of 32 bytes).
        log_id_key: file holding ``LOG_ID_KEY`` (base64 of 32 bytes).
        acs_key: file holding the ACS stand-in access key (base64 of 32 bytes).
        epic_emp_password: file holding the Epic stand-in's ``emp$TELEHEALTH`` password.
    """

    tls_dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    ca_bundle: Path
    keys_dir: Path
    smart_key: Path
    graph_pem: Path
    link_key: Path
    log_id_key: Path
    acs_key: Path
    epic_emp_password: Path
    hl7_sender: Path

    def read_hl7_sender(self) -> tuple[bytes, str]:
        """``(private key PEM, certificate PEM text)`` of the demo HL7 sender."""
        data = self.hl7_sender.read_bytes()
        return data, data[data.index(b"-----BEGIN CERTIFICATE") :].decode("ascii")

    def read_link_key(self) -> str:
        """Return the ``LINK_SIGNING_KEY`` value (base64 text, no newline)."""
        return self.link_key.read_text(encoding="ascii").strip()

    def read_log_id_key(self) -> str:
        """Return the ``LOG_ID_KEY`` value (base64 text, no newline)."""
        return self.log_id_key.read_text(encoding="ascii").strip()

    def read_acs_key(self) -> str:
        """Return the ACS stand-in access key (base64 text, no newline)."""
        return self.acs_key.read_text(encoding="ascii").strip()

    def read_epic_emp_password(self) -> str:
        """Return the Epic stand-in web-service user's password (text, no newline)."""
        return self.epic_emp_password.read_text(encoding="ascii").strip()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Write atomically (temp file + rename); private files get mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"{path} does not hold an RSA private key")
    return key


def _cert_valid(path: Path) -> bool:
    """True when ``path`` holds a certificate that stays valid for at least ``_RENEW_BEFORE``."""
    if not path.exists():
        return False
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        return False
    return cert.not_valid_after_utc - _RENEW_BEFORE > _now()


def _ensure_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    if key_path.exists() and _cert_valid(cert_path):
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), _load_key(key_path)
    key = _new_rsa_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Virtual Visits local development"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Virtual Visits local CA"),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return cert, key


def _issue_server_cert(
    ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, cert_path: Path, key_path: Path
) -> None:
    key = _new_rsa_key()
    now = _now()
    sans: list[x509.GeneralName] = []
    for name in _SERVER_NAMES:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)


def _server_cert_ok(cert_path: Path, key_path: Path, ca_cert: x509.Certificate) -> bool:
    if not key_path.exists() or not _cert_valid(cert_path):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.issuer == ca_cert.subject and _signed_by(cert, ca_cert)


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _write_ca_bundle(ca_cert_path: Path, bundle_path: Path) -> None:
    """(Re)write ``ca_cert + certifi`` when missing or when the CA changed."""
    ca_pem = ca_cert_path.read_bytes()
    try:
        import certifi

        public = Path(certifi.where()).read_bytes()
    except ImportError:  # pragma: no cover - certifi comes with requests
        public = b""
    data = ca_pem.rstrip(b"\n") + b"\n" + public
    if not bundle_path.exists() or bundle_path.read_bytes() != data:
        _write(bundle_path, data, private=False)


def _ensure_graph_pem(path: Path, common_name: str = "virtual-visits-local-graph") -> None:
    """Private key + self-signed certificate (CN=``common_name``, 2 years) in one PEM."""
    if path.exists():
        text = path.read_bytes()
        if b"PRIVATE KEY" in text and b"CERTIFICATE" in text:
            try:
                cert = x509.load_pem_x509_certificate(text[text.index(b"-----BEGIN CERTIFICATE"):])
                if cert.not_valid_after_utc - _RENEW_BEFORE > _now():
                    return
            except ValueError:
                pass
    key = _new_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(path, _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM), private=True)


def _ensure_random_b64(path: Path, nbytes: int = 32) -> None:
    if path.exists() and path.read_text(encoding="ascii").strip():
        return
    _write(path, base64.b64encode(secrets.token_bytes(nbytes)) + b"\n", private=True)


def _ensure_password(path: Path) -> None:
    if path.exists() and path.read_text(encoding="ascii").strip():
        return
    _write(path, secrets.token_urlsafe(18).encode("ascii") + b"\n", private=True)


def ensure_local_material(root: Path | None = None) -> LocalMaterial:
    """Create (once) and return the local CA, TLS server certificate and app keys under ``root/.local``.

    Args:
        root: repository root (default: the checkout containing this file). Files go to
            ``root/.local/tls`` and ``root/.local/keys``.

    Returns:
        LocalMaterial with absolute paths; every file exists. Existing valid files are reused; the CA and
        server certificate are re-issued only when missing, invalid or within 30 days of expiry (a new CA
        also re-issues the server certificate). Safe to call concurrently from one process at a time.

    Raises:
        OSError: when the folders cannot be written.
    """
    root = (root or REPO_ROOT).resolve()
    tls_dir = root / ".local" / "tls"
    keys_dir = root / ".local" / "keys"
    m = LocalMaterial(
        tls_dir=tls_dir,
        ca_cert=tls_dir / "ca.pem",
        ca_key=tls_dir / "ca-key.pem",
        server_cert=tls_dir / "server.pem",
        server_key=tls_dir / "server-key.pem",
        ca_bundle=tls_dir / "ca-bundle.pem",
        keys_dir=keys_dir,
        smart_key=keys_dir / "smart.pem",
        graph_pem=keys_dir / "graph.pem",
        link_key=keys_dir / "link.key",
        log_id_key=keys_dir / "log-id.key",
        acs_key=keys_dir / "acs.key",
        epic_emp_password=keys_dir / "epic-emp.password",
        hl7_sender=keys_dir / "hl7-sender.pem",
    )
    ca_cert, ca_key = _ensure_ca(m.ca_cert, m.ca_key)
    if not _server_cert_ok(m.server_cert, m.server_key, ca_cert):
        _issue_server_cert(ca_cert, ca_key, m.server_cert, m.server_key)
    _write_ca_bundle(m.ca_cert, m.ca_bundle)
    if not m.smart_key.exists():
        _write(m.smart_key, _key_pem(_new_rsa_key()), private=True)
    _ensure_graph_pem(m.graph_pem)
    _ensure_graph_pem(m.hl7_sender, "virtual-visits-local-hl7-sender")
    _ensure_random_b64(m.link_key)
    _ensure_random_b64(m.log_id_key)
    _ensure_random_b64(m.acs_key)
    _ensure_password(m.epic_emp_password)
    return m


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m local.tls [ROOT]``; prints the file paths, never their contents."""
    args = sys.argv[1:] if argv is None else argv
    material = ensure_local_material(Path(args[0]) if args else None)
    for field, value in material.__dict__.items():
        print(f"{field}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
