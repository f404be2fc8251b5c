"""Azure Communication Services SMS stand-in (the REST contract ``azure-communication-sms`` 1.1.0 uses).

The same endpoint also serves the identity contract (``local.standins.acs_identity``), as one ACS resource
does.

Run: ``python -m local.standins.acs_sms --port 9403 --tls-dir .local/tls --access-key-file .local/keys/acs.key``.

Our app's connection string: ``endpoint=https://127.0.0.1:{port}/;accesskey=<the key file's content>``.

Contract (from the SDK: ``_generated/operations/_sms_operations.py`` and ``_shared/policy.py``):

- ``POST /sms?api-version=2021-03-07`` (other known versions accepted), JSON body
  ``{"from", "smsRecipients": [{"to", "repeatabilityRequestId", "repeatabilityFirstSent"}], "message",
  "smsSendOptions": {"enableDeliveryReport", "tag"}}``.
- HMAC-SHA256 authentication: headers ``x-ms-date`` (RFC 1123), ``x-ms-content-sha256`` (base64 SHA-256 of
  the body) and ``Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=S``,
  ``S = base64(HMAC-SHA256(base64decode(accesskey), "POST\\n/sms?api-version=...\\n" + date + ";" + host +
  ";" + content_hash))``. A wrong signature or body hash, or an ``x-ms-date`` more than 15 minutes off -> 401.
- 202 ``{"value": [{"to", "messageId", "httpStatusCode": 202, "repeatabilityResult": "accepted",
  "successful": true}]}``; a malformed ``to`` is a per-recipient 400 ("Invalid To phone number format.").
- Repeatable requests per recipient (ACS "Repeatable requests", OASIS Repeatable Requests 1.0): a
  ``repeatabilityRequestId`` seen within the tracking window (5 minutes) with the same sender, recipient and
  message returns the first result again and is not sent twice (a first result that was a 5xx is executed
  again); a repeat that arrives while the first request is still being handled gets a per-recipient 409
  (ACS "Repeatable requests": "if original request is still in progress: 409"; the lookup and the
  in-progress mark are one step, so two racing requests never both send); the same ID with a different
  body is a per-recipient 400; a ``repeatabilityFirstSent`` older than
  the window is a per-recipient 412 ("rejected"); a malformed one is a per-recipient 400.

The phone numbers REST contract (search, purchase, operations) is served on the same endpoint by
:mod:`local.standins.acs_phone_numbers`.

Control API: ``local/standins/README.md``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from local.standins.acs_identity import add_identity_routes
from local.standins.acs_phone_numbers import add_routes
from local.standins.server import Request, Response, StandinApp, json_response, run_cli

__all__ = ["API_VERSIONS", "AcsState", "build_app", "main"]

API_VERSIONS = {"2021-03-07", "2024-12-10-preview", "2025-01-30-preview", "2025-05-29-preview"}
MAX_SKEW = dt.timedelta(minutes=15)
REPEATABILITY_WINDOW = dt.timedelta(minutes=5)
E164 = re.compile(r"\+[1-9]\d{6,14}")
SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"


@dataclass
class RecipientFault:
    """A scripted fault for requests that include recipient ``to``.

    Either a per-recipient result (``http_status_code`` + ``error_message``, answered inside a 202) or a
    whole-request answer (``status`` with ``retry_after``, and/or ``delay`` seconds). ``after_send`` waits
    ``delay`` and answers ``status`` (or the normal 202) only after the texts were accepted (a gateway error or
    a slow answer after ACS took the request: the client cannot tell). ``times`` None = always.
    """

    to: str
    http_status_code: int | None = None
    error_message: str | None = None
    status: int | None = None
    retry_after: int | None = None
    delay: float = 0.0
    times: int | None = None
    after_send: bool = False


@dataclass
class AcsState:
    """Mutable state, guarded by ``lock``."""

    access_key: bytes
    lock: threading.RLock = field(default_factory=threading.RLock)
    messages: list[dict[str, Any]] = field(default_factory=list)
    repeatability: dict[str, dict[str, Any]] = field(default_factory=dict)
    recipient_faults: list[RecipientFault] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    repeatability_window: dt.timedelta = REPEATABILITY_WINDOW

    def reset(self) -> None:
        """Forget messages, repeatability ids, rejections and recipient faults."""
        with self.lock:
            self.messages.clear()
            self.repeatability.clear()
            self.recipient_faults.clear()
            self.rejected.clear()
            self.repeatability_window = REPEATABILITY_WINDOW

    def take_fault(self, to: str, *, request_level: bool) -> RecipientFault | None:
        """The first matching fault of the given kind for ``to`` (counting down ``times``)."""
        with self.lock:
            for fault in self.recipient_faults:
                if fault.to != to or (fault.http_status_code is None) != request_level:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.recipient_faults.remove(fault)
                return fault
        return None


def _acs_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def _fault_body(status: int) -> Any:
    code = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}.get(status, "Error")
    return {"error": {"code": code, "message": f"scripted fault {status}"}}


def _repeatability_problem(st: AcsState, rcpt: dict[str, Any], sender: str, message: str) -> dict[str, Any] | None:
    """The per-recipient refusal of a repeatable request (400 malformed or a different body for a known ID,
    412 first sent outside the tracking window), or ``None`` when it may proceed."""
    rid, first_sent = rcpt.get("repeatabilityRequestId"), rcpt.get("repeatabilityFirstSent")
    if rid is None and first_sent is None:
        return None

    def refuse(status: int, text: str) -> dict[str, Any]:
        return {"to": rcpt["to"], "messageId": None, "httpStatusCode": status, "successful": False,
                "repeatabilityResult": "rejected", "errorMessage": text}

    try:
        uuid.UUID(str(rid))
        sent_at = email.utils.parsedate_to_datetime(str(first_sent))
    except (TypeError, ValueError):
        return refuse(400, "Invalid repeatability request ID or first sent value.")
    if sent_at.tzinfo is None:
        return refuse(400, "Invalid repeatability first sent value.")
    with st.lock:
        window, earlier = st.repeatability_window, st.repeatability.get(str(rid))
    if dt.datetime.now(dt.UTC) - sent_at > window:
        return refuse(412, "Repeatability first sent header not within the tracking window.")
    if earlier is not None and earlier["body"] != (sender, rcpt["to"], message):
        return refuse(400, "Repeatability request ID reused with a different request.")
    return None


def expected_signature(key: bytes, method: str, path_and_query: str, date: str, host: str,
                       content_hash: str) -> str:
    """The ACS HMAC-SHA256 signature (see module docstring); ``key`` is the decoded access key."""
    to_sign = f"{method.upper()}\n{path_and_query}\n{date};{host};{content_hash}"
    return base64.b64encode(hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).digest()).decode("ascii")


def build_app(base_url: str, *, access_key: str) -> StandinApp:
    """Build the ACS SMS stand-in. ``access_key`` is the base64 key of the connection string."""
    app = StandinApp("acs", base_url, fault_body=_fault_body)
    st = AcsState(access_key=base64.b64decode(access_key))
    app.state = st  # type: ignore[attr-defined]
    app.on_reset(st.reset)

    def authenticate(req: Request) -> Response | None:
        """None when the HMAC checks pass, else the 401 response."""

        def deny(reason: str) -> Response:
            with st.lock:
                st.rejected.append({"reason": reason, "at": time.time()})
            return _acs_error(401, "Denied", f"Denied by the resource provider: {reason}.")

        auth = req.header("Authorization") or ""
        m = re.fullmatch(r"HMAC-SHA256 SignedHeaders=([^&]+)&Signature=(.+)", auth.strip())
        if not m:
            return deny("missing or malformed HMAC-SHA256 Authorization header")
        if m.group(1) != SIGNED_HEADERS:
            return deny(f"SignedHeaders must be {SIGNED_HEADERS}")
        date, host, content_hash = req.header("x-ms-date"), req.header("Host"), req.header("x-ms-content-sha256")
        if not date or not host or not content_hash:
            return deny("x-ms-date, Host and x-ms-content-sha256 are required")
        try:
            when = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return deny("x-ms-date is not an RFC 1123 date")
        if when.tzinfo is None or abs(dt.datetime.now(dt.UTC) - when) > MAX_SKEW:
            return deny("x-ms-date is more than 15 minutes off")
        actual_hash = base64.b64encode(hashlib.sha256(req.body).digest()).decode("ascii")
        if not hmac.compare_digest(actual_hash, content_hash):
            return deny("x-ms-content-sha256 does not match the body")
        expected = expected_signature(st.access_key, req.method, req.raw_path, date, host, content_hash)
        if not hmac.compare_digest(expected, m.group(2)):
            return deny("signature mismatch")
        return None

    app.identities = add_identity_routes(app, authenticate)  # type: ignore[attr-defined]
    app.phone_numbers = add_routes(app, authenticate)  # type: ignore[attr-defined]

    @app.route("POST", r"/sms")
    def _send(req: Request, m: re.Match[str]) -> Response:
        denied = authenticate(req)
        if denied is not None:
            return denied
        version = req.arg("api-version")
        if version not in API_VERSIONS:
            return _acs_error(400, "UnsupportedApiVersion", f"api-version {version!r} is not supported")
        body = req.json()
        if not isinstance(body, dict):
            return _acs_error(400, "BadRequest", "A JSON object body is required.")
        sender, recipients, message = body.get("from"), body.get("smsRecipients"), body.get("message")
        if not isinstance(sender, str) or not E164.fullmatch(sender):
            return _acs_error(400, "BadRequest", "Invalid From phone number format.")
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= 100:
            return _acs_error(400, "BadRequest", "smsRecipients must hold 1 to 100 recipients.")
        if not isinstance(message, str) or not message or len(message) > 2048:
            return _acs_error(400, "BadRequest", "message must be 1 to 2048 characters.")
        options = body.get("smsSendOptions") or {}
        if not isinstance(options, dict) or not isinstance(options.get("enableDeliveryReport", False), bool):
            return _acs_error(400, "BadRequest", "smsSendOptions.enableDeliveryReport must be a boolean.")
        for rcpt in recipients:
            if not isinstance(rcpt, dict) or not isinstance(rcpt.get("to"), str):
                return _acs_error(400, "BadRequest", "every recipient needs a 'to' string.")
        # Each recipient's repeatable request is looked up and marked in progress in one step (under the lock),
        # before any scripted delay: a repeat that arrives while the first is still being handled gets a 409,
        # one that arrives after it gets the first result; never a second text.
        results: list[dict[str, Any] | None] = []
        mine: list[str] = []  # the request IDs this request executes (marked in progress)
        for rcpt in recipients:
            refused = _repeatability_problem(st, rcpt, sender, message)
            if refused is not None:
                results.append(refused)
                continue
            rid = rcpt.get("repeatabilityRequestId")
            if not rid:
                results.append(None)
                continue
            with st.lock:
                earlier = st.repeatability.get(rid)
                if earlier is not None and earlier.get("in_progress"):
                    results.append({"to": rcpt["to"], "messageId": None, "httpStatusCode": 409, "successful": False,
                                    "repeatabilityResult": "accepted",
                                    "errorMessage": "The original request is still in progress."})
                    continue
                if earlier is not None and earlier["result"]["httpStatusCode"] < 500:
                    results.append(earlier["result"])
                    continue
                st.repeatability[rid] = {"in_progress": True, "body": (sender, rcpt["to"], message),
                                         "result": None}
                mine.append(rid)
            results.append(None)
        try:
            return _execute(sender, recipients, message, options, version, results)
        finally:
            with st.lock:  # a request that ended without a result (a scripted 5xx) may be executed again
                for rid in mine:
                    entry = st.repeatability.get(rid)
                    if entry is not None and entry.get("in_progress"):
                        entry.update(in_progress=False, result={"httpStatusCode": 500})

    def _execute(sender: str, recipients: list[dict[str, Any]], message: str, options: dict[str, Any],
                 version: str | None, results: list[dict[str, Any] | None]) -> Response:
        """Send to the recipients whose ``results`` entry is still ``None`` (the others were answered by their
        repeatable request), after the scripted whole-request faults; ``after_send`` ones (with a status, or
        only a ``delay``: ACS took the texts and answers late) come after the texts are accepted."""
        late: RecipientFault | None = None
        for rcpt in recipients:
            fault = st.take_fault(rcpt["to"], request_level=True)
            if fault is not None:
                if fault.after_send:
                    late = fault
                    continue
                if fault.delay > 0:
                    time.sleep(fault.delay)
                if fault.status is not None:
                    return _request_fault(fault)
        answered: list[dict[str, Any]] = []
        for rcpt, known in zip(recipients, results, strict=True):
            if known is not None:
                answered.append(known)
                continue
            to = rcpt["to"]
            rid = rcpt.get("repeatabilityRequestId")
            item: dict[str, Any] = {"to": to, "messageId": f"Outgoing_{time.strftime('%Y%m%d%H%M%S')}"
                                    f"{uuid.uuid4().hex[:8]}_noam", "httpStatusCode": 202,
                                    "repeatabilityResult": "accepted", "successful": True}
            fault = st.take_fault(to, request_level=False)
            if not E164.fullmatch(to):
                item.update(messageId=None, httpStatusCode=400, successful=False,
                            errorMessage="Invalid To phone number format.")
            elif fault is not None:
                item.update(messageId=None, httpStatusCode=fault.http_status_code, successful=False,
                            errorMessage=fault.error_message or "Message failed.",
                            repeatabilityResult="rejected")
            with st.lock:
                if rid:
                    st.repeatability[rid] = {"result": item, "body": (sender, to, message), "in_progress": False}
                st.messages.append({
                    "messageId": item["messageId"], "from": sender, "to": to, "message": message,
                    "enableDeliveryReport": options.get("enableDeliveryReport", False),
                    "tag": options.get("tag"), "repeatabilityRequestId": rid,
                    "httpStatusCode": item["httpStatusCode"], "successful": item["successful"],
                    "errorMessage": item.get("errorMessage"), "apiVersion": version,
                    "receivedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                })
            answered.append(item)
        if late is not None:
            if late.delay > 0:
                time.sleep(late.delay)
            if late.status is not None:
                return _request_fault(late)
        return json_response({"value": answered}, 202)

    def _request_fault(fault: RecipientFault) -> Response:
        assert fault.status is not None
        retry = fault.retry_after if fault.retry_after is not None else (1 if fault.status in (429, 503) else None)
        return app.fault_response(fault.status, retry)

    # ---- control API -------------------------------------------------------------------------------
    @app.route(("GET", "PUT"), r"/_standin/repeatability")
    def _repeatability(req: Request, m: re.Match[str]) -> Response:
        """``{"windowSeconds": n}``: how long repeatable requests are tracked (ACS: 300 s)."""
        if req.method == "PUT":
            body = req.json()
            seconds = body.get("windowSeconds") if isinstance(body, dict) else None
            if not isinstance(seconds, int) or seconds < 0:
                return json_response({"error": "windowSeconds must be a whole number >= 0"}, 400)
            with st.lock:
                st.repeatability_window = dt.timedelta(seconds=seconds)
        with st.lock:
            return json_response({"windowSeconds": int(st.repeatability_window.total_seconds())})

    @app.route(("GET", "DELETE"), r"/_standin/messages")
    def _messages(req: Request, m: re.Match[str]) -> Response:
        with st.lock:
            if req.method == "DELETE":
                st.messages.clear()
                st.repeatability.clear()
                return Response(204)
            return json_response(list(st.messages))

    @app.route("GET", r"/_standin/rejected")
    def _rejected(req: Request, m: re.Match[str]) -> Response:
        with st.lock:
            return json_response(list(st.rejected))

    @app.route(("GET", "POST", "DELETE"), r"/_standin/recipient-faults")
    def _recipient_faults(req: Request, m: re.Match[str]) -> Response:
        if req.method == "GET":
            with st.lock:
                return json_response([f.__dict__ for f in st.recipient_faults])
        if req.method == "DELETE":
            with st.lock:
                st.recipient_faults.clear()
            return Response(204)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("to"), str):
            return json_response({"error": "to is required"}, 400)
        fault = RecipientFault(
            to=body["to"], http_status_code=body.get("httpStatusCode"), error_message=body.get("errorMessage"),
            status=body.get("status"), retry_after=body.get("retry_after"),
            delay=float(body.get("delay", 0) or 0), times=body.get("times"), after_send=bool(body.get("after_send")))
        if fault.http_status_code is None and fault.status is None and fault.delay <= 0:
            return json_response({"error": "give httpStatusCode (per recipient), status or delay"}, 400)
        if fault.after_send and fault.status is None and fault.delay <= 0:
            return json_response({"error": "after_send needs a status or a delay"}, 400)
        if fault.http_status_code is not None and (fault.status is not None or fault.delay):
            return json_response({"error": "httpStatusCode cannot be combined with status or delay"}, 400)
        with st.lock:
            st.recipient_faults.append(fault)
        return json_response(fault.__dict__, 201)

    return app


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""

    def add_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--access-key-file", required=True, help="file holding the base64 access key")

    def build(args: argparse.Namespace, base_url: str) -> StandinApp:
        with open(args.access_key_file, encoding="ascii") as fh:
            return build_app(base_url, access_key=fh.read().strip())

    return run_cli("acs", build, add_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
