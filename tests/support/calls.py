"""Invoke the app's functions directly, the way the Functions host would (python-testing docs)."""

from __future__ import annotations

import azure.functions as func


def post_hl7(
    environment_id: str, body: bytes, headers: dict[str, str] | None = None, *, sign: bool = True
) -> func.HttpResponse:
    """Call ``POST /api/hl7/{environmentId}`` in-process and return the response.

    ``sign`` adds an ``X-HL7-Signature`` from the test interface engine
    (:func:`tests.support.hl7_signing.default_signer`, the certificate :func:`make_environment` configures)
    unless ``headers`` already carry one. Unless ``headers`` name the client's address (``X-Forwarded-For``),
    each call comes from an address of its own, so the per-address guess limit of the session-wide services
    (``functions/hl7_intake.py``) counts only what a test sends from the address it names.
    """
    import uuid

    from functions.hl7_intake import hl7_intake
    from tests.support.hl7_signing import default_signer

    all_headers = {"content-type": "application/hl7-v2+er7", **(headers or {})}
    if not any(k.lower() == "x-forwarded-for" for k in all_headers):
        address = uuid.uuid4().hex
        all_headers["X-Forwarded-For"] = f"2001:db8::{address[:4]}:{address[4:8]}"
    if sign and not any(k.lower() in ("x-hl7-signature", "authorization") for k in all_headers):
        all_headers.update(default_signer().headers(environment_id, body))
    req = func.HttpRequest(
        method="POST",
        url=f"http://127.0.0.1/api/hl7/{environment_id}",
        headers=all_headers,
        params={},
        route_params={"environmentId": environment_id},
        body=body,
    )
    return hl7_intake.build().get_user_function()(req)


def ack_text(response: func.HttpResponse) -> str:
    """The ACK as text, decoded with the charset its ``Content-Type`` declares (the inbound message's)."""
    charset = "utf-8"
    for part in (response.mimetype or "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value
    return response.get_body().decode(charset)


def msa(response: func.HttpResponse) -> list[str]:
    """The MSA segment of an ACK response, split into fields (``["MSA", "AA", "<MSH-10>", ...]``)."""
    for segment in ack_text(response).split("\r"):
        if segment.startswith("MSA"):
            return segment.split("|")
    raise AssertionError("no MSA segment in the response")


def segment(response: func.HttpResponse, name: str) -> list[str] | None:
    """One segment of an ACK response, split into fields, or ``None``."""
    for seg in ack_text(response).split("\r"):
        if seg.startswith(name):
            return seg.split("|")
    return None
