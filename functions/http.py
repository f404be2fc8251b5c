"""Small HTTP helpers shared by the HTTP triggers: problem responses, correlation IDs and reading JSON bodies."""

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


class UnreadableJson(ValueError):
    """A request body that is not UTF-8 JSON a trigger can read (``reason`` is safe to show and to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_json(raw: bytes, *, max_bytes: int, empty: object = None) -> object:
    """The one way an HTTP trigger turns a request body into JSON: size first, then UTF-8, then the parse.

    Catches every way ``json.loads`` fails on hostile input, not only ``ValueError``: deeply nested arrays
    (``[[[[...`` 100,000 deep) raise ``RecursionError`` from the C scanner, and invalid UTF-8 raises
    ``UnicodeDecodeError``. ``empty`` is the value of an empty body.

    Raises:
        UnreadableJson: ``too_large`` (more than ``max_bytes``), ``not_utf8``, ``too_deep`` or ``not_json``.
    """
    if len(raw) > max_bytes:
        raise UnreadableJson("too_large")
    if not raw:
        return empty
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableJson("not_utf8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise UnreadableJson("too_deep") from None
    except ValueError:
        raise UnreadableJson("not_json") from None


def raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised, as ``file:line function`` of the innermost frame: enough to find a bug from a
    log line, without the exception's message (which can hold request data)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{'/'.join(last.filename.split('/')[-3:])}:{last.lineno} {last.name}"
