"""Sending one text through Azure Communication Services with the real ``azure-communication-sms`` SDK.

Outcomes are classified for the outbox state machine:
- ``sent``: ACS accepted it (HTTP 202 per recipient); delivery comes later through Event Grid.
- ``retry``: try later (429 with Retry-After, 5xx, connection refused, no answer). ``maybe_accepted`` says
  whether ACS may have taken the text anyway (a 5xx can come after the send went through; a read time-out or
  a dropped connection after the request left; a 409 "original request still in progress"): such a retry
  must reuse the same repeatable request (:mod:`lib.sms.repeatability`) so ACS answers the first result
  instead of texting twice, and must not happen once ACS has forgotten it.
- ``permanent``: ACS refused this recipient or sender for good (invalid number, blocked sender...).
- ``unknown``: ACS refused a repeat whose first attempt is outside its tracking window (412): it may have
  been sent, so it is never resent blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lib.sms import repeatability
from lib.sms.repeatability import Repeatability

SendStatus = Literal["sent", "retry", "permanent", "unknown"]


@dataclass(frozen=True)
class SendResult:
    """What happened to one send: ``status``, ACS ``message_id`` when sent, ``retry_after`` seconds,
    and ``reason`` (no phone number in it)."""

    status: SendStatus
    message_id: str | None = None
    retry_after: float | None = None
    reason: str | None = None
    maybe_accepted: bool = False


class AcsSmsSender:
    """Sends texts with ``azure.communication.sms.SmsClient``.

    Args:
        connection_string: ``endpoint=https://...;accesskey=...`` (local or key-based), or
        endpoint: the ACS endpoint, used with ``DefaultAzureCredential`` when no connection string is given.
        verify: TLS verification (``True`` or a CA bundle path; the bundle only locally).
        timeout: read timeout per request, in seconds.
        connect_timeout: connection timeout, in seconds (an unreachable ACS fails fast; the text is retried).
    """

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        endpoint: str | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        from azure.communication.sms import SmsClient

        from lib.observability.correlation import azure_core_policy

        options: dict[str, Any] = {"connection_verify": verify, "retry_total": 0, "read_timeout": timeout,
                                   "connection_timeout": connect_timeout,
                                   "per_call_policies": [azure_core_policy(), repeatability.policy()]}
        if connection_string:
            self._client = SmsClient.from_connection_string(connection_string, **options)
        elif endpoint:
            from azure.identity import DefaultAzureCredential

            self._client = SmsClient(endpoint, DefaultAzureCredential(), **options)
        else:
            raise ValueError("ACS is not configured: set ACS_CONNECTION_STRING or ACS_ENDPOINT")

    def send(
        self, *, sender: str, to: str, message: str, tag: str | None = None, repeat: Repeatability | None = None
    ) -> SendResult:
        """Send ``message`` from ``sender`` to ``to`` (both E.164) with a delivery report requested.

        ``tag`` travels back in the delivery report (an outbox ID; never PHI). ``repeat`` is the repeatable
        request of this text (the same on every retry of one outbox item); ``None`` lets the SDK make one.
        Never raises for ACS outcomes: they are returned as a :class:`SendResult`.
        """
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        try:
            with repeatability.use(repeat):
                results = self._client.send(
                    from_=sender, to=to, message=message, enable_delivery_report=True, tag=tag
                )
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 429:
                return SendResult("retry", retry_after=_retry_after(exc), reason=f"ACS answered HTTP {status}")
            if status >= 500:  # the text may have gone out before the error: only a same-ID repeat is safe
                return SendResult("retry", retry_after=_retry_after(exc), reason=f"ACS answered HTTP {status}",
                                  maybe_accepted=True)
            return SendResult("permanent", reason=f"ACS refused the request: HTTP {status}")
        except ServiceRequestError as exc:  # the request never left: safe to try again
            return SendResult("retry", reason=f"ACS unreachable: {type(exc).__name__}")
        except (ServiceResponseError, TimeoutError) as exc:  # the request left: only a same-ID repeat is safe
            return SendResult("retry", reason=f"no answer from ACS: {type(exc).__name__}", maybe_accepted=True)
        result = results[0]
        if result.successful:
            return SendResult("sent", message_id=result.message_id)
        code = result.http_status_code or 0
        detail = result.error_message or "no detail"
        if code == 412:  # a repeat whose first attempt ACS no longer tracks: it may have been sent
            return SendResult("unknown", reason=f"ACS no longer tracks the first attempt (412): {detail}")
        if code == 409:  # our repeat arrived while ACS still handles the first attempt: ask again later
            return SendResult("retry", reason=f"ACS is still handling the first attempt (409): {detail}",
                              maybe_accepted=True)
        if code == 429 or code >= 500:
            return SendResult("retry", reason=f"ACS answered {code} for the recipient: {detail}")
        return SendResult("permanent", reason=f"ACS refused the recipient ({code}): {detail}")


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None
