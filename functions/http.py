"""Small HTTP helpers shared by the HTTP triggers: problem responses and correlation IDs."""

from __future__ import annotations

import json
import uuid

import azure.functions as func


def correlation_id(req: func.HttpRequest) -> str:
    """The caller's ``x-correlation-id`` when it is a sane token, else a new one; inside a trigger wearing
    ``functions.observability.observed``, the ID already in scope (the same value)."""
    from lib.observability.correlation import current

    if active := current():
        return active
    given = (req.headers.get("x-correlation-id") or "").strip()
    if given and len(given) <= 64 and all(c.isalnum() or c in "-_." for c in given):
        return given
    return uuid.uuid4().hex


def problem(
    status: int, title: str, detail: str, *, correlation: str | None = None, **extra: object
) -> func.HttpResponse:
    """An RFC 9457 ``application/problem+json`` response (never a stack trace, never PHI)."""
    doc: dict[str, object] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if correlation:
        doc["correlationId"] = correlation
    doc.update(extra)
    headers = {"x-correlation-id": correlation} if correlation else None
    return func.HttpResponse(
        json.dumps(doc), status_code=status, mimetype="application/problem+json", headers=headers
    )
