"""Sign an HL7 v2 file and POST it to the connector's intake; print the ACK (for a hospital's integration team).

Usage::

    python -m local.hl7_send --url https://<app>/api/hl7/<environmentId> --key engine-key.pem \\
        [--cert engine.cer] [--alg RS256|PS256|ES256] [--ca-bundle ca.pem] message.hl7

``--env`` (default: the last path segment of ``--url``) is the environment ID the signature is bound to.
The file is sent byte for byte (``\\r``, ``\\n`` or ``\\r\\n`` separators and MLLP framing are all accepted by
the intake), with ``Content-Type: application/hl7-v2+er7`` and ``X-HL7-Signature`` (docs/hl7-intake.md).
What is printed: the HTTP status, the ACK's MSA (and ERR) segments or the problem document's reason. The
message itself is never printed: it holds patient data.

Exit status: 0 for an ``AA``/``CA``, 1 for any other answer, 2 for a usage or connection error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import requests

from lib.scheduling.signature import sign_request


def signed_headers(
    body: bytes, *, key_pem: bytes, environment_id: str, cert_pem: bytes | None = None, alg: str | None = None
) -> dict[str, str]:
    """The request headers for one signed intake POST of ``body``."""
    token = sign_request(body, private_key_pem=key_pem, environment_id=environment_id, algorithm=alg,
                         certificate_pem=cert_pem)
    return {"Content-Type": "application/hl7-v2+er7", "X-HL7-Signature": token}


def summarize(status: int, content_type: str, body: bytes) -> tuple[bool, list[str]]:
    """``(accepted, lines to print)`` for an intake answer: MSA/ERR of an ACK, or the problem's reason."""
    lines = [f"HTTP {status}"]
    if "problem+json" in content_type:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        lines.append(f"problem: {doc.get('code') or doc.get('title')}: {doc.get('detail')}")
        if doc.get("rejectedMessageId"):
            lines.append(f"kept for replay as {doc['rejectedMessageId']}")
        return False, lines
    accepted = False
    charset = next((p.split("=", 1)[1].strip() for p in content_type.split(";")[1:]
                    if p.strip().lower().startswith("charset=")), "utf-8")
    for segment in body.replace(b"\n", b"\r").split(b"\r"):
        if segment[:3] in (b"MSA", b"ERR"):
            text = segment.decode(charset, "replace")
            lines.append(text)
            if segment[:3] == b"MSA":
                accepted = text[4:6] in ("AA", "CA")
    if len(lines) == 1:
        lines.append(f"unexpected answer ({content_type or 'no content type'}, {len(body)} bytes)")
    return accepted, lines


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m local.hl7_send", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="one HL7 v2 message")
    parser.add_argument("--url", required=True, help="https://<app>/api/hl7/<environmentId>")
    parser.add_argument("--key", type=Path, required=True, help="the interface engine's private key (PEM)")
    parser.add_argument("--cert", type=Path, help="its certificate (PEM); adds x5t#S256 to the signature")
    parser.add_argument("--env", help="environment ID (default: the last segment of --url)")
    parser.add_argument("--alg", choices=("RS256", "PS256", "ES256"), help="default RS256 (RSA) / ES256 (EC)")
    parser.add_argument("--ca-bundle", help="CA file to trust (local stand-ins); default: the system's")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    environment_id = args.env or urlparse(args.url).path.rstrip("/").rsplit("/", 1)[-1]
    try:
        body = args.file.read_bytes()
        key_pem = args.key.read_bytes()
        cert_pem = args.cert.read_bytes() if args.cert else None
        headers = signed_headers(body, key_pem=key_pem, environment_id=environment_id, cert_pem=cert_pem,
                                 alg=args.alg)
    except (OSError, ValueError, TypeError) as exc:
        out(f"error: {exc}")
        return 2
    try:
        response = requests.post(args.url, data=body, headers=headers, timeout=args.timeout,
                                 verify=args.ca_bundle or True)
    except requests.RequestException as exc:
        out(f"error: could not reach {args.url}: {type(exc).__name__}")
        return 2
    accepted, lines = summarize(response.status_code, response.headers.get("content-type", ""), response.content)
    for line in lines:
        out(line)
    return 0 if accepted else 1


if __name__ == "__main__":
    sys.exit(main())
