"""One ACS repeatable request per outbox item, across retries.

``SmsClient.send`` (azure-communication-sms 1.1.0) writes a fresh ``repeatabilityRequestId`` (uuid4) and
``repeatabilityFirstSent`` (now) into every recipient on *each* call, so a retry after an ambiguous 5xx is
a second text. ACS deduplicates a recipient whose ID it has seen in the last 5 minutes and whose body
matches (ACS "Repeatable requests", OASIS Repeatable Requests 1.0): the same ID sent again returns the
first result instead of texting again; a first-sent time older than the tracking window is refused (412).

:class:`RepeatabilityPolicy` is an azure-core per-call policy (it runs before the HMAC authentication
policy, so the signature covers the rewritten body) that replaces the SDK's values with the ones the
caller chose for this send (:func:`use`), kept in a context variable for the duration of one call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

#: ACS tracks a repeatable request for 5 minutes. We stop relying on it a minute earlier (clock skew).
ACS_TRACKING_WINDOW = timedelta(minutes=5)
SAFE_WINDOW = timedelta(minutes=4)


@dataclass(frozen=True)
class Repeatability:
    """``request_id`` (a GUID) and ``first_sent`` (wall-clock UTC time of the first attempt)."""

    request_id: str
    first_sent: datetime

    def header_value(self) -> str:
        """``first_sent`` in IMF-fixdate (RFC 7231), the format ACS expects."""
        return format_datetime(self.first_sent.astimezone(UTC), usegmt=True)

    def still_deduplicated(self, wall_now: datetime) -> bool:
        """Whether ACS still recognises this request (``first_sent`` inside :data:`SAFE_WINDOW`)."""
        return wall_now - self.first_sent < SAFE_WINDOW


_current: ContextVar[Repeatability | None] = ContextVar("sms_repeatability", default=None)


@contextmanager
def use(value: Repeatability | None) -> Iterator[None]:
    """Send the requests made inside the block with ``value`` (``None``: the SDK's own values)."""
    token = _current.set(value)
    try:
        yield
    finally:
        _current.reset(token)


def policy() -> Any:
    """The azure-core policy (``per_call_policies=[policy()]``). Imports azure-core on call."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class RepeatabilityPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            value = _current.get()
            http_request = request.http_request
            if value is None or http_request.method != "POST" or not http_request.body:
                return
            body = json.loads(http_request.body)
            for recipient in body.get("smsRecipients") or []:
                recipient["repeatabilityRequestId"] = value.request_id
                recipient["repeatabilityFirstSent"] = value.header_value()
            http_request.set_json_body(body)

    return RepeatabilityPolicy()
